"""Parsing and validating the JSON events Okta POSTs to an inline hook.

Okta's examples are not strictly typed (``eventTypeVersion`` is sometimes a number), so parsing is
lenient about what we do not use and strict about what we do: the event type, the ``data`` object and
the user the event is about.

What differs between hook types (the event type, where the person is named) is each hook type's own
(``service/hooks/<type>.py``), handed to :func:`parse_event` as an :class:`EventShape`; this module
holds the envelope every type shares.
"""

from __future__ import annotations

import json
import math
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NoReturn, Protocol

#: A JSON value as the strict decoder gives it (objects are dicts, arrays lists), and a JSON object:
#: the shape of an event, of its ``data`` and of every object inside them.
JsonValue = Any
JsonObject = dict[str, JsonValue]

#: Okta's event ids are short URL-safe strings (``3o9jBzq1SmOGmmsDsqyyeQ``, ``04Dmt8BcT_aEgM`` in its
#: spec). Anything else is not logged: a 200 KB "id" must not become a 200 KB log line.
_EVENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

#: Okta's events nest about eight levels deep; far more is an attack on the parser, not an event.
MAX_DEPTH = 32

#: Numbers in Okta's events are timestamps and versions; more digits than this in a row are not an event.
MAX_NUMBER_DIGITS = 32

_SURROGATE = re.compile("[\\ud800-\\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONG_NUMBER = re.compile(rf"[0-9]{{{MAX_NUMBER_DIGITS + 1},}}")


class EventReason(StrEnum):
    """Why a body is refused with a 400: a fixed vocabulary for the log line and the answer."""

    NOT_UTF8 = "not_utf8"  # not UTF-8, including UTF-16/32 that json.loads would otherwise guess
    INVALID_JSON = "invalid_json"  # including a UTF-8 byte-order mark, which RFC 8259 forbids
    TOO_DEEP = "too_deep"
    NUMBER_TOO_LARGE = "number_too_large"
    NON_FINITE_NUMBER = "non_finite_number"  # NaN, Infinity, or a float literal beyond 1.8e308
    DUPLICATE_KEY = "duplicate_key"
    LONE_SURROGATE = "lone_surrogate"  # a \ud800-style escape that is not half of a pair
    NOT_AN_OBJECT = "not_an_object"
    WRONG_EVENT_TYPE = "wrong_event_type"
    NO_DATA = "no_data"
    UNKNOWN_REQUEST_TYPE = "unknown_request_type"
    NO_SUBJECT = "no_subject"


class EventError(ValueError):
    """The request is not an Okta event this endpoint accepts. The message is safe to return to the caller:
    it never quotes the request; ``reason`` says why in a fixed vocabulary."""

    def __init__(self, reason: EventReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


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

    #: Okta's id for this call; empty when the event has none or one that is not a short URL-safe string.
    event_id: str
    subject: Subject
    #: The event's ``data``; not in the repr, which would show a password import's cleartext password.
    data: JsonObject = field(repr=False)
    #: The event's top-level ``requestType`` (registration: self-service or progressive profile).
    request_type: str | None = None
    #: The event carried an ``eventId`` that was not logged because it does not look like Okta's.
    event_id_rejected: bool = False
    #: The body as received: what tells Okta's retry (the same bytes again) from another event that
    #: reuses an ``eventId``. Not in the repr (a password import's password is in it), nor compared.
    raw: bytes = field(default=b"", repr=False, compare=False)


#: Where one hook type's events name the person: ``(event, event's data) -> Subject``.
SubjectReader = Callable[[JsonObject, JsonObject], "Subject"]


class EventShape(Protocol):
    """What one hook type says about its events: Okta's ``eventType`` for it, and where it names the
    person. Each hook type's module gives one (``service/hooks/<type>.py``)."""

    @property
    def event_type(self) -> str: ...

    def subject(self, document: JsonObject, data: JsonObject) -> Subject:
        """Who the event is about (either may be None), from the whole event and its ``data``; raises
        :class:`EventError` when the event is of this type but not one it can answer."""
        ...


def parse_event(body: bytes, expected: EventShape) -> HookEvent:
    """Parse ``body`` as an Okta event of the hook type ``expected`` or raise :class:`EventError`."""
    document = read_json(body)
    if not isinstance(document, dict):
        raise EventError(EventReason.NOT_AN_OBJECT, "body is not a JSON object")
    event_type = document.get("eventType")
    if event_type != expected.event_type:
        raise EventError(EventReason.WRONG_EVENT_TYPE, f"eventType must be {expected.event_type}")
    data = document.get("data")
    if not isinstance(data, dict):
        raise EventError(EventReason.NO_DATA, "data must be an object")
    raw_id = document.get("eventId")
    valid_id = isinstance(raw_id, str) and _EVENT_ID.fullmatch(raw_id) is not None
    event_id = raw_id if valid_id and isinstance(raw_id, str) else ""
    subject = expected.subject(document, data)
    if not (subject.login or subject.email):
        raise EventError(EventReason.NO_SUBJECT, "event names no user (login or email)")
    request_type = document.get("requestType")
    return HookEvent(
        event_id,
        subject,
        data,
        request_type if isinstance(request_type, str) else None,
        event_id_rejected=raw_id is not None and not valid_id,
        raw=body,
    )


def read_json(body: bytes) -> JsonValue:
    """Decode ``body`` as strict JSON: UTF-8 only, no NaN or Infinity, no duplicate keys (two parsers
    could each read a different ``login``), bounded numbers and depth, no lone surrogates. The bearer
    token's header and claims are read with it too (:mod:`service.oauth.tokens`). Every way the
    standard decoder can fail (``RecursionError`` on deep nesting, ``ValueError`` on a 5000-digit
    integer) ends as an :class:`EventError`, never as a 500.

    Every check rides on the decoder or on the decoded document, never on a second pass over the text:
    numbers are checked as the decoder meets them, depth by walking the containers (only when the body
    has enough brackets to be too deep), surrogates only when the text holds a surrogate escape. This is
    the hot path of every hook call (an earlier version emptied every string of the text with a regular
    expression first: more than twice the cost of decoding)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise EventError(EventReason.NOT_UTF8, "body is not valid JSON") from None  # JSON is UTF-8
    _numbers.too_long = False
    try:
        document = _DECODER.decode(text)
    except EventError:
        raise
    except RecursionError:
        raise EventError(EventReason.TOO_DEEP, "body is nested too deeply") from None
    except json.JSONDecodeError:
        raise EventError(EventReason.INVALID_JSON, "body is not valid JSON") from None
    except ValueError:  # int() refuses more digits than sys.get_int_max_str_digits() (CVE-2020-10735)
        raise EventError(EventReason.NUMBER_TOO_LARGE, "body has a number too large for an Okta event") from None
    if _numbers.too_long:
        raise EventError(EventReason.NUMBER_TOO_LARGE, "body has a number too large for an Okta event")
    # depth <= the number of opening brackets (those inside strings only add): most events have fewer
    if text.count("{") + text.count("[") > MAX_DEPTH and _deeper_than(document, MAX_DEPTH):
        raise EventError(EventReason.TOO_DEEP, "body is nested too deeply")
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(document):
        raise EventError(EventReason.LONE_SURROGATE, "body has a string that is not valid Unicode")
    return document


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> JsonObject:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise EventError(EventReason.DUPLICATE_KEY, "body has an object with a duplicate key")
    return document


class _NumberCheck(threading.local):
    """The decoder's number parsers: a run of more than ``MAX_NUMBER_DIGITS`` digits (integer, fraction
    or exponent) is remembered and refused once the document has decoded, so that a body with several
    faults is refused for the same one as ever (syntax first); a non-finite float is refused at once,
    as is an integer longer than :func:`int` accepts (its ``ValueError``). What it remembers is per
    thread and reset before each document: one decoder serves every call (building a decoder and its
    C scanner per call cost a tenth of parsing an event)."""

    too_long = False

    def integer(self, literal: str) -> int:
        if len(literal) > MAX_NUMBER_DIGITS and _LONG_NUMBER.search(literal):
            limit = sys.get_int_max_str_digits()
            if limit and len(literal.lstrip("-")) > limit:
                raise ValueError("more digits than int() accepts")
            self.too_long = True
            return 0
        return int(literal)

    def real(self, literal: str) -> float:
        if len(literal) > MAX_NUMBER_DIGITS and _LONG_NUMBER.search(literal):
            self.too_long = True
        value = float(literal)
        if not math.isfinite(value):  # 1e999
            raise EventError(EventReason.NON_FINITE_NUMBER, "body has a number out of range")
        return value


def _no_constant(literal: str) -> NoReturn:
    raise EventError(EventReason.NON_FINITE_NUMBER, "NaN and Infinity are not JSON")


_numbers = _NumberCheck()
#: ``json.loads`` with these hooks, built once. ``decode`` of a ``str`` is what ``json.loads`` does
#: with one, but for a leading byte-order mark, which fails here as invalid JSON all the same.
_DECODER = json.JSONDecoder(
    object_pairs_hook=_object_without_duplicates,
    parse_int=_numbers.integer,
    parse_float=_numbers.real,
    parse_constant=_no_constant,
)


def _deeper_than(document: Any, limit: int) -> bool:
    """Whether the containers of ``document`` nest deeper than ``limit`` (``[]`` is 1 deep): level by
    level, without recursion, visiting containers only."""
    level = [document] if isinstance(document, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[Any] = []
        for container in level:
            for value in container.values() if isinstance(container, dict) else container:
                if isinstance(value, dict | list):
                    below.append(value)
        level = below
    return False


def _has_lone_surrogate(document: Any) -> bool:
    """Any key or string holding half of a surrogate pair (only ``\\uD800``-style escapes make one: the
    text itself was strict UTF-8). Walked without recursion, so the walk cannot overflow."""
    pending: list[Any] = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return True
        elif isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


def member(parent: JsonObject, key: str) -> JsonObject:
    """``parent[key]`` when it is an object, else an empty one: Okta's events omit what does not apply."""
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def text(parent: JsonObject, key: str) -> str | None:
    """``parent[key]`` when it is a non-empty string, else None."""
    value = parent.get(key)
    return value if isinstance(value, str) and value else None
