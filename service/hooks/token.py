"""Token inline hook (``com.okta.oauth2.tokens.transform``): claims added to the ID and access tokens
Okta is minting. No deny answer in Okta's contract: a failure leaves the tokens as they are."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import Field, ValidationInfo, field_validator

from service.hooks.base import HookKind, Mapper, NoDenial, build_enriching
from service.hooks.config import AttributeMap, EnrichingSettings
from service.okta import (
    ACCESS_TOKEN_MODIFIABLE,
    RESERVED_CLAIMS,
    Document,
    HookEvent,
    JsonObject,
    Subject,
    member,
    no_change,
    pointer,
    text,
)
from service.okta.commands import Value

# Token events name their sections after the token: ``identity`` is the ID token, ``access`` the
# access token; the command names follow the same words.
_TOKEN_SECTIONS = (("identity", "com.okta.identity.patch"), ("access", "com.okta.access.patch"))


class TokenSettings(EnrichingSettings):
    #: Claims added to the ID token, when Okta mints one in the flow.
    id_token: AttributeMap = Field(default_factory=dict)
    #: Claims added to the access token, when Okta mints one in the flow.
    access_token: AttributeMap = Field(default_factory=dict)

    @field_validator("id_token", "access_token")
    @classmethod
    def _not_reserved(cls, claims: AttributeMap, info: ValidationInfo) -> AttributeMap:
        allowed = ACCESS_TOKEN_MODIFIABLE if info.field_name == "access_token" else frozenset()
        for name in claims:
            if not name:
                raise ValueError("claim names must not be empty")
            if name in RESERVED_CLAIMS and name not in allowed:
                raise ValueError(f"{name!r} is a claim Okta reserves; a patch touching it is rejected by Okta")
        return claims

    def rule_sets(self) -> dict[str, AttributeMap]:
        return {"id_token": self.id_token, "access_token": self.access_token}


def read_subject(document: JsonObject, data: JsonObject) -> Subject:
    """The context's user, else the session's login and the ID token's email."""
    context = member(data, "context")
    user_profile = member(member(context, "user"), "profile")
    login = text(user_profile, "login") or text(member(context, "session"), "login")
    email = text(user_profile, "email") or text(member(member(data, "identity"), "claims"), "email")
    return Subject(login, email)


def token_claims(event: HookEvent, token: str) -> JsonObject | None:
    """Claims of ``identity`` (ID token) or ``access`` in a token event; None if Okta is not minting
    that token in this flow, in which case it must not be patched."""
    section = event.data.get(token)
    if not isinstance(section, dict):
        return None
    claims = section.get("claims")
    return claims if isinstance(claims, dict) else {}


def token_patch(event: HookEvent, id_token: Mapping[str, Value], access_token: Mapping[str, Value]) -> Document:
    """Patch the claims of the tokens Okta is minting in this flow. A command for a token that was not
    requested voids Okta's whole patch, so tokens absent from the event are never patched. ``replace`` is
    used for claims the token already has, ``add`` for new ones (Okta's documented distinction)."""
    commands = []
    for (section, command), claims in zip(_TOKEN_SECTIONS, (id_token, access_token), strict=True):
        present = token_claims(event, section)
        if present is None or not claims:
            continue
        operations = [
            {"op": "replace" if name in present else "add", "path": "/claims/" + pointer(name), "value": value}
            for name, value in claims.items()
        ]
        commands.append({"type": command, "value": operations})
    return {"commands": commands} if commands else no_change()


@dataclass(frozen=True, slots=True)
class TokenStep(NoDenial):
    settings: TokenSettings

    def enrich(self, event: HookEvent, apply: Mapper) -> Document:
        return token_patch(event, apply(self.settings.id_token), apply(self.settings.access_token))


KIND = HookKind(
    name="token",
    event_type="com.okta.oauth2.tokens.transform",
    settings=TokenSettings,
    read_subject=read_subject,
    build=build_enriching,
    step=TokenStep,
)
