"""User import inline hook (``com.okta.import.transform``): the imported user's Okta profile and app
user profile, set from the directory. No deny answer: a failure imports the user as planned."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import Field, field_validator

from service.hooks.base import HookKind, Mapper, NoDenial, build_enriching
from service.hooks.config import AttributeMap, EnrichingSettings
from service.okta import Document, HookEvent, JsonObject, Subject, member, no_change, text
from service.okta.commands import Value


class UserImportSettings(EnrichingSettings):
    #: Okta user profile attributes set on the imported user.
    profile: AttributeMap = Field(default_factory=dict)
    #: App user profile attributes (they reach the Okta profile through the app's mappings).
    app_user_profile: AttributeMap = Field(default_factory=dict)

    @field_validator("profile", "app_user_profile")
    @classmethod
    def _single_valued(cls, rules: AttributeMap) -> AttributeMap:
        for name, rule in rules.items():
            if rule.values == "all" or isinstance(rule.default, list):
                raise ValueError(f"{name}: Okta's import commands take one string per attribute; use values: first")
        return rules

    def rule_sets(self) -> dict[str, AttributeMap]:
        return {"profile": self.profile, "app_user_profile": self.app_user_profile}


def read_subject(document: JsonObject, data: JsonObject) -> Subject:
    """The Okta profile being imported, else the app user's email."""
    okta_profile = member(member(data, "user"), "profile")
    app_profile = member(member(data, "appUser"), "profile")
    return Subject(text(okta_profile, "login"), text(okta_profile, "email") or text(app_profile, "email"))


def import_update(profile: Mapping[str, Value], app_user_profile: Mapping[str, Value]) -> Document:
    """Update the imported user's Okta profile and/or app user profile."""
    commands = [
        {"type": command, "value": dict(values)}
        for command, values in (
            ("com.okta.user.profile.update", profile),
            ("com.okta.appUser.profile.update", app_user_profile),
        )
        if values
    ]
    return {"commands": commands} if commands else no_change()


@dataclass(frozen=True, slots=True)
class UserImportStep(NoDenial):
    settings: UserImportSettings

    def enrich(self, event: HookEvent, apply: Mapper) -> Document:
        return import_update(apply(self.settings.profile), apply(self.settings.app_user_profile))


KIND = HookKind(
    name="user_import",
    event_type="com.okta.import.transform",
    settings=UserImportSettings,
    read_subject=read_subject,
    build=build_enriching,
    step=UserImportStep,
)
