"""The hook types this service answers: one line each.

A hook type is a module of this package holding its :class:`~service.hooks.base.HookKind` (its
event, settings, commands and answer step). Listing that kind here gives it a configuration section
(``hooks.<name>``), a route (``/hooks/<name>``), metrics and log labels. Adding a hook type is a new
module and one line below.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from service.hooks import password_import, registration, saml, token, user_import
from service.hooks.base import Hook, HookKind, Step, Wiring
from service.hooks.config import EnrichingSettings, HookSettings
from service.okta import JsonObject, Subject
from service.policy import Answer, FailurePolicy


class HookType(StrEnum):
    """A hook type: its name (the enum's value, a ``str``) and its :class:`HookKind`."""

    _value_: str
    kind: HookKind[Any]

    def __new__(cls, kind: HookKind[Any]) -> HookType:
        member = str.__new__(cls, kind.name)
        member._value_ = kind.name
        member.kind = kind
        return member

    REGISTRATION = registration.KIND
    TOKEN = token.KIND
    SAML = saml.KIND
    USER_IMPORT = user_import.KIND
    PASSWORD_IMPORT = password_import.KIND

    @property
    def event_type(self) -> str:
        return self.kind.event_type

    @property
    def path(self) -> str:
        """The hook port's route for this type, e.g. ``/hooks/user-import``."""
        return "/hooks/" + self.value.replace("_", "-")

    @property
    def settings(self) -> type[HookSettings]:
        return self.kind.settings

    @property
    def answers(self) -> frozenset[Answer]:
        settings: type[HookSettings] = self.kind.settings
        return settings.answers

    @classmethod
    def named(cls, name: str) -> HookType:
        """The hook type called ``name`` (``ValueError`` if none is)."""
        return cls(name)  # type: ignore[arg-type]  # by value: Enum looks the name up

    def peers(self) -> Iterable[HookType]:
        return tuple(HookType)

    def subject(self, document: JsonObject, data: JsonObject) -> Subject:
        return self.kind.read_subject(document, data)

    def failure_policy(self, settings: HookSettings) -> FailurePolicy:
        """What this hook type answers when it cannot do its job, with the configured actions."""
        return FailurePolicy.of(self, *settings.actions())

    def step(self, settings: EnrichingSettings) -> Step:
        if self.kind.step is None:
            raise TypeError(f"{self.value} hooks do not enrich")
        return self.kind.step(settings)

    def create(self, settings: HookSettings, wiring: Wiring) -> Hook:
        """The hook answering this type's endpoint with ``settings``."""
        return self.kind.build(self, settings, wiring)


#: The answers each hook type can give when it cannot do its job.
ANSWERS: Mapping[HookType, frozenset[Answer]] = {hook_type: hook_type.answers for hook_type in HookType}
