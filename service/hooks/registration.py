"""Registration (``com.okta.user.pre-registration``): self-service registration and progressive
profiling. The only hook type that can deny: with ``on_unknown_user``/``on_directory_error: deny`` the
person is refused with the configured message (Okta also denies when the hook times out).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from service.hooks.base import HookKind, Mapper, build_enriching
from service.hooks.config import AttributeMap, EnrichingSettings
from service.okta import Document, EventError, EventReason, HookEvent, JsonObject, Subject, member, no_change, text
from service.okta.commands import Value
from service.policy import Answer


class RegistrationKind(StrEnum):
    """Self-service registration creates a user; progressive profiling updates one. Okta accepts a
    different profile command for each, so the answer depends on it."""

    SELF_SERVICE = "self.service.registration"
    PROGRESSIVE = "progressive.profile"


#: ``requestType`` -> kind: a dict lookup, not a walk over the enum on every registration event.
_KINDS = {kind.value: kind for kind in RegistrationKind}


def registration_kind(event: HookEvent) -> RegistrationKind:
    """Which registration ``event`` is; Classic Engine sends no ``requestType``: self-service."""
    if event.request_type is None:
        return RegistrationKind.SELF_SERVICE
    return _KINDS[event.request_type]  # read_subject refused any other value


class RegistrationSettings(EnrichingSettings):
    answers: ClassVar[frozenset[Answer]] = frozenset({Answer.CONTINUE, Answer.DENY})

    #: Shown to the person registering when the policy denies them.
    deny_message: str = Field("Registration cannot be completed at this time.", min_length=1)
    #: Okta profile attribute -> rule.
    profile: AttributeMap = Field(default_factory=dict)

    def rule_sets(self) -> dict[str, AttributeMap]:
        return {"profile": self.profile}


def read_subject(document: JsonObject, data: JsonObject) -> Subject:
    """Self-service names the person in ``data.userProfile``, progressive profiling in the context's user."""
    request_type = document.get("requestType")
    if request_type is not None and (not isinstance(request_type, str) or request_type not in _KINDS):
        raise EventError(EventReason.UNKNOWN_REQUEST_TYPE, "unknown requestType for a registration event")
    if request_type == RegistrationKind.PROGRESSIVE:
        profile = member(member(member(data, "context"), "user"), "profile")
    else:
        profile = member(data, "userProfile")
    return Subject(text(profile, "login"), text(profile, "email"))


def registration_update(kind: RegistrationKind, profile: Mapping[str, Value]) -> Document:
    """Set profile attributes on the registering user. Progressive profiling has its own command name;
    the self-service one is invalid there."""
    if not profile:
        return no_change()
    command = (
        "com.okta.user.progressive.profile.update"
        if kind is RegistrationKind.PROGRESSIVE
        else "com.okta.user.profile.update"
    )
    return {"commands": [{"type": command, "value": dict(profile)}]}


def denial(summary: str) -> Document:
    """Deny a registration. The ``error`` object makes Okta show ``summary`` to the end user; any
    ``error`` also cancels all other commands, so none are sent."""
    return {
        "commands": [{"type": "com.okta.action.update", "value": {"registration": "DENY"}}],
        "error": {"errorSummary": summary},
    }


@dataclass(frozen=True, slots=True)
class RegistrationStep:
    settings: RegistrationSettings

    def enrich(self, event: HookEvent, apply: Mapper) -> Document:
        return registration_update(registration_kind(event), apply(self.settings.profile))

    def denial(self) -> Document:
        return denial(self.settings.deny_message)


KIND = HookKind(
    name="registration",
    event_type="com.okta.user.pre-registration",
    settings=RegistrationSettings,
    read_subject=read_subject,
    build=build_enriching,
    step=RegistrationStep,
)
