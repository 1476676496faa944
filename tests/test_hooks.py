"""Every supported hook type, end to end: Okta's own example requests sent over HTTP to the service
on the demo directory; answers checked against Okta's response schemas and the expected commands.

The service runs in the test process (``in_process``: the real app factory on real sockets and the real
slapd); nothing here needs a process of its own."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from in_process import InProcessService
from okta_spec import example, registration_for, validate_response
from support.answers import unchanged
from support.config import SECRET, service_config
from support.fakes import FakeClock, FakeDirectory, person

from service.demo.slapd import SERVICE_BIND_PASSWORD
from service.directory import Directory, DirectoryError
from service.hooks.base import EnrichingHook
from service.hooks.registry import HookType
from service.okta import HookEvent, parse_event
from service.settings import parse_settings


@pytest.fixture
def service(in_process: InProcessService) -> InProcessService:
    return in_process


@pytest.fixture
def start_service(start_in_process):
    return start_in_process


def commands(response_body: dict) -> dict[str, object]:
    """command type -> value (each type appears once in our answers)."""
    return {command["type"]: command["value"] for command in response_body["commands"]}


def test_self_service_registration_is_enriched(service: InProcessService) -> None:
    response = service.post("registration", example("registration"))

    assert response.status_code == 200
    body = response.json()
    validate_response("registration", body)
    assert set(body["debugContext"]) == {"outcome", "directoryMs", "cache"}  # Okta's System Log: diagnostics only
    assert body["debugContext"]["outcome"] == "enriched"
    profile = commands(body)["com.okta.user.profile.update"]
    assert profile == {
        "department": "Engineering",
        "title": "Senior Software Engineer",
        "employeeNumber": "1002",
        "managerEmail": "carol.chen@example.com",
        "groups": ["all-staff", "engineering"],
    }


def test_classic_engine_registration_without_request_type(service: InProcessService) -> None:
    event = example("registration")
    del event["requestType"]

    body = service.post("registration", event).json()

    assert list(commands(body)) == ["com.okta.user.profile.update"]


def test_progressive_profile_uses_its_own_command(service: InProcessService) -> None:
    response = service.post("registration", example("registration_progressive"))

    body = response.json()
    validate_response("registration", body)
    assert list(commands(body)) == ["com.okta.user.progressive.profile.update"]
    assert commands(body)["com.okta.user.progressive.profile.update"]["title"] == "Senior Software Engineer"


def test_token_patches_both_requested_tokens(service: InProcessService) -> None:
    response = service.post("token", example("token"))

    body = response.json()
    validate_response("token", body)
    patches = commands(body)
    assert patches["com.okta.identity.patch"] == [
        {"op": "add", "path": "/claims/department", "value": "Operations"},
        {"op": "add", "path": "/claims/title", "value": "Okta Administrator"},
    ]
    assert patches["com.okta.access.patch"] == [
        {"op": "add", "path": "/claims/directory_groups", "value": ["all-staff", "okta-admins"]},
        {"op": "add", "path": "/claims/manager", "value": "john.smith@example.com"},
    ]


def test_token_replaces_claims_already_present_and_skips_tokens_not_minted(service: InProcessService) -> None:
    event = example("token")
    event["data"]["identity"]["claims"]["department"] = "stale"
    del event["data"]["access"]  # only an ID token in this flow

    body = service.post("token", event).json()

    validate_response("token", body)
    assert list(commands(body)) == ["com.okta.identity.patch"]
    assert commands(body)["com.okta.identity.patch"][0] == {
        "op": "replace",
        "path": "/claims/department",
        "value": "Operations",
    }


def test_only_the_same_event_gets_the_remembered_answer(service: InProcessService) -> None:
    """Okta's retry re-sends the very event and gets the first answer again; Okta's documented examples
    carry fixed eventIds, so an edited copy (an admin trying the example with curl) reuses the eventId
    and the user with another body: it is answered for what it asks, never with the first answer."""
    replayed = 'okta_hook_replayed_answers_total{hook_type="token"}'
    first = service.post("token", example("token")).json()
    assert service.post("token", example("token")).json() == first  # Okta's retry: the same bytes
    assert service.metric(replayed) == 1

    access_only = example("token")
    del access_only["data"]["identity"]  # no ID token in this flow: none may be patched
    body = service.post("token", access_only).json()
    validate_response("token", body)
    assert list(commands(body)) == ["com.okta.access.patch"]

    present = example("token")
    present["data"]["access"]["claims"]["manager"] = "stale"  # a claim the token has: replace, not add
    body = service.post("token", present).json()
    validate_response("token", body)
    assert commands(body)["com.okta.access.patch"][1] == {
        "op": "replace",
        "path": "/claims/manager",
        "value": "john.smith@example.com",
    }
    assert present["eventId"] == access_only["eventId"] == example("token")["eventId"]
    assert service.metric(replayed) == 1


def test_saml_adds_attribute_statements(service: InProcessService) -> None:
    response = service.post("saml", example("saml"))

    body = response.json()
    validate_response("saml", body)
    operations = commands(body)["com.okta.assertion.patch"]
    basic = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
    string = {"xsi:type": "xs:string"}
    assert operations == [
        {
            "op": "add",
            "path": "/claims/department",
            "value": {
                "attributes": {"NameFormat": basic},
                "attributeValues": [{"attributes": string, "value": "Sales"}],
            },
        },
        {
            "op": "add",
            "path": "/claims/groups",
            "value": {
                "attributes": {"NameFormat": basic},
                "attributeValues": [
                    {"attributes": string, "value": "all-staff"},
                    {"attributes": string, "value": "sales"},
                ],
            },
        },
    ]


def test_saml_replaces_values_of_an_existing_attribute(service: InProcessService) -> None:
    event = example("saml")
    event["data"]["assertion"]["claims"]["department"] = {
        "attributes": {"NameFormat": "urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified"},
        "attributeValues": [{"attributes": {"xsi:type": "xs:string"}, "value": "old"}],
    }

    body = service.post("saml", event).json()

    validate_response("saml", body)
    first = commands(body)["com.okta.assertion.patch"][0]
    assert first == {
        "op": "replace",
        "path": "/claims/department",
        "value": {
            "attributes": {"NameFormat": "urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified"},
            "attributeValues": [{"attributes": {"xsi:type": "xs:string"}, "value": "Sales"}],
        },
    }


def test_user_import_updates_okta_and_app_user_profiles(service: InProcessService) -> None:
    response = service.post("user-import", example("user_import"))

    body = response.json()
    validate_response("user_import", body)
    assert commands(body) == {
        "com.okta.user.profile.update": {"department": "Operations", "title": "Systems Administrator"},
        "com.okta.appUser.profile.update": {"employeeNumber": "1012"},
    }


@pytest.mark.parametrize("hook", ["registration", "token", "saml", "user-import"])
def test_unknown_user_continues_without_changes(service: InProcessService, hook: str) -> None:
    name = "user_import" if hook == "user-import" else hook
    event = example(name)
    raw = json.dumps(event)
    for known in (
        "rosario.jones@example.com",
        "administrator1@clouditude.net",
        "user@example.com",
        "sally.admin@example.net",
    ):
        raw = raw.replace(known, "nobody.here@example.com")

    response = service.post(hook, json.loads(raw))

    assert response.status_code == 200
    assert unchanged(response.json())["outcome"] == "no_match"
    validate_response(name, response.json())


def test_non_ascii_values_round_trip(service: InProcessService) -> None:
    event = registration_for("zoe.angstrom@example.com")

    profile = commands(service.post("registration", event).json())["com.okta.user.profile.update"]

    assert profile["department"] == "Recherche & Développement"
    assert profile["title"] == "Ingénieure"
    assert profile["managerEmail"] == "jose.muller@example.com"  # manager DN is non-ASCII too


def test_manager_dn_with_escaped_comma_resolves(service: InProcessService) -> None:
    event = registration_for("user@example.com")

    profile = commands(service.post("registration", event).json())["com.okta.user.profile.update"]

    assert profile["managerEmail"] == "john.smith@example.com"


def test_dangling_manager_dn_is_left_out(service: InProcessService) -> None:
    event = registration_for("orphan.report@example.com")

    profile = commands(service.post("registration", event).json())["com.okta.user.profile.update"]

    assert "managerEmail" not in profile
    assert profile["title"] == "Support Engineer"


@pytest.mark.parametrize(
    "hostile",
    ["*", "*)(uid=*", "*)(|(mail=*", "rosario.jones@example.com)(mail=*", "\\00", "\x00", "\\", "(", "\\2a"],
)
def test_hostile_identifiers_match_nothing(service: InProcessService, hostile: str) -> None:
    event = registration_for(hostile)

    response = service.post("registration", event)

    assert response.status_code == 200
    # a filter injection would have matched someone; a NUL is refused before the directory
    assert unchanged(response.json())["outcome"] in ("no_match", "refused_identifier")


def test_identifier_with_filter_metacharacters_matches_exactly(service: InProcessService) -> None:
    event = registration_for("paren(test)*star@example.com")

    profile = commands(service.post("registration", event).json())["com.okta.user.profile.update"]

    assert profile["title"] == "QA Engineer"


def test_several_matches_are_an_error_not_a_guess(service: InProcessService) -> None:
    event = registration_for("shared.mailbox@example.com")

    response = service.post("registration", event)

    assert response.status_code == 200
    diagnostics = unchanged(response.json())  # the continue fallback; never one of the two entries
    assert diagnostics["outcome"] == "fallback_ldap_error" and diagnostics["error"] == "ambiguous"
    assert (
        'okta_hook_ldap_errors_total{directory="default",error_type="ambiguous",operation="search"} 1.0'
        in service.metrics()
    )


def test_deny_policy_for_unknown_registrant(slapd, start_service) -> None:
    message = "Only people in the company directory can register."
    config = service_config(slapd.url)
    config["hooks"]["registration"].update(on_unknown_user="deny", deny_message=message)
    service = start_service(config)
    event = registration_for("stranger@example.org")

    body = service.post("registration", event).json()

    validate_response("registration", body)
    assert body == {
        "commands": [{"type": "com.okta.action.update", "value": {"registration": "DENY"}}],
        "error": {"errorSummary": message},
        "debugContext": {"outcome": "no_match", "directoryMs": body["debugContext"]["directoryMs"], "cache": "miss"},
    }
    assert 'okta_hook_denials_total{hook_type="registration",reason="no_match"} 1.0' in service.metrics()


def test_hook_types_without_configuration_have_no_endpoint(slapd, start_service) -> None:
    config = service_config(slapd.url)
    config["hooks"] = {"token": config["hooks"]["token"]}
    service = start_service(config)

    assert service.post("registration", example("registration")).status_code == 404
    assert service.post("token", example("token")).status_code == 200


# -- bad input gets a clear answer ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "body is not valid JSON"),
        (b"\xff\xfe", "body is not valid JSON"),
        (b"[1, 2]", "body is not a JSON object"),
        (
            b'{"eventType": "com.okta.oauth2.tokens.transform", "data": {}}',
            "eventType must be com.okta.user.pre-registration",
        ),
        (b'{"eventType": "com.okta.user.pre-registration", "data": []}', "data must be an object"),
        (
            b'{"eventType": "com.okta.user.pre-registration", "requestType": "x", "data": {}}',
            "unknown requestType for a registration event",
        ),
        (
            b'{"eventType": "com.okta.user.pre-registration", "data": {"userProfile": {}}}',
            "event names no user (login or email)",
        ),
    ],
)
def test_malformed_requests_get_400_with_a_short_reason(service: InProcessService, body: bytes, reason: str) -> None:
    response = service.post("registration", body)

    assert response.status_code == 400
    assert response.json() == {"message": reason}


def test_body_over_256_kib_gets_413(service: InProcessService) -> None:
    event = example("registration")
    event["data"]["userProfile"]["padding"] = "x" * (256 * 1024)

    assert service.post("registration", event).status_code == 413
    metrics = service.metrics()  # refused before routing, still counted under its hook's route
    assert 'okta_hook_requests_total{hook_type="registration",outcome="bad_request"} 1.0' in metrics
    assert 'method="POST",route="/hooks/registration",status_code="413"} 1.0' in metrics
    assert "http_server_requests_in_flight 0.0" in metrics


def test_wrong_or_missing_secret_gets_401_without_detail(service: InProcessService) -> None:
    for secret in (None, "", "wrong", SECRET + "x", SECRET[:-1], SECRET.upper()):
        response = service.post("registration", example("registration"), secret=secret)
        assert response.status_code == 401
        assert response.content == b""
    assert 'okta_hook_requests_total{hook_type="registration",outcome="unauthorized"} 6.0' in service.metrics()


def test_rotation_accepts_every_configured_secret(slapd, start_service, tmp_path) -> None:
    secret_file = tmp_path / "next-secret"
    secret_file.write_text("Basic bmV4dDpzZWNyZXQ=\n")  # Okta's Basic auth is a header secret too
    config = service_config(
        slapd.url,
        auth={"header": "Authorization", "secret_env": ["OKTA_HOOK_SECRET"], "secret_files": [str(secret_file)]},
    )
    service = start_service(config)

    assert service.post("registration", example("registration"), secret=SECRET).status_code == 200
    assert service.post("registration", example("registration"), secret="Basic bmV4dDpzZWNyZXQ=").status_code == 200
    assert service.post("registration", example("registration"), secret="Basic b2xkOnNlY3JldA==").status_code == 401


def test_custom_secret_header(slapd, start_service) -> None:
    config = service_config(slapd.url, auth={"header": "X-Okta-Hook-Secret", "secret_env": ["OKTA_HOOK_SECRET"]})
    service = start_service(config)

    assert (
        service.post("token", example("token"), secret=None, headers={"X-Okta-Hook-Secret": SECRET}).status_code == 200
    )
    assert service.post("token", example("token"), secret=SECRET).status_code == 401


def test_wrong_method_and_unknown_paths(service: InProcessService) -> None:
    assert service.client.get(service.hook_url + "/hooks/registration").status_code == 405
    assert service.client.post(service.hook_url + "/metrics").status_code == 404
    assert service.client.get(service.hook_url + "/livez").status_code == 404  # ops endpoints stay off the hook port


def test_ops_port_probes_and_metrics(service: InProcessService) -> None:
    assert service.client.get(service.ops_url + "/livez").status_code == 200
    assert service.client.get(service.ops_url + "/readyz").status_code == 200
    service.post("registration", example("registration"))
    metrics = service.metrics()
    assert 'okta_hook_requests_total{hook_type="registration",outcome="enriched"} 1.0' in metrics
    assert (
        'http_server_request_duration_seconds_bucket{le="2.5",method="POST",route="/hooks/registration",'
        'status_code="200"} 1.0' in metrics
    )
    assert service.client.post(service.ops_url + "/hooks/registration").status_code == 404
    # the directory's operations under their own names (the manager DN was resolved)
    for operation in ("bind", "search", "resolve"):
        assert (
            service.metric(
                f'okta_hook_ldap_operation_duration_seconds_count{{directory="default",operation="{operation}"}}'
            )
            >= 1
        )


def test_a_bug_in_the_service_still_answers_with_the_fallback() -> None:
    """Nothing real fails this way (that is the point of a bug), so a directory that raises an
    unexpected exception stands in for one; the answer must still be the configured fallback."""
    config = service_config("ldap://127.0.0.1:389")
    config["hooks"]["registration"]["on_directory_error"] = "deny"
    settings = parse_settings(config)
    clock = FakeClock()
    directory = FakeDirectory(clock=clock)
    directory.fail(RuntimeError("a bug"))
    hook = EnrichingHook(HookType.REGISTRATION, settings.hooks.registration, directory)
    event = parse_event(json.dumps(example("registration")).encode(), HookType.REGISTRATION)
    result = clock.run(hook.answer(event, clock()))

    assert result.outcome.value == "fallback_internal_error"
    assert result.error_kind == "RuntimeError"
    assert result.denied and result.body["commands"][0]["value"] == {"registration": "DENY"}


def test_a_fallback_keeps_the_event_id_and_its_own_duration(slapd) -> None:
    """What the logs and Okta's System Log get for a fallback: the event's id (to find it in Okta's
    System Log) and the time spent on the directory, not some other clock."""
    settings = parse_settings(service_config(slapd.url))
    directory = Directory(settings.directory, SERVICE_BIND_PASSWORD)
    hook = EnrichingHook(HookType.REGISTRATION, settings.hooks.registration, directory)
    event = parse_event(json.dumps(registration_for("stranger@example.org")).encode(), HookType.REGISTRATION)
    try:
        result = asyncio.run(hook.answer(event, time.monotonic()))
    finally:
        directory.close()

    assert result.outcome.value == "no_match"
    assert result.event_id == event.event_id != ""
    assert 0 <= result.directory_seconds < 5
    assert 0 <= result.body["debugContext"]["directoryMs"] < 5000


# -- the hook's logic on fakes: which fallback each failure gets, what is never looked up --------------

ROSARIO = "rosario.jones@example.com"


def fake_hook(
    hook_type: HookType, strip_domains: tuple[str, ...] = (), **section: object
) -> tuple[EnrichingHook, FakeDirectory, FakeClock]:
    """``hook_type`` of the demo configuration (``section`` merged into its settings, no cache) on a
    FakeDirectory holding the person of Okta's examples."""
    config = service_config("ldap://127.0.0.1:389")
    config["hooks"][hook_type.value].update(section, cache={"fresh_seconds": 0, "stale_seconds": 0})
    settings = getattr(parse_settings(config).hooks, hook_type.value)
    clock = FakeClock()
    people = {ROSARIO: person(ROSARIO, title="Senior Software Engineer")}
    directory = FakeDirectory(people, clock=clock, strip_domains=strip_domains)
    return EnrichingHook(hook_type, settings, directory), directory, clock


def registration(email: str = ROSARIO) -> HookEvent:
    return parse_event(json.dumps(registration_for(email)).encode(), HookType.REGISTRATION)


@pytest.mark.parametrize(
    ("failure", "outcome", "detail"),
    [
        ("hang", "fallback_deadline", {"deadlineStage": "search"}),
        ("queued", "fallback_deadline", {"deadlineStage": "queue"}),
        ("timeout", "fallback_ldap_error", {"error": "timeout"}),
        ("ambiguous", "fallback_ldap_error", {"error": "ambiguous"}),
    ],
)
@pytest.mark.parametrize("on_directory_error", ["continue", "deny"])
def test_each_directory_failure_gets_the_directory_error_policy(
    failure: str, outcome: str, detail: dict[str, str], on_directory_error: str
) -> None:
    """A hanging directory (the deadline passes in fake time), a request that queued too long to start
    a lookup, a failing or ambiguous directory: each is answered with on_directory_error, never with
    on_unknown_user, and says why in Okta's debugContext."""
    hook, directory, clock = fake_hook(
        HookType.REGISTRATION, on_directory_error=on_directory_error, on_unknown_user="deny"
    )
    received_at = clock()
    if failure == "hang":
        directory.hang()
    elif failure == "queued":
        received_at -= 2.45  # 2.5 s deadline: less than min_lookup_seconds (0.1) left
    else:
        directory.fail(DirectoryError(failure, "the directory failed"))  # type: ignore[arg-type]

    result = clock.run(hook.answer(registration(), received_at))

    diagnostics = result.body["debugContext"]
    assert diagnostics["outcome"] == outcome
    assert {key: diagnostics[key] for key in detail} == detail
    assert result.denied is (on_directory_error == "deny")
    if on_directory_error == "deny":
        assert result.body["commands"] == [{"type": "com.okta.action.update", "value": {"registration": "DENY"}}]
    else:
        unchanged(result.body)
    assert directory.calls == 1


def test_a_hanging_directory_is_given_up_at_the_deadline() -> None:
    hook, directory, clock = fake_hook(HookType.TOKEN, deadline_seconds=1.5)
    directory.hang()
    received_at = clock()

    result = clock.run(hook.answer(parse_event(json.dumps(example("token")).encode(), HookType.TOKEN), received_at))

    assert result.outcome.value == "fallback_deadline" and result.stage == "search"
    assert clock() == received_at + 1.5  # not a moment later (fake seconds: the loop jumped there)
    assert not result.denied  # a token hook has no deny answer


@pytest.mark.parametrize(
    ("identifier", "reason", "strip_domains"),
    [
        (ROSARIO + "\x85", "identifier_control_char", ()),
        (" " + ROSARIO, "identifier_whitespace", ()),
        (ROSARIO, "identifier_outside_domains", ("corp.example.com",)),
    ],
)
def test_a_refused_identifier_never_reaches_the_directory(
    identifier: str, reason: str, strip_domains: tuple[str, ...]
) -> None:
    hook, directory, clock = fake_hook(HookType.REGISTRATION, strip_domains, on_unknown_user="deny")

    result = clock.run(hook.answer(registration(identifier), clock()))

    assert result.outcome.value == "refused_identifier" and result.unsafe_identifier == reason
    assert result.body["debugContext"]["reason"] == reason
    assert result.denied  # answered like an unknown user: on_unknown_user
    assert directory.calls == 0
