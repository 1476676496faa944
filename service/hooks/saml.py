"""SAML assertion inline hook (``com.okta.saml.tokens.transform``): attribute statements added to the
assertion Okta is issuing. No deny answer: a failure leaves the assertion as it is."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import Field

from service.hooks.base import HookKind, Mapper, NoDenial, build_enriching
from service.hooks.config import AttributeMap, EnrichingSettings
from service.okta import Document, HookEvent, JsonObject, Subject, member, no_change, pointer, text
from service.okta.commands import Value

SAML_NAME_FORMAT = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"


class SamlSettings(EnrichingSettings):
    #: SAML attribute statements added to (or replaced in) the assertion.
    attributes: AttributeMap = Field(default_factory=dict)

    def rule_sets(self) -> dict[str, AttributeMap]:
        return {"attributes": self.attributes}


def read_subject(document: JsonObject, data: JsonObject) -> Subject:
    """The context's user, else the assertion's NameID as the login."""
    user_profile = member(member(member(data, "context"), "user"), "profile")
    name_id = text(member(member(data, "assertion"), "subject"), "nameId")
    return Subject(text(user_profile, "login") or name_id, text(user_profile, "email"))


def assertion_claims(event: HookEvent) -> JsonObject:
    """Attribute statements already in the assertion."""
    claims = member(member(event.data, "assertion"), "claims")
    return claims


def saml_patch(event: HookEvent, attributes: Mapping[str, Value]) -> Document:
    """Add attribute statements to a SAML assertion, in the shape Okta documents. An attribute the
    assertion already carries is replaced whole, keeping its NameFormat (Okta's schema takes an object,
    not an array, as a patch value, so its ``attributeValues`` cannot be replaced alone)."""
    if not attributes:
        return no_change()
    present = assertion_claims(event)
    operations = []
    for name, value in attributes.items():
        values = [
            {"attributes": {"xsi:type": "xs:string"}, "value": item}
            for item in (value if isinstance(value, list) else [value])
        ]
        existing = present.get(name)
        name_format = {"NameFormat": SAML_NAME_FORMAT}
        if isinstance(existing, dict) and isinstance(existing.get("attributes"), dict):
            name_format = existing["attributes"]
        statement = {"attributes": name_format, "attributeValues": values}
        op = "replace" if name in present else "add"
        operations.append({"op": op, "path": "/claims/" + pointer(name), "value": statement})
    return {"commands": [{"type": "com.okta.assertion.patch", "value": operations}]}


@dataclass(frozen=True, slots=True)
class SamlStep(NoDenial):
    settings: SamlSettings

    def enrich(self, event: HookEvent, apply: Mapper) -> Document:
        return saml_patch(event, apply(self.settings.attributes))


KIND = HookKind(
    name="saml",
    event_type="com.okta.saml.tokens.transform",
    settings=SamlSettings,
    read_subject=read_subject,
    build=build_enriching,
    step=SamlStep,
)
