"""Okta's side of the conversation: the inline-hook events we accept and the commands we answer.

Everything Okta-specific lives here and nowhere else, so a change in Okta's contract is a change in
this package alone. Standard library only: the contract is tested without any server.
"""

from service.okta.commands import (
    RESERVED_CLAIMS,
    credential_verdict,
    denial,
    import_update,
    no_change,
    registration_update,
    saml_patch,
    token_patch,
    with_debug_context,
)
from service.okta.events import (
    EventError,
    EventReason,
    HookEvent,
    HookType,
    RegistrationKind,
    Subject,
    parse_event,
    read_json,
)
from service.okta.identifiers import IdentifierRefusal, identifier_refusal

__all__ = [
    "RESERVED_CLAIMS",
    "EventError",
    "EventReason",
    "HookEvent",
    "HookType",
    "IdentifierRefusal",
    "RegistrationKind",
    "Subject",
    "credential_verdict",
    "denial",
    "identifier_refusal",
    "import_update",
    "no_change",
    "parse_event",
    "read_json",
    "registration_update",
    "saml_patch",
    "token_patch",
    "with_debug_context",
]
