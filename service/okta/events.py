"""Parsing and validating the JSON events Okta POSTs to an inline hook.

Okta's examples are not strictly typed (``eventTypeVersion`` is sometimes a number), so parsing is
lenient about what we do not use and strict about what we do: the event type, the ``data`` object and
the user the event is about.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class EventError(ValueError):
    """The request is not an Okta event this endpoint accepts. The message is safe to return to the caller:
    it never quotes the request."""


class HookType(StrEnum):
    """The inline-hook types this service answers. The value is the name used in config, metrics and logs."""

    REGISTRATION = "registration"
    TOKEN = "token"
    SAML = "saml"
    USER_IMPORT = "user_import"

    @property
    def event_type(self) -> str:
        return _EVENT_TYPES[self]

    @property
    def path(self) -> str:
        """The hook port's route for this type, e.g. ``/hooks/user-import``."""
        return "/hooks/" + self.value.replace("_", "-")


_EVENT_TYPES = {
    HookType.REGISTRATION: "com.okta.user.pre-registration",
    HookType.TOKEN: "com.okta.oauth2.tokens.transform",
    HookType.SAML: "com.okta.saml.tokens.transform",
    HookType.USER_IMPORT: "com.okta.import.transform",
}


class RegistrationKind(StrEnum):
    """Self-service registration creates a user; progressive profiling updates one. Okta accepts a
    different profile command for each, so the answer depends on it."""

    SELF_SERVICE = "self.service.registration"
    PROGRESSIVE = "progressive.profile"


@dataclass(frozen=True, slots=True)
class Subject:
    """Who the event is about, as Okta names them. Either may be missing, not both."""

    login: str | None
    email: str | None

    def pick(self, preferred: str) -> str:
        """The identifier to look up: the preferred one (``login`` or ``email``) when the event carries
        it, else the other (progressive-profile and token events carry a login but often no email)."""
        first, second = (self.email, self.login) if preferred == "email" else (self.login, self.email)
        value = first or second
        assert value is not None  # parse_event guarantees one of them
        return value


@dataclass(frozen=True, slots=True)
class HookEvent:
    """An Okta inline-hook event, reduced to what the answer depends on."""

    hook_type: HookType
    event_id: str
    subject: Subject
    data: dict[str, Any]
    registration_kind: RegistrationKind | None = None

    def token_claims(self, token: str) -> dict[str, Any] | None:
        """Claims of ``identity`` (ID token) or ``access`` in a token event; None if Okta is not minting
        that token in this flow, in which case it must not be patched."""
        section = self.data.get(token)
        if not isinstance(section, dict):
            return None
        claims = section.get("claims")
        return claims if isinstance(claims, dict) else {}

    def assertion_claims(self) -> dict[str, Any]:
        """Attribute statements already in a SAML assertion."""
        assertion = self.data.get("assertion")
        claims = assertion.get("claims") if isinstance(assertion, dict) else None
        return claims if isinstance(claims, dict) else {}


def parse_event(body: bytes, expected: HookType) -> HookEvent:
    """Parse ``body`` as an Okta event of type ``expected`` or raise :class:`EventError`."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise EventError("body is not valid JSON") from None
    if not isinstance(document, dict):
        raise EventError("body is not a JSON object")
    event_type = document.get("eventType")
    if event_type != expected.event_type:
        raise EventError(f"eventType must be {expected.event_type}")
    data = document.get("data")
    if not isinstance(data, dict):
        raise EventError("data must be an object")
    event_id = document.get("eventId")
    event_id = event_id if isinstance(event_id, str) else ""

    kind = None
    if expected is HookType.REGISTRATION:
        kind = _registration_kind(document.get("requestType"))
    subject = _subject(expected, kind, data)
    if not (subject.login or subject.email):
        raise EventError("event names no user (login or email)")
    return HookEvent(expected, event_id, subject, data, kind)


def _registration_kind(request_type: object) -> RegistrationKind:
    if request_type is None:
        return RegistrationKind.SELF_SERVICE  # Classic Engine sends no requestType
    for kind in RegistrationKind:
        if request_type == kind.value:
            return kind
    raise EventError("unknown requestType for a registration event")


def _subject(hook_type: HookType, kind: RegistrationKind | None, data: dict[str, Any]) -> Subject:
    """Where each hook type carries the user (see inline-hooks-contract.md §2)."""
    context = _object(data, "context")
    user_profile = _object(_object(context, "user"), "profile")
    if hook_type is HookType.REGISTRATION:
        profile = _object(data, "userProfile") if kind is RegistrationKind.SELF_SERVICE else user_profile
        return Subject(_text(profile, "login"), _text(profile, "email"))
    if hook_type is HookType.TOKEN:
        login = _text(user_profile, "login") or _text(_object(context, "session"), "login")
        email = _text(user_profile, "email") or _text(_object(_object(data, "identity"), "claims"), "email")
        return Subject(login, email)
    if hook_type is HookType.SAML:
        name_id = _text(_object(_object(data, "assertion"), "subject"), "nameId")
        return Subject(_text(user_profile, "login") or name_id, _text(user_profile, "email"))
    okta_profile = _object(_object(data, "user"), "profile")
    app_profile = _object(_object(data, "appUser"), "profile")
    return Subject(
        _text(okta_profile, "login"),
        _text(okta_profile, "email") or _text(app_profile, "email"),
    )


def _object(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def _text(parent: dict[str, Any], key: str) -> str | None:
    value = parent.get(key)
    return value if isinstance(value, str) and value else None
