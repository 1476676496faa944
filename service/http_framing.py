"""The request head, checked as bytes before Sanic parses it (RFC 9112, with RFC 9110's field syntax).

Sanic's HTTP/1 parser is lenient where leniency lets a request be smuggled: it splits each header line
at its first colon and lower-cases the name without checking it, so ``Content-Length : 42`` (a space
before the colon) is a header named ``content-length `` that frames nothing, and the 42 body bytes are
then read as the next request on the connection. A proxy in front that reads the same bytes as one
request with a body forwards one request; the service answers two. Every shape on which two HTTP/1
parsers can disagree is refused here instead, before anything else reads the head; the server answers
400 and closes the connection, so nothing left in its buffer is ever read as a request.

What passes:

- the request line ``method SP request-target SP HTTP/1.1`` (or ``HTTP/1.0``): a token, visible ASCII;
- field lines ``name ":" OWS value OWS``: the name an RFC 9110 token with nothing between it and the
  colon (no obs-fold either: a line cannot start with SP or HTAB); the value visible ASCII, SP, HTAB or
  obs-text 0x80-0xFF (RFC 9110 §5.5 allows it; Sanic hands it on as surrogate escapes and the service
  compares header values as the bytes sent), so no NUL, bare CR, bare LF, DEL or other control;
- exactly one ``Host`` in HTTP/1.1, at most one in HTTP/1.0, its value a ``host[:port]`` or empty;
- at most one framing field: ``Content-Length`` of digits only, or, in HTTP/1.1 only, ``Transfer-Encoding``
  of exactly ``chunked``, the one coding Sanic reads (so a repeated one, both together, a list or
  another coding are refused).

All of it is one compiled expression, matched once over the head (about 450 bytes from Okta): each line
is a framing field, a ``Host`` or any other field, and the order of the alternatives allows each of the
first two at most once without any backtracking. A refused head is then read again line by line
(:func:`_diagnose`, the same rules written the plain way) to name the rule it breaks; tests check that
the two descriptions agree.
"""

from __future__ import annotations

import re
from enum import StrEnum


class HeadRefusal(StrEnum):
    """Why a request head is refused. The service counts every one as ``malformed_http`` (a fixed label
    vocabulary); the finer reason names the rule, for tests and for whoever reads this module."""

    REQUEST_LINE = "request_line"  # not ``method SP target SP HTTP/1.x``
    OBS_FOLD = "obs_fold"  # a line starting with SP or HTAB: a continuation (RFC 9112 §5.2)
    SPACE_BEFORE_COLON = "space_before_colon"  # ``Name : value`` (RFC 9112 §5.1)
    FIELD_NAME = "field_name"  # no colon, an empty name, or not a token (NUL, 0xFF, a space inside)
    FIELD_VALUE = "field_value"  # a control character other than HTAB: NUL, bare CR, bare LF, DEL...
    HOST = "host"  # HTTP/1.1 without Host, Host repeated, or not a host[:port] (RFC 9112 §3.2)
    CONTENT_LENGTH = "content_length"  # anything but digits (RFC 9110 §8.6)
    TRANSFER_ENCODING = "transfer_encoding"  # not ``chunked`` alone, or in HTTP/1.0 (RFC 9112 §6.1)
    FRAMING_REPEATED = "framing_repeated"  # two framing fields: repeated, or both kinds (RFC 9112 §6.3)


_TCHARS = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"  # RFC 9110 §5.6.2
_VALUE_CHARS = rb"\t\x20-\x7e\x80-\xff"  # field-vchar, SP and HTAB
_HOST_CHARS = rb"A-Za-z0-9\-._~!$&'()*+,;=%\[\]:"  # RFC 3986 reg-name, IP literals, ":" port
_FRAMING_NAMES = (b"content-length", b"transfer-encoding")


def _line(name: bytes, value: bytes) -> bytes:
    """A field line of the expression: CRLF, the name (any case), colon, value; never backtracked into."""
    return rb"(?>\r\n" + name + b":" + value + b")"


def _either(*alternatives: bytes) -> bytes:
    return b"(?:" + b"|".join(alternatives) + b")"


def _optional(pattern: bytes) -> bytes:
    return b"(?:" + pattern + b")?"


_TOKEN = b"[" + _TCHARS + b"]++"
_OTHER = _line(rb"(?!(?i:host|content-length|transfer-encoding):)" + _TOKEN, b"[" + _VALUE_CHARS + b"]*+")
_OTHERS = b"(?:" + _OTHER + b")*+"
_HOST = _line(b"(?i:host)", b"[ \t]*+[" + _HOST_CHARS + b"]*+[ \t]*+")
_LENGTH = _line(b"(?i:content-length)", rb"[ \t]*+[0-9]++[ \t]*+")
_CHUNKED = _line(b"(?i:transfer-encoding)", rb"[ \t]*+chunked")  # exactly what Sanic reads as chunked
_FRAMING = _either(_LENGTH, _CHUNKED)
#: Other fields around exactly one Host and at most one framing field, in either order.
_HTTP11_FIELDS = _OTHERS + _either(
    _HOST + _OTHERS + _optional(_FRAMING + _OTHERS),
    _FRAMING + _OTHERS + _HOST + _OTHERS,
)
#: Other fields around at most one Host and at most one Content-Length, in either order.
_HTTP10_FIELDS = _OTHERS + _optional(
    _either(
        _HOST + _OTHERS + _optional(_LENGTH + _OTHERS),
        _LENGTH + _OTHERS + _optional(_HOST + _OTHERS),
    )
)
_REQUEST_LINE = _TOKEN + b" [\x21-\x7e]++ HTTP/1\\."
#: The whole head (request line and field lines, without the empty line that ends it) when well-formed.
_HEAD = re.compile(_REQUEST_LINE + _either(b"1" + _HTTP11_FIELDS, b"0" + _HTTP10_FIELDS))

_REQUEST_LINE_RE = re.compile(_REQUEST_LINE + b"[01]")
_TOKEN_RE = re.compile(_TOKEN)
_VALUE_RE = re.compile(b"[" + _VALUE_CHARS + b"]*")
_HOST_RE = re.compile(b"[" + _HOST_CHARS + b"]*")


def check_request_head(head: bytes | bytearray, end: int | None = None) -> HeadRefusal | None:
    """None when ``head[:end]`` (the request line and the field lines, without the ``CRLF CRLF`` that
    ends them) is a well-formed HTTP/1 head with one reading of its framing, else why not. ``end``
    spares the caller a copy of its receive buffer."""
    if _HEAD.fullmatch(head, 0, len(head) if end is None else end) is not None:
        return None
    return _diagnose(bytes(head[:end])) or HeadRefusal.FIELD_VALUE  # they agree: see the module's tests


def _diagnose(head: bytes) -> HeadRefusal | None:
    """The first rule ``head`` breaks, read line by line: the slow path, for a head already refused."""
    request_line, *lines = head.split(b"\r\n")
    if _REQUEST_LINE_RE.fullmatch(request_line) is None:
        return HeadRefusal.REQUEST_LINE
    fields: list[tuple[bytes, bytes]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            return HeadRefusal.OBS_FOLD
        name, colon, value = line.partition(b":")
        if not colon:
            return HeadRefusal.FIELD_NAME
        if name[-1:] in (b" ", b"\t"):
            return HeadRefusal.SPACE_BEFORE_COLON
        if _TOKEN_RE.fullmatch(name) is None:
            return HeadRefusal.FIELD_NAME
        if _VALUE_RE.fullmatch(value) is None:
            return HeadRefusal.FIELD_VALUE
        fields.append((name.lower(), value.lstrip(b" \t")))
    return _framing_refusal(fields, http11=request_line.endswith(b"1"))


def _framing_refusal(fields: list[tuple[bytes, bytes]], http11: bool) -> HeadRefusal | None:
    """Host and framing rules over well-formed ``(lower-case name, value without leading OWS)`` fields.
    Trailing OWS is part of every value but ``Transfer-Encoding``'s, which Sanic compares as it is."""
    hosts = [value.rstrip(b" \t") for name, value in fields if name == b"host"]
    if len(hosts) > 1 or (http11 and not hosts) or any(_HOST_RE.fullmatch(host) is None for host in hosts):
        return HeadRefusal.HOST
    framing = [(name, value) for name, value in fields if name in _FRAMING_NAMES]
    for name, value in framing:
        if name == b"content-length" and not value.rstrip(b" \t").isdigit():  # bytes.isdigit: ASCII digits only
            return HeadRefusal.CONTENT_LENGTH
        if name == b"transfer-encoding" and (value != b"chunked" or not http11):
            return HeadRefusal.TRANSFER_ENCODING
    return HeadRefusal.FRAMING_REPEATED if len(framing) > 1 else None
