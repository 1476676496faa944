"""The Okta contract module on its own: parsing, subjects and command builders."""

from __future__ import annotations

import json

import pytest
from okta_spec import example, validate_response

from service.hooks.registration import RegistrationKind, registration_kind, registration_update
from service.hooks.registry import HookType
from service.hooks.saml import saml_patch
from service.hooks.token import token_patch
from service.okta import parse_event
from service.okta.commands import pointer


@pytest.mark.parametrize(
    ("name", "hook_type", "login", "email"),
    [
        ("registration", HookType.REGISTRATION, "rosario.jones@example.com", "rosario.jones@example.com"),
        ("registration_progressive", HookType.REGISTRATION, "rosario.jones@example.com", None),
        ("token", HookType.TOKEN, "administrator1@clouditude.net", "administrator1@clouditude.net"),
        ("saml", HookType.SAML, "user@example.com", None),
        ("user_import", HookType.USER_IMPORT, "sally.admin@example.net", "sally.admin@example.net"),
    ],
)
def test_subjects_of_okta_examples(name: str, hook_type: HookType, login: str, email: str | None) -> None:
    event = parse_event(json.dumps(example(name)).encode(), hook_type)
    assert (event.subject.login, event.subject.email) == (login, email)
    assert event.subject.pick("email") == (email or login)


def test_registration_kinds() -> None:
    ssr = parse_event(json.dumps(example("registration")).encode(), HookType.REGISTRATION)
    progressive = parse_event(json.dumps(example("registration_progressive")).encode(), HookType.REGISTRATION)
    assert registration_kind(ssr) is RegistrationKind.SELF_SERVICE
    assert registration_kind(progressive) is RegistrationKind.PROGRESSIVE
    assert registration_update(RegistrationKind.PROGRESSIVE, {}) == {}


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        ("department", "department"),
        ("http://schemas.example.com/claims/dept", "http:~1~1schemas.example.com~1claims~1dept"),
        ("a~b", "a~0b"),
        ("~/", "~0~1"),
    ],
)
def test_json_pointer_escaping(name: str, escaped: str) -> None:
    assert pointer(name) == escaped


def test_uri_named_claims_and_attributes_are_escaped_in_paths() -> None:
    token = parse_event(json.dumps(example("token")).encode(), HookType.TOKEN)
    saml = parse_event(json.dumps(example("saml")).encode(), HookType.SAML)
    uri = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/department"

    token_body = token_patch(token, {uri: "Sales"}, {})
    saml_body = saml_patch(saml, {uri: "Sales"})

    validate_response("token", token_body)
    validate_response("saml", saml_body)
    expected = "/claims/http:~1~1schemas.xmlsoap.org~1ws~12005~105~1identity~1claims~1department"
    assert token_body["commands"][0]["value"][0]["path"] == expected
    assert saml_body["commands"][0]["value"][0]["path"] == expected


def test_nothing_to_patch_is_an_empty_answer() -> None:
    token = parse_event(json.dumps(example("token")).encode(), HookType.TOKEN)
    assert token_patch(token, {}, {}) == {}
