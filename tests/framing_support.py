"""Raw HTTP/1 exchanges for the framing tests (issue 19, items 3 to 5), and a generator of request heads
whose lines are bent the ways that let a request be smuggled past a proxy.

An exchange sends bytes as they are, then reads every response the server writes until it closes the
connection, so a test sees exactly how many requests the service read out of those bytes."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field

from hypothesis import strategies as st
from okta_spec import example
from support.config import SECRET

HOOK = "/hooks/registration"
EVENT = json.dumps(example("registration")).encode()


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key.lower() == name]
        assert len(values) <= 1, self.headers
        return values[0] if values else None


@dataclass
class Exchange:
    responses: list[Response] = field(default_factory=list)
    #: The server closed the connection (EOF or reset) before the read timed out.
    closed: bool = False
    raw: bytes = b""

    @property
    def statuses(self) -> list[int]:
        return [response.status for response in self.responses]


def parse_responses(data: bytes) -> list[Response]:
    """Every complete response in ``data``, in order (the service never answers chunked)."""
    responses = []
    while (end := data.find(b"\r\n\r\n")) != -1:
        status_line, *lines = data[:end].decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = [(name, value.strip()) for name, _, value in (line.partition(":") for line in lines)]
        length = 0 if status < 200 or status in (204, 304) else int(dict(headers).get("content-length", "0"))
        if len(data) < end + 4 + length:
            break
        responses.append(Response(status, headers, data[end + 4 : end + 4 + length]))
        data = data[end + 4 + length :]
    return responses


def exchange(port: int, data: bytes, timeout: float = 5.0) -> Exchange:
    """Send ``data`` at once, then read until the server closes the connection or ``timeout`` passes."""
    received = b""
    closed = False
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            received += chunk
    return Exchange(parse_responses(received), closed, received)


def read_response(sock: socket.socket, timeout: float = 5.0) -> tuple[Response | None, bytes]:
    """One response from ``sock`` (None if none came within ``timeout``), with every byte read."""
    received = b""
    deadline = time.monotonic() + timeout
    while not (responses := parse_responses(received)) and (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        received += chunk
    return (responses[0] if responses else None), received


def hook_request(head_lines: list[bytes], body: bytes = b"") -> bytes:
    return b"\r\n".join(head_lines) + b"\r\n\r\n" + body


#: A complete request the service would answer 200 with Alice's data, if it ever read it as a request.
SMUGGLED = hook_request(
    [
        f"POST {HOOK} HTTP/1.1".encode(),
        b"Host: 127.0.0.1",
        b"Content-Type: application/json",
        f"Authorization: {SECRET}".encode(),
        f"Content-Length: {len(EVENT)}".encode(),
    ],
    EVENT,
)
#: Sent last on a connection: answered 404 and the connection closed. Its answer shows that the
#: service read everything before it as the requests a strict reader sees.
PROBE = b"GET /probe HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


# -- generated heads ------------------------------------------------------------------------------------

_CTL = [bytes([c]) for c in [*range(0x00, 0x09), *range(0x0A, 0x20), 0x7F]]
_NOT_TCHAR = [b" ", b"\x00", b"\xff", b"\x80", b"@", b"(", b"/", b"=", b'"', b"\x7f"]
_TOKEN = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!#$%&'*+^`|~", min_size=1, max_size=12
).filter(lambda name: name.lower() not in ("host", "content-length", "transfer-encoding"))
# visible ASCII without ":" (so that a bent separator never leaves a colon to split at) and obs-text
_VALUE = st.binary(max_size=24).map(lambda raw: bytes(c for c in raw if (0x21 <= c <= 0x7E or c >= 0x80) and c != 0x3A))


@dataclass
class Head:
    """A request head as lines (without CRLFs), its body, and whether it was bent into a malformed one
    (by construction: the generator's own oracle, independent of the service's check)."""

    lines: list[bytes]
    body: bytes
    malformed: bool
    bends: list[str]

    def request(self) -> bytes:
        return hook_request(self.lines, self.body)


def _recase(draw: st.DrawFn, name: bytes) -> bytes:
    return bytes(c ^ 0x20 if chr(c).isalpha() and draw(st.booleans()) else c for c in name)


@st.composite
def heads(draw: st.DrawFn, payload: bytes = SMUGGLED) -> Head:
    """A hook request carrying ``payload`` as its body (Content-Length or chunked), with the right
    secret, then bent 0 to 3 times: whitespace or another byte before the colon, a control byte, obs-fold,
    a repeated or conflicting framing field, a bent framing value, a missing or repeated Host, an empty
    name. Harmless changes (case, OWS, more fields) are mixed in and keep it well-formed."""
    chunked = draw(st.booleans())
    framing_name = _recase(draw, b"Transfer-Encoding" if chunked else b"Content-Length")
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload) if chunked else payload
    framing = framing_name + b": " + (b"chunked" if chunked else str(len(payload)).encode())
    lines = [
        b"POST " + HOOK.encode() + b" HTTP/1.1",
        _recase(draw, b"Host") + b":" + draw(st.sampled_from([b"", b" ", b"\t"])) + b"127.0.0.1",
        b"Content-Type: application/json",
        b"Authorization: " + SECRET.encode(),
    ]
    for _ in range(draw(st.integers(0, 3))):
        lines.append(draw(_TOKEN).encode() + b":" + draw(st.sampled_from([b"", b" ", b"\t "])) + draw(_VALUE))
    lines.insert(draw(st.integers(1, len(lines))), framing)
    bends: list[str] = []
    for _ in range(draw(st.integers(0, 3))):
        bend = draw(st.sampled_from(_BENDS))
        at = draw(st.integers(1, len(lines) - 1))  # a field line
        _BEND[bend](draw, lines, at, chunked)
        bends.append(bend)
    return Head(lines, body, malformed=bool(bends), bends=bends)


def _space_before_colon(draw: st.DrawFn, lines: list[bytes], at: int, chunked: bool) -> None:
    name, _, value = lines[at].partition(b":")
    lines[at] = name + draw(st.sampled_from([b" ", b"\t", b"  "])) + b":" + value


def _separator(draw: st.DrawFn, lines: list[bytes], at: int, chunked: bool) -> None:
    name, _, value = lines[at].partition(b":")
    lines[at] = name + draw(st.sampled_from([b"=", b";", b" ", b""])) + b" " + value


def _control_byte(draw: st.DrawFn, lines: list[bytes], at: int, chunked: bool) -> None:
    line = lines[at]
    # never first or last in its line: CR and LF bent in on both sides of a CRLF could end the head early
    cut = draw(st.integers(1, max(1, len(line) - 1)))
    lines[at] = line[:cut] + draw(st.sampled_from(_CTL)) + line[cut:]


def _name_byte(draw: st.DrawFn, lines: list[bytes], at: int, chunked: bool) -> None:
    name, colon, value = lines[at].partition(b":")
    cut = draw(st.integers(1, max(1, len(name))))
    lines[at] = name[:cut] + draw(st.sampled_from(_NOT_TCHAR)) + name[cut:] + colon + value


def _obs_fold(draw: st.DrawFn, lines: list[bytes], at: int, chunked: bool) -> None:
    lines.insert(at + 1, draw(st.sampled_from([b" ", b"\t"])) + draw(st.sampled_from([b"x", b"0", b"chunked", b""])))


def _repeat_framing(draw: st.DrawFn, lines: list[bytes], at: int, chunked: bool) -> None:
    extra = draw(st.sampled_from([b"Content-Length: 0", b"Content-Length: 5", b"Transfer-Encoding: chunked"]))
    framing = [line for line in lines if line.lower().startswith((b"content-length:", b"transfer-encoding:"))]
    lines.insert(at, framing[0] if framing and draw(st.booleans()) else extra)


def _framing_value(draw: st.DrawFn, lines: list[bytes], at: int, chunked: bool) -> None:
    bad = [b"gzip, chunked", b"chunked, identity", b"identity", b"Chunked", b"chunked ", b"xchunked"]
    if not chunked:
        bad = [b"+5", b"5 5", b"0x5", b"5,5", b"-1", b"\xd9\xa5", b"", b"5;"]  # \xd9\xa5: an Arabic 5
    lines[:] = [line for line in lines if not line.lower().startswith((b"content-length:", b"transfer-encoding:"))]
    name = b"Transfer-Encoding" if chunked else b"Content-Length"
    lines.insert(min(at, len(lines)), name + b": " + draw(st.sampled_from(bad)))


def _host(draw: st.DrawFn, lines: list[bytes], at: int, chunked: bool) -> None:
    """No Host at all, or two or more: never exactly one again, whatever other bends do."""
    hosts = sum(line.lower().startswith(b"host:") for line in lines)
    if draw(st.booleans()):
        lines[:] = [line for line in lines if not line.lower().startswith(b"host:")]
        return
    for _ in range(2 - min(hosts, 1)):
        lines.insert(min(at, len(lines)), b"Host: " + draw(st.sampled_from([b"127.0.0.1", b"evil.example"])))


def _empty_name(draw: st.DrawFn, lines: list[bytes], at: int, chunked: bool) -> None:
    lines.insert(at, b":" + draw(_VALUE))


_BEND = {
    "space_before_colon": _space_before_colon,
    "separator": _separator,
    "control_byte": _control_byte,
    "name_byte": _name_byte,
    "obs_fold": _obs_fold,
    "repeat_framing": _repeat_framing,
    "framing_value": _framing_value,
    "host": _host,
    "empty_name": _empty_name,
}
_BENDS = list(_BEND)
