"""Hostile input never reaches the directory, the JSON decoder's limits or the logs (issue 8, points 1,
2, 3, 5, 9, 10): the service in-process on the real slapd, and a real process for what only a socket
can send (header bytes that are not UTF-8)."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import ldap3
import pytest
from hostile_support import HOOK_PATHS, InProcessService, captured_logs, event_for, hook_lines, in_process
from ldap3.utils.conv import escape_filter_chars
from okta_spec import example
from opentelemetry.trace import SpanKind
from support.answers import unchanged
from support.config import SECRET, directory_config, service_config
from support.servers import RunningService

from service.demo.slapd import SERVICE_BIND_DN, SERVICE_BIND_PASSWORD, Slapd
from service.directory import Directory, DirectoryConfig, UserSearch
from service.okta import UnsafeIdentifier, unsafe_identifier
from service.settings import ConfigError, load_settings, parse_settings

NUL_ALICE = "alice.wong@example.com\u0000rosario"
#: What the demo directory holds about Alice: none of it may answer a question about anyone else.
ALICE = ["1003", "Software Engineer", "Engineering", "carol.chen@example.com", "engineering", "all-staff"]


@pytest.fixture(scope="module")
def service(slapd: Slapd) -> Iterator[InProcessService]:
    with in_process(service_config(slapd.url)) as running:
        yield running


# -- 1. identifiers ---------------------------------------------------------------------------------


def test_the_nul_identifier_really_matches_alice_in_slapd(slapd: Slapd) -> None:
    """Why identifiers are checked before the directory: escaped correctly, slapd still stops comparing
    ``mail`` at the NUL (asked with ldap3 directly: the service's directory never sends such a value).
    If this ever fails, slapd changed, not the service."""
    conn = ldap3.Connection(ldap3.Server(slapd.url), SERVICE_BIND_DN, SERVICE_BIND_PASSWORD, auto_bind=True)
    try:
        conn.search(
            "ou=people,dc=example,dc=com",
            f"(&(objectClass=inetOrgPerson)(mail={escape_filter_chars(NUL_ALICE)}))",
            attributes=["employeeNumber"],
        )
        assert [entry["attributes"]["employeeNumber"] for entry in conn.response] == ["1003"]
    finally:
        conn.unbind()
    search = UserSearch("ou=people,dc=example,dc=com", filter="(objectClass=inetOrgPerson)")
    config = DirectoryConfig(urls=(slapd.url,), user_search=search, bind_dn=SERVICE_BIND_DN, bind_password_env="X")
    directory = Directory(config, SERVICE_BIND_PASSWORD)
    try:
        assert directory.lookup(NUL_ALICE, frozenset({"employeeNumber"}), {}) is None
    finally:
        directory.close()


@pytest.mark.parametrize("hook", list(HOOK_PATHS))
def test_a_nul_after_a_real_address_gets_nobody_on_every_hook(service: InProcessService, hook: str) -> None:
    before = service.metric(
        "okta_hook_refused_identifiers_total", {"hook_type": hook, "reason": "identifier_control_char"}
    )
    service.spans.clear()
    with captured_logs() as events:
        answer = service.post_json(HOOK_PATHS[hook], event_for(hook, NUL_ALICE))

    assert answer.status == 200
    diagnostics = unchanged(answer.json())  # no commands: nothing of Alice's
    del diagnostics["directoryMs"]
    assert diagnostics == {"outcome": "refused_identifier", "reason": "identifier_control_char"}
    for value in ALICE:
        assert value not in answer.body.decode()
    after = service.metric(
        "okta_hook_refused_identifiers_total", {"hook_type": hook, "reason": "identifier_control_char"}
    )
    assert after == before + 1
    [line] = hook_lines(events)
    assert line["outcome"] == "refused_identifier" and line["reason"] == "identifier_control_char"
    assert "alice" not in json.dumps(events, default=str)
    names = [span.name for span in service.spans.get_finished_spans()]
    assert "LDAP search" not in names and f"POST {HOOK_PATHS[hook]}" in names  # never asked the directory


HOSTILE_IDENTIFIERS = {
    "alice.wong@example.com\x00": UnsafeIdentifier.CONTROL_CHAR,
    "alice.wong@example.com\x7f": UnsafeIdentifier.CONTROL_CHAR,  # DEL
    "alice.wong@example.com\x85": UnsafeIdentifier.CONTROL_CHAR,  # C1 (NEL)
    "alice.wong@example.com\n": UnsafeIdentifier.CONTROL_CHAR,
    "alice.wong\u200b@example.com": UnsafeIdentifier.CONTROL_CHAR,  # zero-width space (format)
    "\u202ealice.wong@example.com": UnsafeIdentifier.CONTROL_CHAR,  # right-to-left override
    "alice.wong@example.com\u2028": UnsafeIdentifier.CONTROL_CHAR,  # line separator
    "alice.wong@example.com\ud800": UnsafeIdentifier.SURROGATE,
    "a" * 89 + "@example.com": UnsafeIdentifier.TOO_LONG,  # 101 characters
    " alice.wong@example.com": UnsafeIdentifier.WHITESPACE,
    "alice.wong@example.com ": UnsafeIdentifier.WHITESPACE,
    "alice.wong@example.com\u3000": UnsafeIdentifier.WHITESPACE,  # ideographic space
    "\uff41lice.wong@example.com": UnsafeIdentifier.NOT_NORMALIZED,  # full-width a
    "alice.wong@example.\u33a1": UnsafeIdentifier.NOT_NORMALIZED,  # square m: a compatibility character
}


@pytest.mark.parametrize(("identifier", "reason"), HOSTILE_IDENTIFIERS.items(), ids=range(len(HOSTILE_IDENTIFIERS)))
def test_unsafe_identifiers(identifier: str, reason: UnsafeIdentifier) -> None:
    assert unsafe_identifier(identifier) is reason


@pytest.mark.parametrize(
    "identifier",
    [
        "alice.wong@example.com",
        "Mixed.Case@Example.COM",
        "paren(test)*star@example.com",
        "jos\u00e9.m\u00fcller@example.com",  # precomposed (NFC, NFKC-stable) non-ASCII
        "a" * 88 + "@example.com",  # exactly 100
        "administrator1",  # a login need not be an email
    ],
)
def test_real_identifiers_pass(identifier: str) -> None:
    assert unsafe_identifier(identifier) is None


@pytest.mark.parametrize(
    "identifier", [i for i, r in HOSTILE_IDENTIFIERS.items() if r is not UnsafeIdentifier.SURROGATE]
)
def test_hostile_identifiers_are_never_looked_up(service: InProcessService, identifier: str) -> None:
    """Surrogates cannot arrive through JSON (the body is refused first: see below)."""
    answer = service.post_json("/hooks/registration", event_for("registration", identifier))

    assert answer.status == 200
    diagnostics = unchanged(answer.json())
    assert diagnostics["outcome"] == "refused_identifier"
    assert diagnostics["reason"] == unsafe_identifier(identifier)


def test_a_refused_identifier_is_denied_like_an_unknown_user_when_the_policy_says_so(slapd: Slapd) -> None:
    config = service_config(slapd.url)
    config["hooks"]["registration"]["on_unknown_user"] = "deny"
    with in_process(config) as service:
        answer = service.post_json("/hooks/registration", event_for("registration", NUL_ALICE))
        denials = service.metric(
            "okta_hook_denials_total", {"hook_type": "registration", "reason": "refused_identifier"}
        )

    body = answer.json()
    assert body["commands"] == [{"type": "com.okta.action.update", "value": {"registration": "DENY"}}]
    assert body["debugContext"]["reason"] == "identifier_control_char"
    assert denials == 1


# -- 9. strip_domains ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uid_service(slapd: Slapd) -> Iterator[InProcessService]:
    """sAMAccountName-style matching: the part before @ against uid, for the company's domain only."""
    directory = directory_config(slapd.url)
    directory["user_search"] = {**directory["user_search"], "match_attribute": "uid", "strip_domains": ["example.com"]}
    with in_process(service_config(slapd.url, directory=directory)) as running:
        yield running


def test_strip_domains_enriches_the_company_domain_case_insensitively(uid_service: InProcessService) -> None:
    answer = uid_service.post_json("/hooks/registration", event_for("registration", "alice.wong@EXAMPLE.com"))

    profile = answer.json()["commands"][0]["value"]
    assert profile["employeeNumber"] == "1003"


@pytest.mark.parametrize(
    "login", ["alice.wong@evil.example", "alice.wong", "alice.wong@example.com.evil.example", "@example.com"]
)
def test_strip_domains_another_domain_is_nobody(uid_service: InProcessService, login: str) -> None:
    with captured_logs() as events:
        answer = uid_service.post_json("/hooks/registration", event_for("registration", login))

    diagnostics = unchanged(answer.json())
    del diagnostics["directoryMs"]
    assert diagnostics == {"outcome": "refused_identifier", "reason": "identifier_outside_domains"}
    assert hook_lines(events)[0]["reason"] == "identifier_outside_domains"


def test_strip_domains_config_is_validated(slapd: Slapd) -> None:
    directory = directory_config(slapd.url)
    directory["user_search"] = {**directory["user_search"], "strip_domains": ["@example.com"]}
    with pytest.raises(ConfigError, match=r"directory\.user_search: .*strip_domains must list domain names"):
        parse_settings(service_config(slapd.url, directory=directory))
    directory["user_search"] = {**directory["user_search"], "strip_domains": None}
    with pytest.raises(ConfigError, match=r"directory\.user_search\.strip_domains: "):
        parse_settings(service_config(slapd.url, directory=directory))
    directory["user_search"] = {"base_dn": "ou=people,dc=example,dc=com", "strip_domain": True}  # the old flag
    with pytest.raises(ConfigError, match=r"directory\.user_search\.strip_domain: replaced by strip_domains"):
        parse_settings(service_config(slapd.url, directory=directory))


# -- 10. strict config types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("server", "ops_port", "9090"),
        ("server", "hook_port", 8080.0),
        ("directory", "start_tls", "no"),
        ("directory", "pool_size", "8"),
        ("directory", "connect_timeout_seconds", "1.0"),
        ("directory", "start_tls", 0),
        ("logging", "level", 1),
    ],
)
def test_config_types_are_strict(slapd: Slapd, section: str, key: str, value: Any) -> None:
    config = service_config(slapd.url)
    if section == "server":
        config["server"] = {"hook_port": 8080, "ops_port": 9090, key: value}
    else:
        config[section] = {**config[section], key: value}
    with pytest.raises(ConfigError) as raised:
        parse_settings(config)
    assert re.search(rf"\b{section}\.{key}: ", str(raised.value)), str(raised.value)
    assert repr(value) not in str(raised.value) or isinstance(value, int | float)  # names, never echoes


def test_strict_config_still_reads_yaml_enums_lists_and_numbers(slapd: Slapd) -> None:
    from support.config import DEMO_CONFIG

    demo = load_settings(DEMO_CONFIG)  # every key of the README's example
    assert demo.hooks.registration is not None
    assert demo.hooks.registration.on_unknown_user.value == "continue"
    assert demo.directory.urls == ("ldap://127.0.0.1:10389",)
    assert demo.hooks.registration.deadline_seconds == 2.5
    config = service_config(slapd.url)
    config["hooks"]["token"]["deadline_seconds"] = 2  # an integer where a float is expected is fine
    assert parse_settings(config).hooks.token is not None


def test_a_yaml_value_json_cannot_hold_is_refused(slapd: Slapd) -> None:
    import datetime

    config = service_config(slapd.url)
    config["directory"]["user_search"]["base_dn"] = datetime.date(2020, 1, 1)
    with pytest.raises(ConfigError, match="not a string, number, boolean, list or mapping"):
        parse_settings(config)


# -- 2. unreadable bodies ---------------------------------------------------------------------------

_EVENT = json.dumps(example("registration"))
_HEAD = '{"eventType": "com.okta.user.pre-registration", "data": {"userProfile": {"email": "alice.wong@example.com"}}'

UNREADABLE = {
    "deep array": (b"[" * 100_000 + b"]" * 100_000, "too_deep"),
    "deep object": (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "too_deep"),
    "moderately deep": (("[" * 40 + "]" * 40).encode(), "too_deep"),
    "deep inside an event": ((_HEAD + ', "x": ' + "[" * 500 + "]" * 500 + "}").encode(), "too_deep"),
    "5000-digit integer": ((_HEAD + ', "x": ' + "9" * 5000 + "}").encode(), "number_too_large"),
    "40-digit integer": ((_HEAD + ', "x": -' + "9" * 40 + "}").encode(), "number_too_large"),
    "NaN": ((_HEAD + ', "x": NaN}').encode(), "non_finite_number"),
    "Infinity": ((_HEAD + ', "x": -Infinity}').encode(), "non_finite_number"),
    "float overflow": ((_HEAD + ', "x": 1e999}').encode(), "non_finite_number"),
    "duplicate key": (
        b'{"eventType": "com.okta.user.pre-registration", "data": {"userProfile": '
        b'{"email": "nobody@example.com", "email": "alice.wong@example.com"}}}',
        "duplicate_key",
    ),
    "latin-1": (_EVENT.replace("Rosario", "Ros\u00e1rio").encode("latin-1"), "not_utf8"),
    "UTF-16": (_EVENT.encode("utf-16"), "not_utf8"),
    "UTF-8 BOM": (b"\xef\xbb\xbf" + _EVENT.encode(), "invalid_json"),
    "encoded surrogate": (_EVENT.encode()[:-2] + b', "x": "\xed\xa0\x80"}', "not_utf8"),
    "escaped lone surrogate": (_EVENT.encode()[:-1] + b', "x": "\\ud800"}', "lone_surrogate"),
    "lone surrogate in a key": (_EVENT.encode()[:-1] + b', "\\udfff": 1}', "lone_surrogate"),
    "lone surrogate identifier": (
        b'{"eventType": "com.okta.user.pre-registration", "data": {"userProfile": '
        b'{"email": "alice.wong@example.com\\udc00"}}}',
        "lone_surrogate",
    ),
    "truncated": (_EVENT.encode()[:-3], "invalid_json"),
    "empty": (b"", "invalid_json"),
    "array": (b"[]", "not_an_object"),
    "wrong type": (_EVENT.replace("pre-registration", "import.transform").encode(), "wrong_event_type"),
    "no data": (b'{"eventType": "com.okta.user.pre-registration"}', "no_data"),
    "no user": (b'{"eventType": "com.okta.user.pre-registration", "data": {}}', "no_subject"),
    "request type": (
        b'{"eventType": "com.okta.user.pre-registration", "requestType": "x", "data": {}}',
        "unknown_request_type",
    ),
}


@pytest.mark.parametrize(("body", "reason"), UNREADABLE.values(), ids=UNREADABLE.keys())
def test_every_unreadable_body_is_a_400_with_a_reason(service: InProcessService, body: bytes, reason: str) -> None:
    with captured_logs() as events:
        answer = service.post("/hooks/registration", body)

    assert answer.status == 400
    assert set(answer.json()) == {"message"} and len(answer.body) < 100  # never quotes the request
    [line] = hook_lines(events)
    assert line["status"] == 400 and line["outcome"] == "bad_request" and line["reason"] == reason
    assert "alice" not in json.dumps(events, default=str)


# -- 5. eventId ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event_id", ["x" * 200_000, "abc\ndef", "<script>", "", "3o9jBzq1SmOGmmsDsqyyeQ=", 12345, {"a": 1}]
)
def test_an_event_id_unlike_oktas_is_not_logged(service: InProcessService, event_id: object) -> None:
    event = example("registration")
    event["eventId"] = event_id
    with captured_logs() as events:
        answer = service.post_json("/hooks/registration", event)

    assert answer.status == 200 and "commands" in answer.json()  # still answered: the id is only for logs
    [line] = hook_lines(events)
    assert line["event_id"] is None and line["event_id_rejected"] is True
    assert len(json.dumps(events, default=str)) < 2000


def test_oktas_event_ids_are_logged(service: InProcessService) -> None:
    for event_id in ["3o9jBzq1SmOGmmsDsqyyeQ", "04Dmt8BcT_aEgM", "3OWo4oo-QQ-rBWfRyTmQYw"]:
        event = example("registration")
        event["eventId"] = event_id
        with captured_logs() as events:
            service.post_json("/hooks/registration", event)
        [line] = hook_lines(events)
        assert line["event_id"] == event_id and line["event_id_rejected"] is None


# -- 3. the secret header -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ([], "missing"),
        ([(b"authorization", b"wrong-secret")], "mismatch"),
        ([(b"authorization", SECRET.encode() + b"\xff")], "malformed"),  # not UTF-8
        ([(b"authorization", b"\x80\x81\xfe\xff")], "malformed"),
        ([(b"authorization", b"x" * 5000)], "malformed"),
        ([(b"authorization", SECRET.encode()), (b"authorization", SECRET.encode())], "malformed"),  # repeated
        ([(b"authorization", b"wrong"), (b"authorization", SECRET.encode())], "malformed"),
    ],
)
def test_a_bad_secret_is_a_401_with_a_reason_and_no_value(
    service: InProcessService, headers: list[tuple[bytes, bytes]], reason: str
) -> None:
    service.spans.clear()
    with captured_logs() as events:
        answer = service.post("/hooks/registration", _EVENT.encode(), secret=None, headers=headers)

    assert answer.status == 401 and answer.body == b""
    [line] = hook_lines(events)
    assert line["status"] == 401 and line["outcome"] == "unauthorized" and line["reason"] == reason
    spans = service.spans.get_finished_spans()  # the server span, and health-check binds meanwhile
    server = [span for span in spans if span.kind is SpanKind.SERVER]
    assert [span.attributes["http.response.status_code"] for span in server] == [401]
    traced = [{**span.attributes, "name": span.name, "events": [e.name for e in span.events]} for span in spans]
    dumped = json.dumps(events, default=str) + json.dumps(traced, default=str)
    for _, value in headers:
        assert value.decode(errors="surrogateescape") not in dumped
    assert "wrong" not in dumped and "\\udc" not in dumped and "xxxx" not in dumped


def test_the_right_secret_still_works_with_utf8_secrets() -> None:
    from service.auth import AuthRefusal, SecretVerifier

    verifier = SecretVerifier("Authorization", ["s\u00e9cret", SECRET])
    assert verifier.why_refused(["s\u00e9cret"]) is None  # Sanic hands over UTF-8 as text
    latin1 = "s\u00e9cret".encode("latin-1").decode(errors="surrogateescape")  # as Sanic decodes it
    assert verifier.why_refused([latin1]) is AuthRefusal.MALFORMED
    assert verifier.why_refused(["s\u00e9cret\x00"]) is AuthRefusal.MALFORMED
    assert verifier.why_refused([SECRET]) is None


TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
RAW_HEADER_CASES = {
    "bytes 0x80-0xff": b"Authorization: " + bytes(range(0x80, 0x100)) + b"\r\n",
    "secret then 0xff": b"Authorization: " + SECRET.encode() + b"\xff\r\n",
    "NUL": b"Authorization: " + SECRET.encode() + b"\x00leak-marker\r\n",
    "repeated": f"Authorization: {SECRET}\r\nAuthorization: leak-marker\r\n".encode(),
    "very long": b"Authorization: leak-marker" + b"A" * 20_000 + b"\r\n",
    "non-UTF-8 header name": b"X-\xff\xfe: leak-marker\r\nAuthorization: leak-marker\r\n",
    "bare CR": b"Authorization: leak-marker\rX: y\r\n",
    # read before authentication, by the tracing middleware
    "baggage not UTF-8": b"baggage: k=\xff\xfeleak-marker\r\nAuthorization: leak-marker\r\n",
    "baggage malformed": b"baggage: leak-marker\r\nAuthorization: leak-marker\r\n",
    "tracestate malformed": b"traceparent: " + TRACEPARENT + b"\r\ntracestate: leak-marker=\xff,@leak-marker\r\n",
    "traceparent garbage": b"traceparent: leak-marker\xff\r\nAuthorization: leak-marker\r\n",
}


def _raw_post(service: RunningService, header_lines: bytes) -> bytes:
    body = _EVENT.encode()
    request = (
        b"POST /hooks/registration HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + header_lines
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: close\r\n\r\n"
        + body
    )
    with socket.create_connection(("127.0.0.1", service.hook_port), timeout=10) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    return received


def test_raw_header_bytes_against_a_real_process(slapd: Slapd, start_service) -> None:
    """Bytes that no HTTP client library will send: Sanic decodes header values as UTF-8 with
    surrogateescape, and none of them may become a 500 or reach the log."""
    service = start_service(service_config(slapd.url))
    statuses = {}
    for name, lines in RAW_HEADER_CASES.items():
        answer = _raw_post(service, lines)
        statuses[name] = int(answer.split(b" ", 2)[1])

    assert statuses["bytes 0x80-0xff"] == 401
    assert statuses["secret then 0xff"] == 401
    assert statuses["repeated"] == 401
    assert all(400 <= status < 500 for status in statuses.values()), statuses
    # the right secret is answered, whatever the trace headers hold
    hostile_trace = b"baggage: k=\xffleak-marker\r\ntracestate: leak-marker=\xfe\r\ntraceparent: leak-marker\r\n"
    answer = _raw_post(service, f"Authorization: {SECRET}\r\n".encode() + hostile_trace)
    assert answer.startswith(b"HTTP/1.1 200") and b'"commands"' in answer
    assert "commands" in service.post("registration", example("registration")).json()
    log = service.log()
    assert "leak-marker" not in log and SECRET not in log
    assert "\\udc" not in log and "\\x80" not in log and "\\u0080" not in log
    assert "Traceback" not in log and '"status": 500' not in log
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    reasons = [line.get("reason") for line in lines if line.get("event") == "hook_request" and line["status"] == 401]
    assert reasons.count("malformed") >= 3
