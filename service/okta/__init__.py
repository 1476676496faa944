"""Okta's side of the conversation that every hook type shares: the event envelope (strict JSON, the
event id, who the event is about), the identifier checks, and the pieces of every answer (no change,
debugContext, JSON-pointer escaping, reserved claims).

What is particular to one hook type (its event type, where it names the person, its commands) lives in
that type's module, ``service/hooks/<type>.py``. Standard library only: the contract is tested without
any server.
"""

from service.okta.commands import (
    ACCESS_TOKEN_MODIFIABLE,
    RESERVED_CLAIMS,
    Document,
    Value,
    no_change,
    pointer,
    with_debug_context,
)
from service.okta.events import (
    EventError,
    EventReason,
    EventShape,
    HookEvent,
    JsonObject,
    JsonValue,
    Subject,
    SubjectReader,
    member,
    parse_event,
    read_json,
    text,
)
from service.okta.identifiers import UnsafeIdentifier, unsafe_identifier

__all__ = [
    "ACCESS_TOKEN_MODIFIABLE",
    "RESERVED_CLAIMS",
    "Document",
    "EventError",
    "EventReason",
    "EventShape",
    "HookEvent",
    "JsonObject",
    "JsonValue",
    "Subject",
    "SubjectReader",
    "UnsafeIdentifier",
    "Value",
    "member",
    "no_change",
    "parse_event",
    "pointer",
    "read_json",
    "text",
    "unsafe_identifier",
    "with_debug_context",
]
