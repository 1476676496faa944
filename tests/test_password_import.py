"""The password import hook against a real slapd (with the ppolicy overlay): the directory judges the
password in a bind as the person, every other answer is UNVERIFIED, and the password shows up nowhere."""

from __future__ import annotations

import asyncio
import json
import os
import time
import unicodedata
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import ldap3
import pytest
import yaml
from hostile_support import InProcessService, captured_logs, in_process
from ldap3.core.exceptions import LDAPSASLPrepError
from ldap3.protocol.sasl.sasl import sasl_prep
from okta_spec import example, validate_response
from password_import_support import (
    AWKWARD_DNS,
    EXACT_FORMS,
    MAX_FAILURES,
    METACHARACTERS,
    NON_ASCII,
    PEOPLE,
    RIGHT,
    PolicySlapd,
    password_event,
    password_ldif,
)
from prometheus_client import generate_latest
from support.config import directory_config
from support.servers import HangingServer
from wire_support import RecordingRelay

from service.demo.slapd import DEMO_USER_PASSWORD, free_port
from service.directory import Directory, DirectoryConfig, UserQuery, UserSearch
from service.directory.credentials import PasswordRejection, ppolicy_error, rejection_reason
from service.hooks.password_import import credential_verdict, password_of
from service.hooks.registry import ANSWERS, HookType
from service.okta import parse_event
from service.policy import Answer, FailureAction, FailurePolicy, Outcome, can_deny
from service.settings import ConfigError, load_secrets, parse_settings

PATH = "/hooks/password-import"
USER_BIND = "okta_hook_ldap_operation_duration_seconds_count"
#: What Active Directory says when it refuses a bind (its data code in the middle).
AD_MESSAGE = "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data {}, v4563"


@pytest.fixture(scope="module")
def ldap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicySlapd]:
    with PolicySlapd(tmp_path_factory.mktemp("ppolicy"), password_ldif()) as server:
        yield server


def config(ldap: PolicySlapd, url: str | None = None, **directory: Any) -> dict[str, Any]:
    """Only the password import hook, over StartTLS to ``ldap`` unless told otherwise."""
    settings = {"start_tls": True, "ca_file": str(ldap.ca_file), **directory}
    return {
        "auth": {"header": "Authorization", "secret_env": ["OKTA_HOOK_SECRET"]},
        "directory": directory_config(url or ldap.url, **settings),
        "hooks": {"password_import": {}},
        "logging": {"level": "info", "format": "json"},
    }


@pytest.fixture(scope="module")
def service(ldap: PolicySlapd) -> Iterator[InProcessService]:
    with in_process(config(ldap)) as running:
        yield running


def check(service: InProcessService, username: str, password: Any) -> dict[str, Any]:
    answer = service.post_json(PATH, password_event(username, password))
    assert answer.status == 200, answer.body
    body: dict[str, Any] = answer.json()
    validate_response("password_import", body)
    return body


def credential(body: dict[str, Any]) -> str:
    (command,) = body["commands"]
    assert command["type"] == "com.okta.action.update"
    value: str = command["value"]["credential"]
    return value


def counted(service: InProcessService, result: str, reason: str) -> float:
    return service.metric("okta_hook_password_verifications_total", {"result": result, "reason": reason})


def user_binds(service: InProcessService) -> float:
    return service.metric(USER_BIND, {"directory": "default", "operation": "user_bind"})


def ldap_errors(service: InProcessService) -> float:
    """``okta_hook_ldap_errors_total``, every operation and error type: what OktaHookDirectoryErrors reads."""
    return sum(
        sample.value
        for metric in service.telemetry.metrics.registry.collect()
        for sample in metric.samples
        if sample.name == "okta_hook_ldap_errors_total"
    )


# -- the answers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "password", "answer", "reason"),
    [
        ("pia.pass@example.com", RIGHT, "VERIFIED", "ok"),
        ("Pia.Pass@Example.com", RIGHT, "VERIFIED", "ok"),  # mail compares case-insensitively
        ("pia.pass@example.com", "correct horse batter", "UNVERIFIED", "invalid_credentials"),
        ("pia.pass@example.com", RIGHT.upper(), "UNVERIFIED", "invalid_credentials"),
        ("nina.unicode@example.com", NON_ASCII, "VERIFIED", "ok"),
        ("nina.unicode@example.com", "passwort-n-mima", "UNVERIFIED", "invalid_credentials"),
        ("mete.meta@example.com", METACHARACTERS, "VERIFIED", "ok"),
        ("mete.meta@example.com", "*", "UNVERIFIED", "invalid_credentials"),
        # a username with filter metacharacters finds its one entry, escaped once
        ("paren(test)*star@example.com", DEMO_USER_PASSWORD, "VERIFIED", "ok"),
        ("paren(test)*star@example.com", "wrong", "UNVERIFIED", "invalid_credentials"),
        ("*@example.com", DEMO_USER_PASSWORD, "UNVERIFIED", "unknown_user"),
        ("nobody@example.com", RIGHT, "UNVERIFIED", "unknown_user"),
        ("twin@example.com", RIGHT, "UNVERIFIED", "ambiguous_user"),
        ("noel.nopassword@example.com", "", "UNVERIFIED", "empty_password"),
        ("noel.nopassword@example.com", "anything", "UNVERIFIED", "invalid_credentials"),
        ("pia.pass@example.com\x00x", RIGHT, "UNVERIFIED", "refused_identifier"),
        # look-alikes of the right password that SASLprep (RFC 4013) would turn into it
        ("pia.pass@example.com", RIGHT + "\u00ad", "UNVERIFIED", "invalid_credentials"),  # soft hyphen
        ("pia.pass@example.com", "\uff43" + RIGHT[1:], "UNVERIFIED", "invalid_credentials"),  # full-width c
        ("pia.pass@example.com", RIGHT + "\ufe0f", "UNVERIFIED", "invalid_credentials"),  # variation selector
        ("pia.pass@example.com", RIGHT.replace(" ", "\u00a0"), "UNVERIFIED", "invalid_credentials"),  # NBSP
        ("pia.pass@example.com", RIGHT.replace(" ", "\u2003"), "UNVERIFIED", "invalid_credentials"),  # em space
        ("nina.unicode@example.com", unicodedata.normalize("NFD", NON_ASCII), "UNVERIFIED", "invalid_credentials"),
    ],
)
def test_the_directory_judges_the_password(
    service: InProcessService, username: str, password: str, answer: str, reason: str
) -> None:
    result = "verified" if answer == "VERIFIED" else "unverified"
    before = counted(service, result, reason)
    body = check(service, username, password)
    assert credential(body) == answer
    assert body["debugContext"]["reason"] == reason
    assert counted(service, result, reason) == before + 1


@pytest.mark.parametrize("password", ["", None, 42, ["x"]])
def test_an_empty_password_is_unverified_without_any_directory_call(service: InProcessService, password: Any) -> None:
    searches = service.metric(USER_BIND, {"directory": "default", "operation": "search"})
    binds = user_binds(service)
    body = check(service, "pia.pass@example.com", password)
    assert credential(body) == "UNVERIFIED"
    assert body["debugContext"] == {"outcome": "unverified", "directoryMs": 0, "reason": "empty_password"}
    assert (service.metric(USER_BIND, {"directory": "default", "operation": "search"}), user_binds(service)) == (
        searches,
        binds,
    )


def test_a_wrong_password_is_one_bind_never_retried(service: InProcessService) -> None:
    binds = user_binds(service)
    assert credential(check(service, "pia.pass@example.com", "not it")) == "UNVERIFIED"
    assert user_binds(service) == binds + 1


def test_each_check_binds_on_a_fresh_connection_closed_after(service: InProcessService) -> None:
    """One connection opened per check (never a pooled one, never kept): the pool holds service
    connections only, and none is left lent out."""
    connects = service.metric(USER_BIND, {"directory": "default", "operation": "user_connect"})
    for password in (RIGHT, "wrong", RIGHT):
        check(service, "pia.pass@example.com", password)
    assert service.metric(USER_BIND, {"directory": "default", "operation": "user_connect"}) == connects + 3
    assert service.metric("okta_hook_ldap_pool_in_use", {"directory": "default"}) == 0
    assert service.metric("okta_hook_ldap_pool_size", {"directory": "default"}) <= 4  # directory_config's pool_size


def test_a_locked_account_is_unverified_even_with_the_right_password(service: InProcessService) -> None:
    for _ in range(MAX_FAILURES):
        body = check(service, "lou.locked@example.com", "guess")
        assert body["debugContext"]["reason"] == "invalid_credentials"
    body = check(service, "lou.locked@example.com", RIGHT)
    assert credential(body) == "UNVERIFIED"
    assert body["debugContext"] == {"outcome": "unverified", "directoryMs": body["debugContext"]["directoryMs"],
                                    "reason": "locked"}  # fmt: skip
    assert counted(service, "unverified", "locked") >= 1


def test_the_check_sees_the_directory_as_it_is_now(ldap: PolicySlapd, service: InProcessService) -> None:
    """No cache: a password changed in the directory counts at the very next check."""
    assert credential(check(service, "cara.change@example.com", RIGHT)) == "VERIFIED"
    admin = ldap3.Connection(
        ldap3.Server("127.0.0.1", port=ldap.port), ldap.admin_dn, ldap.admin_password, auto_bind=True
    )
    admin.modify(f"uid=cara.change,{PEOPLE}", {"userPassword": [(ldap3.MODIFY_REPLACE, ["changed-in-ldap"])]})
    admin.unbind()
    assert credential(check(service, "cara.change@example.com", RIGHT)) == "UNVERIFIED"
    assert credential(check(service, "cara.change@example.com", "changed-in-ldap")) == "VERIFIED"
    assert [
        sample
        for metric in service.telemetry.metrics.registry.collect()
        for sample in metric.samples
        if sample.name == "okta_hook_cache_lookups_total" and sample.labels["hook_type"] == "password_import"
    ] == []


def test_ldaps_works_as_well_as_start_tls(ldap: PolicySlapd) -> None:
    with in_process(config(ldap, ldap.ldaps_url, start_tls=False)) as running:
        assert credential(check(running, "pia.pass@example.com", RIGHT)) == "VERIFIED"
        assert credential(check(running, "pia.pass@example.com", "nope")) == "UNVERIFIED"


# -- the bytes the person typed, and nothing else ------------------------------------------------------


def variants(password: str) -> list[str]:
    """What a normalizing client would send instead of ``password``: its Unicode normal forms and its
    SASLprep (RFC 4013) form, where they differ from it."""
    found = {unicodedata.normalize(form, password) for form in ("NFC", "NFD", "NFKC", "NFKD")}
    with suppress(LDAPSASLPrepError):
        found.add(sasl_prep(password))
    found.discard(password)
    return sorted(found)


def pwd_state(ldap: PolicySlapd, uid: str) -> dict[str, list[Any]]:
    """ppolicy's failure and lock records on ``uid``'s entry, read as the directory's administrator."""
    admin = ldap3.Connection(
        ldap3.Server("127.0.0.1", port=ldap.port), ldap.admin_dn, ldap.admin_password, auto_bind=True
    )
    try:
        admin.search(
            f"uid={uid},{PEOPLE}", "(objectClass=*)", ldap3.BASE, attributes=["pwdFailureTime", "pwdAccountLockedTime"]
        )
        attributes: dict[str, list[Any]] = admin.response[0]["attributes"]
        return {name: list(values) for name, values in attributes.items()}
    finally:
        admin.unbind()


@pytest.mark.parametrize("name", sorted(EXACT_FORMS))
def test_the_exact_bytes_verify_and_every_normalized_variant_does_not(service: InProcessService, name: str) -> None:
    password, username = EXACT_FORMS[name], f"form.{name}@example.com"
    errors = ldap_errors(service)
    assert credential(check(service, username, password)) == "VERIFIED"
    for variant in variants(password):
        body = check(service, username, variant)
        assert credential(body) == "UNVERIFIED", ascii(variant)
        assert body["debugContext"]["reason"] == "invalid_credentials"
    assert ldap_errors(service) == errors


@pytest.mark.parametrize("name", sorted(EXACT_FORMS))
def test_the_right_password_moves_no_lockout_counter(ldap: PolicySlapd, service: InProcessService, name: str) -> None:
    """More right tries than ppolicy tolerates wrong ones: every one VERIFIED, no failure recorded."""
    for _ in range(MAX_FAILURES + 1):
        assert credential(check(service, f"lock.{name}@example.com", EXACT_FORMS[name])) == "VERIFIED"
    assert pwd_state(ldap, f"lock.{name}") == {"pwdFailureTime": [], "pwdAccountLockedTime": []}


@pytest.mark.parametrize(
    "password",
    ["\x00", RIGHT + "\x00", RIGHT + "\x00junk", "\x07bell", RIGHT + "\x1b", "\u202eevil", "abc\u05d0", "\ue000",
     "\U0010fffd", "\ufffe"],
)  # fmt: skip
def test_what_a_person_types_is_never_a_directory_error(service: InProcessService, password: str) -> None:
    """Controls, NUL, bidi and private-use characters are the person's to type and the directory's to
    judge: a wrong one is invalid_credentials (slapd compares every octet, NUL included), never an
    error that moves OktaHookDirectoryErrors."""
    errors, directory_errors = ldap_errors(service), counted(service, "error", "directory_error")
    body = check(service, "pia.pass@example.com", password)
    assert credential(body) == "UNVERIFIED"
    assert body["debugContext"]["reason"] == "invalid_credentials"
    assert (ldap_errors(service), counted(service, "error", "directory_error")) == (errors, directory_errors)


@pytest.mark.parametrize("uid", sorted(AWKWARD_DNS))
def test_a_dn_is_bound_as_the_directory_returned_it(service: InProcessService, uid: str) -> None:
    """Escaped commas, plus signs and spaces, a leading '#', NFD text in the DN: ldap3 sends a bind's
    name as it is given (no DN rewriting on a bind), so the right password verifies."""
    assert credential(check(service, AWKWARD_DNS[uid], RIGHT)) == "VERIFIED"
    assert credential(check(service, AWKWARD_DNS[uid], RIGHT + "x")) == "UNVERIFIED"


def test_the_bind_on_the_wire_holds_the_typed_bytes_and_the_returned_dn(ldap: PolicySlapd) -> None:
    """Read on the wire (plain LDAP through a recording relay): the bind request carries the UTF-8
    bytes of the password as typed, never its SASLprep or NFC form, and the DN exactly as slapd sent
    it (NFD bytes kept)."""
    typed = EXACT_FORMS["nfd"] + EXACT_FORMS["nbsp"] + EXACT_FORMS["soft_hyphen"]
    with RecordingRelay(ldap.port) as relay:
        config = DirectoryConfig(
            urls=(relay.url,), user_search=UserSearch(PEOPLE), bind_dn=ldap.service_bind_dn, bind_password_env="X"
        )
        directory = Directory(config, ldap.service_bind_password)
        try:
            for mail in ("awkward.nfd@example.com", "form.nfd@example.com"):
                query = UserQuery.of(mail, frozenset(), {})
                check_result = asyncio.run(directory.verify_password(query, typed, time.monotonic() + 5))
                assert check_result.found and check_result.rejection is PasswordRejection.INVALID_CREDENTIALS
        finally:
            directory.close()
        sent = relay.sent
    assert sent.count(typed.encode("utf-8")) == 2
    assert unicodedata.normalize("NFC", typed).encode("utf-8") not in sent
    assert sasl_prep(typed).encode("utf-8") not in sent
    assert "uid=zoe\u0308 nfd,ou=people,dc=example,dc=com".encode() in sent


@pytest.mark.parametrize("name", sorted(EXACT_FORMS))
def test_the_service_account_password_is_sent_as_its_exact_bytes(ldap: PolicySlapd, name: str) -> None:
    """The service account's password (environment or file) goes out as it was read."""
    search = UserSearch(PEOPLE)

    def probe(secret: str) -> str | None:
        config = DirectoryConfig(
            urls=(ldap.url,), user_search=search, bind_dn=f"uid=form.{name},{PEOPLE}", bind_password_env="X",
            start_tls=True, ca_file=str(ldap.ca_file),
        )  # fmt: skip
        directory = Directory(config, secret)
        try:
            (error,) = directory.probe_servers().values()
            return None if error is None else error.kind
        finally:
            directory.close()

    assert probe(EXACT_FORMS[name]) is None
    for variant in variants(EXACT_FORMS[name]):
        assert probe(variant) == "bind_failed"


def test_a_service_password_that_is_not_utf8_stops_the_service_naming_the_variable(ldap: PolicySlapd) -> None:
    """Environment bytes that are not UTF-8 (Latin-1 here) cannot be sent as they are (ldap3 decodes
    every request as UTF-8 before sending it): refused at startup, never sent as other bytes."""
    settings = parse_settings(config(ldap))
    environ = {"OKTA_HOOK_SECRET": "s", "LDAP_BIND_PASSWORD": os.fsdecode(b"caf\xe9-secret")}
    with pytest.raises(ConfigError, match=r"^directory\.bind_password_env: LDAP_BIND_PASSWORD is not UTF-8 text$"):
        load_secrets(settings, environ)


# -- the directory failing -----------------------------------------------------------------------------


def test_a_directory_down_is_unverified_and_counted_apart(ldap: PolicySlapd) -> None:
    down = f"ldaps://127.0.0.1:{free_port()}"
    with in_process(config(ldap, down, start_tls=False)) as running:
        started = time.monotonic()
        body = check(running, "pia.pass@example.com", RIGHT)
        assert time.monotonic() - started < 3.0  # Okta's limit; the deadline is 2.5 s
        assert credential(body) == "UNVERIFIED"
        assert body["debugContext"]["reason"] == "directory_error"
        assert body["debugContext"]["error"] == "connect"
        assert counted(running, "error", "directory_error") == 1
        assert counted(running, "unverified", "invalid_credentials") == 0


def test_a_hung_directory_is_unverified_within_the_deadline(ldap: PolicySlapd) -> None:
    hung = HangingServer()
    try:
        settings = config(ldap, hung.url, operation_timeout_seconds=5.0, connect_timeout_seconds=5.0)
        settings["hooks"]["password_import"] = {"deadline_seconds": 1.0}
        with in_process(settings) as running:
            started = time.monotonic()
            body = check(running, "pia.pass@example.com", RIGHT)
            assert time.monotonic() - started < 3.0
            assert credential(body) == "UNVERIFIED"
            assert body["debugContext"]["reason"] == "deadline"
            assert counted(running, "error", "deadline") == 1
    finally:
        hung.close()


# -- the password goes nowhere -------------------------------------------------------------------------


def test_the_password_is_in_no_log_span_metric_or_answer(ldap: PolicySlapd) -> None:
    secrets = {
        RIGHT: "pia.pass@example.com",
        NON_ASCII: "nina.unicode@example.com",
        "Wr0ng-Pa55word!": "pia.pass@example.com",
        "not-a-real-user-password": "nobody@example.com",
        "twin-password": "twin@example.com",
    }
    down = f"ldaps://127.0.0.1:{free_port()}"
    outputs: list[str] = []
    with captured_logs() as events:
        for url, start_tls in ((ldap.url, True), (down, False)):
            with in_process(config(ldap, url, start_tls=start_tls)) as running:
                for password, username in secrets.items():
                    outputs.append(json.dumps(check(running, username, password), ensure_ascii=False))
                outputs.append(generate_latest(running.telemetry.metrics.registry).decode())
                for span in running.spans.get_finished_spans():
                    outputs.append(span.to_json())
    assert any(event.get("event") == "hook_request" for event in events)  # the log is captured
    outputs.append(json.dumps(events, ensure_ascii=False, default=repr))
    everything = "\n".join(outputs)
    assert '"credential": "VERIFIED"' in everything  # the answers are there
    for password in secrets:
        assert password not in everything
        assert json.dumps(password) not in everything  # nor its JSON escape


def test_the_event_does_not_show_the_password_in_its_repr() -> None:
    event = parse_event(json.dumps(password_event("pia.pass@example.com", RIGHT)).encode(), HookType.PASSWORD_IMPORT)
    assert password_of(event) == RIGHT
    assert RIGHT not in repr(event)


# -- the contract and the configuration ----------------------------------------------------------------


def test_okta_example_event_and_answers() -> None:
    event = parse_event(json.dumps(example("password_import")).encode(), HookType.PASSWORD_IMPORT)
    assert (event.subject.login, password_of(event)) == ("isaac.brock@example.com", "Okta")
    assert HookType.PASSWORD_IMPORT.path == PATH
    for verified, name in ((True, "PasswordImportVerifiedResponse"), (False, "PasswordImportUnVerifiedResponse")):
        body = credential_verdict(verified)
        validate_response("password_import", body)
        assert body == example(name)


def test_plain_ldap_is_refused_at_startup(ldap: PolicySlapd) -> None:
    with pytest.raises(ConfigError, match=r"hooks\.password_import: .*TLS"):
        parse_settings(config(ldap, start_tls=False))
    mixed = config(ldap, ldap.ldaps_url, start_tls=False)
    mixed["directory"]["urls"].append(ldap.url)
    with pytest.raises(ConfigError, match=r"hooks\.password_import"):
        parse_settings(mixed)
    parse_settings(config(ldap))  # StartTLS
    parse_settings(config(ldap, ldap.ldaps_url, start_tls=False))  # LDAPS


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (AD_MESSAGE.format("52e"), "invalid_credentials"),
        (AD_MESSAGE.format("530"), "not_permitted_now"),
        (AD_MESSAGE.format("531"), "workstation"),
        (AD_MESSAGE.format("532"), "password_expired"),
        (AD_MESSAGE.format("533"), "account_disabled"),
        (AD_MESSAGE.format("701"), "account_expired"),
        (AD_MESSAGE.format("773"), "must_change_password"),
        (AD_MESSAGE.format("775"), "locked"),
        (AD_MESSAGE.format("999"), "invalid_credentials"),
        ("", "invalid_credentials"),
    ],
)  # fmt: skip
def test_active_directory_data_codes(message: str, reason: str) -> None:
    """Active Directory is not available here: its documented diagnostic messages are read as they come."""
    assert rejection_reason({"result": 49, "message": message}) == PasswordRejection(reason)


@pytest.mark.parametrize(
    ("value", "error"),
    [(b"0\x03\x81\x01\x01", 1), (b"0\x03\x81\x01\x00", 0), (b"0\x00", None), (b"0\x05\xa0\x03\x80\x01\x05", None),
     (b"0\x08\xa0\x03\x80\x01\x05\x81\x01\x02", 2), (b"", None), (b"0\x05\x81\x01", None), (b"\x04\x00", None)],
)  # fmt: skip
def test_ppolicy_response_values(value: bytes, error: int | None) -> None:
    assert ppolicy_error(value) == error


def test_user_binds_need_no_pooled_connection(ldap: PolicySlapd, tmp_path: Path) -> None:
    """The service account's pool is untouched by a user bind: its connections stay bound as the
    service account (a search after a check still sees everything the service account sees)."""
    with in_process(config(ldap)) as running:
        assert credential(check(running, "pia.pass@example.com", RIGHT)) == "VERIFIED"
        # the next check searches on a pooled connection: were it bound as Pia, her ACL would hide others
        assert credential(check(running, "nina.unicode@example.com", NON_ASCII)) == "VERIFIED"
        assert credential(check(running, "twin@example.com", RIGHT)) == "UNVERIFIED"


# -- the failure policy, one object per hook type --------------------------------------------------------


def test_each_hook_type_has_one_failure_policy() -> None:
    deny = FailurePolicy.of(HookType.REGISTRATION, FailureAction.DENY, FailureAction.CONTINUE)
    assert (deny.answer(Outcome.NO_MATCH), deny.answer(Outcome.REFUSED_IDENTIFIER)) == (Answer.DENY, Answer.DENY)
    assert deny.answer(Outcome.FALLBACK_DEADLINE) is Answer.CONTINUE
    for hook_type in (HookType.TOKEN, HookType.SAML, HookType.USER_IMPORT):
        assert not can_deny(hook_type)
        with pytest.raises(ValueError, match="on_unknown_user: deny is only an answer for registration hooks"):
            FailurePolicy.of(hook_type, FailureAction.DENY)
    password = FailurePolicy.of(HookType.PASSWORD_IMPORT, FailureAction.CONTINUE, FailureAction.CONTINUE)
    for outcome in (Outcome.NO_MATCH, Outcome.UNVERIFIED, Outcome.FALLBACK_LDAP_ERROR, Outcome.FALLBACK_DEADLINE):
        assert password.answer(outcome) is Answer.UNVERIFIED
    assert can_deny(HookType.REGISTRATION) and not can_deny(HookType.PASSWORD_IMPORT)
    assert set(ANSWERS) == set(HookType)


def test_password_import_has_no_failure_actions_to_configure(ldap: PolicySlapd) -> None:
    settings = config(ldap)
    settings["hooks"]["password_import"] = {"on_directory_error": "continue"}
    with pytest.raises(ConfigError, match=r"hooks\.password_import\.on_directory_error: unknown key"):
        parse_settings(settings)
    section = parse_settings(config(ldap)).hooks.password_import
    assert HookType.PASSWORD_IMPORT.failure_policy(section).on_directory_error is Answer.UNVERIFIED


# -- the chart -------------------------------------------------------------------------------------------


def _chart_hooks(directory: dict[str, Any]) -> dict[str, Any]:
    hooks = {name: None for name in ("registration", "token", "saml", "user_import")}
    return {"config": {"directory": directory, "hooks": {**hooks, "password_import": {"deadline_seconds": 2.0}}}}


def test_the_chart_serves_password_import_over_tls_only() -> None:
    import helm_python as helm
    from chart_tools import render_objects

    base = {"urls": ["ldaps://ldap.example.com"], "user_search": {"base_dn": "ou=people,dc=example,dc=com"}}
    rendered = render_objects(_chart_hooks(base))
    (configmap,) = [cm for cm in rendered.of_kind("ConfigMap") if "config.yaml" in cm.get("data", {})]
    settings = yaml.safe_load(configmap["data"]["config.yaml"])
    assert settings["hooks"]["password_import"] == {"deadline_seconds": 2.0}
    (container,) = rendered.one("Pod", hook=True)["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["HOOK_URL"].endswith(PATH)
    event = parse_event(env["EVENT"].encode(), HookType.PASSWORD_IMPORT)
    assert (event.subject.login, bool(password_of(event))) == ("helm-test@example.invalid", True)
    render_objects(_chart_hooks({**base, "urls": ["ldap://ldap.example.com"], "start_tls": True}))
    with pytest.raises(helm.HelmRenderError, match=r"config\.hooks\.password_import: .*TLS"):
        render_objects(_chart_hooks({**base, "urls": ["ldap://ldap.example.com"]}))
    with pytest.raises(helm.HelmValuesError):
        render_objects(
            _chart_hooks(base)
            | {"config": {**_chart_hooks(base)["config"], "hooks": {"password_import": {"cache": {}}}}}
        )
