"""Building the answers Okta applies: commands, JSON-patch operations and the error object.

Each builder takes values that are already mapped (attribute or claim name -> value) and returns the
JSON document for Okta. Only command names from Okta's contract are produced (§10 of the contract note
lists names that look plausible but do not exist).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.okta.events import HookEvent, RegistrationKind

Value = str | list[str]
Document = dict[str, Any]

#: Claims Okta refuses to let a token hook add or change; a patch touching one is dropped whole by Okta,
#: so configuration naming one is refused at startup instead. ``aud`` and ``sub`` may be changed in
#: access tokens only.
# fmt: off
RESERVED_CLAIMS: frozenset[str] = frozenset(
    {
        "acr", "active", "aid", "amr", "app_id", "app_type", "as_uri", "at_hash", "aud", "auth_time",
        "authorization_details", "c_hash", "cid", "client_id", "client_ip", "client_req_id", "client_type",
        "client_user_agent", "cnf", "device_compliance", "device_id", "device_known", "device_managed",
        "device_name", "device_trust", "did", "dst", "exp", "group", "groups", "hotk", "iat", "idp", "idp_iss",
        "iss", "jti", "mac_key", "may_act", "nonce", "oid", "okta_emailVerified", "okta_lastUpdated", "orig",
        "permissions", "purpose", "pwd_exp_days", "pwd_exp_time", "rid", "role", "rpt", "rsi", "scope", "scopes",
        "scp", "sid", "sub", "term", "token_type", "uid", "username", "ver",
    }
)
# fmt: on
ACCESS_TOKEN_MODIFIABLE: frozenset[str] = frozenset({"aud", "sub"})

SAML_NAME_FORMAT = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"

# Token events name their sections after the token: ``identity`` is the ID token, ``access`` the
# access token; the command names follow the same words.
_TOKEN_SECTIONS = (("identity", "com.okta.identity.patch"), ("access", "com.okta.access.patch"))


def no_change() -> Document:
    """Okta's "default action": registration allowed, token and assertion unchanged, import as planned."""
    return {}


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


def token_patch(event: HookEvent, id_token: Mapping[str, Value], access_token: Mapping[str, Value]) -> Document:
    """Patch the claims of the tokens Okta is minting in this flow. A command for a token that was not
    requested voids Okta's whole patch, so tokens absent from the event are never patched. ``replace`` is
    used for claims the token already has, ``add`` for new ones (Okta's documented distinction)."""
    commands = []
    for (section, command), claims in zip(_TOKEN_SECTIONS, (id_token, access_token), strict=True):
        present = event.token_claims(section)
        if present is None or not claims:
            continue
        operations = [
            {"op": "replace" if name in present else "add", "path": "/claims/" + pointer(name), "value": value}
            for name, value in claims.items()
        ]
        commands.append({"type": command, "value": operations})
    return {"commands": commands} if commands else no_change()


def saml_patch(event: HookEvent, attributes: Mapping[str, Value]) -> Document:
    """Add attribute statements to a SAML assertion, in the shape Okta documents. An attribute the
    assertion already carries is replaced whole, keeping its NameFormat (Okta's schema takes an object,
    not an array, as a patch value, so its ``attributeValues`` cannot be replaced alone)."""
    if not attributes:
        return no_change()
    present = event.assertion_claims()
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


def credential_verdict(verified: bool) -> Document:
    """The password import answer: Okta stores the password it was sent when ``VERIFIED``, and refuses
    the sign-in (asking again next time) when ``UNVERIFIED``. Always explicit, never an empty body."""
    value = "VERIFIED" if verified else "UNVERIFIED"
    return {"commands": [{"type": "com.okta.action.update", "value": {"credential": value}}]}


def with_debug_context(document: Document, context: Mapping[str, str | int]) -> Document:
    """Add Okta's free-form ``debugContext``, which Okta writes into the System Log event
    ``inline_hook.response.processed``: an Okta admin sees why a user was or was not enriched without
    access to our logs. It must hold diagnostics only, never user data."""
    return {**document, "debugContext": dict(context)}


def pointer(name: str) -> str:
    """Escape a claim or attribute name as one JSON-Pointer segment (RFC 6901): URI-named claims contain
    ``/``, which Okta requires as ``~1``."""
    return name.replace("~", "~0").replace("/", "~1")
