"""What every hook type's answer is built from: no change, debugContext, the
JSON-pointer escaping of patch paths, and the claims Okta reserves.

Each hook type builds its own commands in its module (``service/hooks/<type>.py``), from values that
are already mapped. Only command names from Okta's contract are produced (§10 of the contract note
lists names that look plausible but do not exist).
"""

from __future__ import annotations

from collections.abc import Mapping

from service.okta.events import JsonObject

Value = str | list[str]
#: An answer to Okta (or part of one): a JSON object.
Document = JsonObject

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

def no_change() -> Document:
    """Okta's "default action": registration allowed, token and assertion unchanged, import as planned."""
    return {}


def with_debug_context(document: Document, context: Mapping[str, str | int]) -> Document:
    """Add Okta's free-form ``debugContext``, which Okta writes into the System Log event
    ``inline_hook.response.processed``: an Okta admin sees why a user was or was not enriched without
    access to our logs. It must hold diagnostics only, never user data."""
    return {**document, "debugContext": dict(context)}


def pointer(name: str) -> str:
    """Escape a claim or attribute name as one JSON-Pointer segment (RFC 6901): URI-named claims contain
    ``/``, which Okta requires as ``~1``."""
    return name.replace("~", "~0").replace("/", "~1")
