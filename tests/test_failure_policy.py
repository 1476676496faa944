"""Never let the hook break Okta: with the directory down, hanging or restarting, every hook request
is answered in time with its configured fallback, and none gets a 5xx; each failure policy applies to
its own cause only. In-process (the app factory on real sockets); SIGTERM and draining, which need a
process, are in test_shutdown.py."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from in_process import InProcessService
from okta_spec import example, registration_for, validate_response
from support.answers import unchanged
from support.config import directory_config, service_config
from support.servers import HangingServer, RunningService

from service.demo.slapd import Slapd, demo_ldif

HOOKS = {"registration": "registration", "token": "token", "saml": "saml", "user-import": "user_import"}
DEADLINE = 0.8


def fallback_config(url: str, **registration: object) -> dict:
    config = service_config(url, directory=directory_config(url, operation_timeout_seconds=30.0))
    for section in config["hooks"].values():
        section["deadline_seconds"] = DEADLINE
    config["hooks"]["registration"].update(registration)
    return config


@pytest.fixture
def start_service(start_in_process):
    return start_in_process


@pytest.fixture
def start_service_process(tmp_path: Path):
    """conftest's ``start_service`` (a real process), under another name: ``start_service`` is the
    in-process one in this module."""
    started: list[RunningService] = []

    def start(config: dict) -> RunningService:
        workdir = tmp_path / f"service-{len(started)}"
        workdir.mkdir()
        service = RunningService(config, workdir, {})
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


def timed_post(service: InProcessService | RunningService, hook: str) -> tuple[int, dict, float]:
    started = time.monotonic()
    response = service.post(hook, example(HOOKS[hook]))
    return response.status_code, response.json(), time.monotonic() - started


def metric(service: InProcessService | RunningService, line_prefix: str) -> float:
    for line in service.metrics().splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{line_prefix} not exported")


def test_hanging_directory_every_request_answered_before_the_deadline(
    hanging_directory: HangingServer, start_service_process
) -> None:
    """Forty concurrent calls timed by the client: the service runs as its own process here, so that the
    client's threads do not compete with it for the test process's interpreter."""
    service = start_service_process(fallback_config(hanging_directory.url))
    calls = [hook for hook in HOOKS for _ in range(10)]

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        results = list(pool.map(lambda hook: (hook, *timed_post(service, hook)), calls))

    for hook, status, body, elapsed in results:
        assert status == 200, (hook, status)
        unchanged(body)  # continue without enrichment
        validate_response(HOOKS[hook], body)
        assert elapsed < DEADLINE + 0.4, (hook, elapsed)
    fallbacks = sum(
        metric(service, f'okta_hook_requests_total{{hook_type="{t}",outcome="fallback_deadline"}}')
        + metric(service, f'okta_hook_requests_total{{hook_type="{t}",outcome="fallback_ldap_error"}}')
        for t in HOOKS.values()
    )
    assert fallbacks == len(calls)
    # the service's own clock: every answer left before 1 s (deadline 0.8 s), none reached Okta's 3 s
    within = sum(
        metric(
            service,
            f'http_server_request_duration_seconds_bucket{{le="1.0",method="POST",route="/hooks/{hook}",'
            'status_code="200"}',
        )
        for hook in HOOKS
    )
    assert within == len(calls)
    assert (
        metric(service, 'okta_hook_deadline_exceeded_total{hook_type="registration",stage="bind"}')
        + metric(service, 'okta_hook_deadline_exceeded_total{hook_type="registration",stage="pool_wait"}')
        >= 1
    )


def test_hanging_directory_with_deny_policy_denies_in_time(hanging_directory: HangingServer, start_service) -> None:
    service = start_service(
        fallback_config(hanging_directory.url, on_directory_error="deny", deny_message="Try later.")
    )

    status, body, elapsed = timed_post(service, "registration")

    assert status == 200
    assert elapsed < DEADLINE + 0.4
    assert body["commands"] == [{"type": "com.okta.action.update", "value": {"registration": "DENY"}}]
    assert body["error"] == {"errorSummary": "Try later."}


def test_directory_down_answers_at_once(closed_port_url: str, start_service) -> None:
    service = start_service(fallback_config(closed_port_url))

    for hook in HOOKS:
        status, body, elapsed = timed_post(service, hook)
        assert status == 200
        assert unchanged(body)["outcome"] == "fallback_ldap_error"
        assert elapsed < 0.5  # a refused connection needs no deadline
    assert metric(service, 'okta_hook_requests_total{hook_type="token",outcome="fallback_ldap_error"}') == 1
    server = closed_port_url.removeprefix("ldap://")
    assert metric(service, f'okta_hook_ldap_up{{directory="default",server="{server}"}}') == 0


def test_directory_restart_while_serving(tmp_path: Path, start_service) -> None:
    with Slapd(tmp_path / "ldap", demo_ldif()) as ldap:
        service = start_service(service_config(ldap.url))
        assert "commands" in service.post("registration", example("registration")).json()

        ldap.restart()
        time.sleep(0.6)  # past the cooldown, should a health check have seen the restart

        for _ in range(5):
            response = service.post("registration", example("registration"))
            assert response.status_code == 200
            assert "commands" in response.json(), service.log()[-2000:]


def test_directory_outage_then_recovery(tmp_path: Path, start_service) -> None:
    ldap = Slapd(tmp_path / "ldap", demo_ldif()).start()
    try:
        service = start_service(service_config(ldap.url))
        ldap.stop()
        during = [service.post("token", example("token")) for _ in range(3)]
        assert [(r.status_code, unchanged(r.json())["outcome"]) for r in during] == [(200, "fallback_ldap_error")] * 3
        ldap.start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if "commands" in service.post("token", example("token")).json():
                break
            time.sleep(0.2)
        else:
            pytest.fail("the service did not recover after the directory came back")
    finally:
        ldap.stop()


# -- each policy answers for its own cause only -------------------------------------------------------

DENY = [{"type": "com.okta.action.update", "value": {"registration": "DENY"}}]


@pytest.mark.parametrize(
    ("on_unknown_user", "on_directory_error"), [("deny", "continue"), ("continue", "deny"), ("deny", "deny")]
)
def test_each_policy_applies_to_its_own_cause(
    slapd, start_service, on_unknown_user: str, on_directory_error: str
) -> None:
    """An unknown registrant follows ``on_unknown_user`` only; a directory failure (here two entries
    matching: the directory cannot say who this is) follows ``on_directory_error`` only."""
    config = service_config(slapd.url)
    config["hooks"]["registration"].update(
        on_unknown_user=on_unknown_user, on_directory_error=on_directory_error, deny_message="Not now."
    )
    service = start_service(config)

    unknown = service.post("registration", registration_for("stranger@example.org")).json()
    failed = service.post("registration", registration_for("shared.mailbox@example.com")).json()
    known = service.post("registration", registration_for("alice.wong@example.com")).json()

    assert unknown["debugContext"]["outcome"] == "no_match"
    assert failed["debugContext"]["outcome"] == "fallback_ldap_error"
    for body, action in ((unknown, on_unknown_user), (failed, on_directory_error)):
        validate_response("registration", body)
        if action == "deny":
            assert body["commands"] == DENY and body["error"] == {"errorSummary": "Not now."}
        else:
            unchanged(body)
    assert known["commands"][0]["type"] == "com.okta.user.profile.update"  # never denied when found
    denials = 'okta_hook_denials_total{{hook_type="registration",reason="{}"}}'
    assert metric(service, denials.format("no_match")) == (on_unknown_user == "deny")
    assert metric(service, denials.format("ldap_error")) == (on_directory_error == "deny")


def test_directory_down_with_deny_for_unknown_users_still_continues(closed_port_url: str, start_service) -> None:
    service = start_service(fallback_config(closed_port_url, on_unknown_user="deny", deny_message="Who?"))

    status, body, _ = timed_post(service, "registration")

    assert status == 200
    assert unchanged(body)["outcome"] == "fallback_ldap_error"
