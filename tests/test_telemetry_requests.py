"""The request counters of every hook type (service/telemetry/requests.py): each request is counted
under its own hook type's label, with its outcome. The service runs in-process on the demo slapd, with
the five hook types at once (password import over StartTLS, as it requires). And the directory side of
issue 22: series labelled by directory exist at zero, and an answer's missing parts are counted and logged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from in_process import InProcessService
from okta_spec import example
from password_import_support import password_event
from structlog.testing import capture_logs
from support.config import directory_config, service_config

from service.demo.slapd import DEMO_USER_PASSWORD, Slapd
from service.hooks.result import HookResult
from service.policy import Outcome
from service.telemetry import MISSING_REASONS, Metrics, Telemetry

#: hook type label -> the path under /hooks/, Okta's example event, how many times it is sent (each type a
#: different count: a request counted under another type's label cannot go unnoticed).
SENT: dict[str, tuple[str, dict[str, Any], int]] = {
    "registration": ("registration", example("registration"), 1),
    "token": ("token", example("token"), 2),
    "saml": ("saml", example("saml"), 3),
    "user_import": ("user-import", example("user_import"), 4),
    "password_import": ("password-import", password_event("rosario.jones@example.com", DEMO_USER_PASSWORD), 5),
}


def requests_by_hook(service: InProcessService) -> dict[str, dict[str, float]]:
    """okta_hook_requests_total, hook type -> outcome -> count, leaving out the series at zero."""
    counted: dict[str, dict[str, float]] = {}
    for family in service.telemetry.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == "okta_hook_requests_total" and sample.value:
                counted.setdefault(sample.labels["hook_type"], {})[sample.labels["outcome"]] = sample.value
    return counted


def test_every_hook_type_counts_its_requests_under_its_own_label(
    slapd: Slapd, start_in_process: Callable[..., InProcessService]
) -> None:
    directory = directory_config(slapd.url, start_tls=True, ca_file=str(slapd.ca_file))
    config = service_config(slapd.url, directory=directory)
    config["hooks"]["password_import"] = {}
    service = start_in_process(config)

    for path, event, times in SENT.values():
        for _ in range(times):
            assert service.post(path, event).status_code == 200

    assert requests_by_hook(service) == {
        "registration": {"enriched": 1},
        "token": {"enriched": 2},
        "saml": {"enriched": 3},
        "user_import": {"enriched": 4},
        "password_import": {"verified": 5},
    }


# -- several directories: the directory label, the parts missing from an answer ------------------------


def directory_samples(telemetry: Telemetry, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of ``name``, by its sorted labels."""
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in telemetry.metrics.registry.collect()
        for sample in family.samples
        if sample.name == name
    }


def test_directory_series_exist_at_zero_for_every_configured_directory() -> None:
    """What dashboards and alerts read per directory is there before anything happens: the new
    outcome, the missing parts by reason, each directory's servers, its up gauge and its password gauge."""
    telemetry = Telemetry(Metrics())
    telemetry.declare({"token": False, "registration": True}, {"corp": ["dc1:636", "dc2:636"], "hr": ["hr:389"]})
    for name in ("corp", "hr"):
        telemetry.directory_observer(name)
    assert telemetry.directory_observer("hr") is telemetry.directory_observer("hr")

    requests = directory_samples(telemetry, "okta_hook_requests_total")
    assert requests[(("hook_type", "token"), ("outcome", "enriched_partial"))] == 0
    missing = directory_samples(telemetry, "okta_hook_directory_missing_total")
    assert len(missing) == 2 * 2 * len(MISSING_REASONS) and set(missing.values()) == {0}
    assert {"deadline", "timeout", "connect", "tls", "bind_failed", "ambiguous", "other"} <= set(MISSING_REASONS)
    assert directory_samples(telemetry, "okta_hook_ldap_up") == {
        (("directory", "corp"), ("server", "dc1:636")): 0,
        (("directory", "corp"), ("server", "dc2:636")): 0,
        (("directory", "hr"), ("server", "hr:389")): 0,
    }
    assert directory_samples(telemetry, "okta_hook_ldap_bind_password_refused") == {
        (("directory", "corp"),): 0,
        (("directory", "hr"),): 0,
    }


def test_directory_up_follows_its_servers_checks_and_each_series_keeps_its_directory() -> None:
    """``okta_hook_directory_up`` reads each directory's own state at the scrape (``Directory.up``: a
    server passed its last check); the observers of two directories never write each other's series."""
    telemetry = Telemetry(Metrics())
    telemetry.declare({"token": False}, {"corp": ["dc1:636", "dc2:636"], "hr": ["hr:389"]})
    corp, hr = telemetry.directory_observer("corp"), telemetry.directory_observer("hr")
    state = {"corp": True, "hr": False}
    telemetry.watch_directory("corp", "accounts", lambda: state["corp"])
    telemetry.watch_directory("hr", "joined", lambda: state["hr"])
    assert set(directory_samples(telemetry, "okta_hook_directory_up")) == {
        (("directory", "corp"), ("role", "accounts")),
        (("directory", "hr"), ("role", "joined")),
    }

    def up(name: str) -> float | None:
        role = "accounts" if name == "corp" else "joined"
        return telemetry.metrics.registry.get_sample_value("okta_hook_directory_up", {"directory": name, "role": role})

    assert (up("corp"), up("hr")) == (1, 0)
    state["corp"] = False
    assert up("corp") == 0
    corp.server_up("dc2:636", False)
    hr.server_up("hr:389", True)
    ldap_up = telemetry.metrics.registry.get_sample_value
    assert ldap_up("okta_hook_ldap_up", {"directory": "corp", "server": "dc2:636"}) == 0
    assert ldap_up("okta_hook_ldap_up", {"directory": "hr", "server": "hr:389"}) == 1
    with corp.operation("search", "dc1:636"):
        pass
    hr.password_refused("directories.hr.bind_password_file", "invalid_credentials")
    sample = telemetry.metrics.registry.get_sample_value
    assert sample("okta_hook_ldap_operation_duration_seconds_count", {"directory": "corp", "operation": "search"}) == 1
    assert sample("okta_hook_ldap_operation_duration_seconds_count", {"directory": "hr", "operation": "search"}) is None
    assert sample("okta_hook_ldap_bind_password_refused", {"directory": "hr"}) == 1
    assert sample("okta_hook_ldap_bind_password_refused", {"directory": "corp"}) == 0


def test_an_answer_with_missing_parts_is_counted_and_logged() -> None:
    """A ``HookResult`` whose ``missing`` names directories: ``enriched_partial`` counted,
    ``okta_hook_directory_missing_total`` counted per (directory, reason), and the request's log line says
    ``missing_directories``; a whole answer logs ``missing_directories: null`` and counts nothing."""
    telemetry = Telemetry(Metrics())
    telemetry.declare({"token": False}, {"corp": ["dc1:636"], "hr": ["hr:389"], "emea": ["dc3:636"]})
    partial = HookResult(Outcome.ENRICHED_PARTIAL, {}, "evt1", missing=(("hr", "deadline"), ("emea", "connect")))
    whole = HookResult(Outcome.ENRICHED, {}, "evt2")
    with capture_logs() as logs:
        for result in (partial, whole, partial):
            observation = telemetry.requests.started("POST", "/hooks/token", "token", {})
            telemetry.requests.finished(observation, 200, result.outcome, result)

    missing = {
        labels: value
        for labels, value in directory_samples(telemetry, "okta_hook_directory_missing_total").items()
        if value
    }
    assert missing == {
        (("directory", "emea"), ("hook_type", "token"), ("reason", "connect")): 2,
        (("directory", "hr"), ("hook_type", "token"), ("reason", "deadline")): 2,
    }
    requests = directory_samples(telemetry, "okta_hook_requests_total")
    assert requests[(("hook_type", "token"), ("outcome", "enriched_partial"))] == 2
    assert requests[(("hook_type", "token"), ("outcome", "enriched"))] == 1
    lines = [line for line in logs if line["event"] == "hook_request"]
    both = {"hr": "deadline", "emea": "connect"}
    assert [line["missing_directories"] for line in lines] == [both, None, both]
    assert [line["outcome"] for line in lines] == ["enriched_partial", "enriched", "enriched_partial"]
