"""HTTP framing (issue 19, items 3 to 5): request smuggling through heads Sanic read leniently, the
``100 Continue`` sent before authentication, and ``content-type: None`` on empty answers.

Raw sockets against the real service process (what a proxy or an attacker sends, byte for byte), and
the pure head check (service/http_framing.py) on many examples. The generated heads are in
tests/test_generated_input.py ("HTTP framing")."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from connection_support import log_lines, metric_value
from framing_support import EVENT, HOOK, PROBE, SMUGGLED, Response, exchange, hook_request, read_response
from hypothesis import given, settings
from hypothesis import strategies as st
from in_process import InProcessService
from support.config import SECRET, service_config
from support.servers import RunningService

from service.demo.slapd import Slapd
from service.http_framing import _HEAD, HeadRefusal, _diagnose, check_request_head
from service.http_protocol import MAX_BODY_BYTES

REQUEST_LINE = f"POST {HOOK} HTTP/1.1".encode()
HOST = b"Host: 127.0.0.1"
JSON = b"Content-Type: application/json"
RIGHT = f"Authorization: {SECRET}".encode()
WRONG = b"Authorization: wrong-secret"


def length(body: bytes) -> bytes:
    return b"Content-Length: %d" % len(body)


def chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


@pytest.fixture(scope="module")
def service(slapd: Slapd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """One real process for the module: what reaches Sanic's parser is what this is about."""
    running = RunningService(service_config(slapd.url), tmp_path_factory.mktemp("framing"), {})
    yield running
    running.stop()


def malformed_refusals(service: RunningService) -> float:
    return metric_value(service.metrics(), "okta_hook_refusals_total", reason="malformed_http")


def hook_answers(service: RunningService) -> float:
    return metric_value(service.metrics(), "okta_hook_requests_total", hook_type="registration")


# -- 3. smuggling -----------------------------------------------------------------------------------------


def test_a_space_before_the_colon_smuggles_no_request(service: RunningService) -> None:
    """The attack of issue 19: Sanic ignored ``Content-Length : N`` and read the body as a second
    request; the outer call got 401, the smuggled one 200 with Alice's data."""
    refusals, answers = malformed_refusals(service), hook_answers(service)
    attack = hook_request([REQUEST_LINE, HOST, JSON, WRONG, b"Content-Length : %d" % len(SMUGGLED)], SMUGGLED)

    sent = exchange(service.hook_port, attack)

    assert sent.statuses == [400] and sent.closed, sent.raw
    assert sent.responses[0].body == b'{"message":"Bad Request"}'
    assert sent.responses[0].header("connection") == "close"
    assert b"employeeNumber" not in sent.raw
    assert malformed_refusals(service) == refusals + 1
    assert hook_answers(service) == answers  # no hook ran: neither the outer call nor the smuggled one
    lines = [line for line in log_lines(service.log()) if line.get("reason") == "malformed_http"]
    assert lines and lines[-1]["status"] == 400 and lines[-1]["route"] == "unmatched"


def _case(*fields: bytes, body: bytes = SMUGGLED, request_line: bytes = REQUEST_LINE) -> bytes:
    return hook_request([request_line, *fields], body)


#: Each refused shape, with a smuggled request where a lenient reader would look for the next one, and
#: the probe after it: a strict server answers 400 once and closes; a lenient one answers more.
MALFORMED = {
    "transfer-encoding before a space": _case(
        HOST, JSON, RIGHT, b"Transfer-Encoding : chunked", body=chunked(SMUGGLED)
    ),
    "obs-fold": _case(HOST, JSON, RIGHT, b"X-Folded: a", b" b: c", length(SMUGGLED)),
    "a folded length": _case(HOST, JSON, RIGHT, b"X-Folded: a", b" " + length(SMUGGLED)),
    "a space in a name": _case(HOST, JSON, RIGHT, b"X Forwarded: 1", length(SMUGGLED)),
    "a tab before the colon": _case(HOST, JSON, RIGHT, b"Content-Length\t: %d" % len(SMUGGLED)),
    "NUL in a name": _case(HOST, JSON, RIGHT, b"X-\x00: 1", length(SMUGGLED)),
    "0xFF in a name": _case(HOST, JSON, RIGHT, b"X-\xff: 1", length(SMUGGLED)),
    "empty name": _case(HOST, JSON, RIGHT, b": 1", length(SMUGGLED)),
    "no colon": _case(HOST, JSON, RIGHT, b"X-Nothing", length(SMUGGLED)),
    "bare CR in a value": _case(HOST, JSON, RIGHT, b"X-A: a\rb", length(SMUGGLED)),
    "bare LF before a length": _case(HOST, JSON, RIGHT, b"X-A: a\n" + length(SMUGGLED)),
    "NUL in a value": _case(HOST, JSON, RIGHT, b"X-A: a\x00b", length(SMUGGLED)),
    "HTTP/1.1 without Host": _case(JSON, RIGHT, length(SMUGGLED)),
    "two Hosts": _case(HOST, b"Host: evil.example", JSON, RIGHT, length(SMUGGLED)),
    "a Host with a space": _case(b"Host: a b", JSON, RIGHT, length(SMUGGLED)),
    "two equal lengths": _case(HOST, JSON, RIGHT, length(SMUGGLED), length(SMUGGLED)),
    "length and chunked": _case(HOST, JSON, RIGHT, length(SMUGGLED), b"Transfer-Encoding: chunked"),
    "a signed length": _case(HOST, JSON, RIGHT, b"Content-Length: +%d" % len(SMUGGLED)),
    "an Arabic-digit length": _case(HOST, JSON, RIGHT, "Content-Length: \u0665".encode()),
    "gzip, chunked": _case(HOST, JSON, RIGHT, b"Transfer-Encoding: gzip, chunked", body=chunked(SMUGGLED)),
    "chunked in HTTP/1.0": _case(
        HOST, JSON, RIGHT, b"Transfer-Encoding: chunked", body=chunked(SMUGGLED), request_line=b"POST / HTTP/1.0"
    ),
    "two spaces in the request line": _case(HOST, RIGHT, length(SMUGGLED), request_line=b"POST  " + HOOK.encode()),
}


@pytest.mark.parametrize("request_bytes", MALFORMED.values(), ids=MALFORMED.keys())
def test_every_ambiguous_head_is_one_400_and_a_closed_connection(service: RunningService, request_bytes: bytes) -> None:
    refusals = malformed_refusals(service)

    sent = exchange(service.hook_port, request_bytes + PROBE)

    assert sent.statuses == [400] and sent.closed, sent.raw
    assert sent.responses[0].header("connection") == "close"
    assert malformed_refusals(service) == refusals + 1


WELL_FORMED = {
    "Okta's shape": _case(HOST, JSON, RIGHT, length(EVENT), body=EVENT),
    "lower case, no OWS": _case(
        b"host:127.0.0.1", b"content-type:application/json", RIGHT, b"content-length:%d" % len(EVENT), body=EVENT
    ),
    "OWS around values": _case(b"Host: \t127.0.0.1 ", JSON, RIGHT, b"Content-Length:\t%d \t" % len(EVENT), body=EVENT),
    "obs-text in a value": _case(HOST, JSON, RIGHT, b"X-Note: caf\xc3\xa9 \xff", length(EVENT), body=EVENT),
    "chunked": _case(HOST, JSON, RIGHT, b"Transfer-Encoding: chunked", body=chunked(EVENT)),
    "a port and an empty field": _case(b"Host: 127.0.0.1:8080", b"X-Empty:", JSON, RIGHT, length(EVENT), body=EVENT),
    "an IPv6 Host": _case(b"Host: [::1]:8080", JSON, RIGHT, length(EVENT), body=EVENT),
}


@pytest.mark.parametrize("request_bytes", WELL_FORMED.values(), ids=WELL_FORMED.keys())
def test_well_formed_heads_are_still_answered(service: RunningService, request_bytes: bytes) -> None:
    """The other side of the check: what Okta, proxies and HTTP libraries send passes, and pipelined
    requests are each answered."""
    sent = exchange(service.hook_port, request_bytes + request_bytes + PROBE)

    assert sent.statuses == [200, 200, 404] and sent.closed, sent.raw
    assert b'"commands"' in sent.responses[0].body


def test_http10_without_host_is_answered_and_closed(service: RunningService) -> None:
    sent = exchange(
        service.hook_port,
        _case(JSON, RIGHT, length(EVENT), body=EVENT, request_line=b"POST " + HOOK.encode() + b" HTTP/1.0"),
    )

    assert sent.statuses == [200] and sent.closed


# -- the check itself --------------------------------------------------------------------------------------------


HEAD = b"POST /hooks/registration HTTP/1.1\r\nHost: okta.example\r\nContent-Type: application/json\r\nContent-Length: 5"


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (HEAD.replace(b"Content-Length:", b"Content-Length :"), HeadRefusal.SPACE_BEFORE_COLON),
        (HEAD.replace(b"Content-Length:", b"Content-Length\t:"), HeadRefusal.SPACE_BEFORE_COLON),
        (HEAD + b"\r\nTransfer-Encoding : chunked", HeadRefusal.SPACE_BEFORE_COLON),
        (HEAD + b"\r\n folded", HeadRefusal.OBS_FOLD),
        (HEAD + b"\r\n\tfolded", HeadRefusal.OBS_FOLD),
        (HEAD + b"\r\nX Y: 1", HeadRefusal.FIELD_NAME),
        (HEAD + b"\r\nX\x00: 1", HeadRefusal.FIELD_NAME),
        (HEAD + b"\r\nX\xff: 1", HeadRefusal.FIELD_NAME),
        (HEAD + b"\r\n: 1", HeadRefusal.FIELD_NAME),
        (HEAD + b"\r\nno colon", HeadRefusal.FIELD_NAME),
        (HEAD + b"\r\nX: a\rb", HeadRefusal.FIELD_VALUE),
        (HEAD + b"\r\nX: a\nb", HeadRefusal.FIELD_VALUE),
        (HEAD + b"\r\nX: a\x00", HeadRefusal.FIELD_VALUE),
        (HEAD + b"\r\nX: a\x7f", HeadRefusal.FIELD_VALUE),
        (HEAD + b"\r\nX: \x1b[31m", HeadRefusal.FIELD_VALUE),
        (HEAD.replace(b"Host: okta.example\r\n", b""), HeadRefusal.HOST),
        (HEAD + b"\r\nHost: other.example", HeadRefusal.HOST),
        (HEAD.replace(b"okta.example", b"okta example"), HeadRefusal.HOST),
        (HEAD.replace(b": 5", b": 5, 5"), HeadRefusal.CONTENT_LENGTH),
        (HEAD.replace(b": 5", b": -5"), HeadRefusal.CONTENT_LENGTH),
        (HEAD.replace(b": 5", b": "), HeadRefusal.CONTENT_LENGTH),
        (HEAD.replace(b": 5", ": \u0665".encode()), HeadRefusal.CONTENT_LENGTH),
        (HEAD + b"\r\nContent-Length: 5", HeadRefusal.FRAMING_REPEATED),
        (HEAD + b"\r\nTransfer-Encoding: chunked", HeadRefusal.FRAMING_REPEATED),
        (HEAD.replace(b"Content-Length: 5", b"Transfer-Encoding: gzip, chunked"), HeadRefusal.TRANSFER_ENCODING),
        (HEAD.replace(b"Content-Length: 5", b"Transfer-Encoding: chunked, chunked"), HeadRefusal.TRANSFER_ENCODING),
        (HEAD.replace(b"Content-Length: 5", b"Transfer-Encoding: Chunked"), HeadRefusal.TRANSFER_ENCODING),
        (
            HEAD.replace(b"Content-Length: 5", b"Transfer-Encoding: chunked").replace(b"1.1", b"1.0"),
            HeadRefusal.TRANSFER_ENCODING,
        ),
        (HEAD.replace(b"HTTP/1.1", b"HTTP/1.2"), HeadRefusal.REQUEST_LINE),
        (HEAD.replace(b"POST ", b"POST  "), HeadRefusal.REQUEST_LINE),
        (HEAD.replace(b"/hooks", b"/h\xc3\xa9"), HeadRefusal.REQUEST_LINE),
        (b"\r\n" + HEAD, HeadRefusal.REQUEST_LINE),
        (b"", HeadRefusal.REQUEST_LINE),
    ],
)
def test_check_request_head_refusals(head: bytes, reason: HeadRefusal) -> None:
    assert check_request_head(head) is reason
    assert check_request_head(bytearray(head + b"\r\n\r\nbody"), len(head)) is reason


@pytest.mark.parametrize(
    "head",
    [
        HEAD,
        HEAD.replace(b"Content-Length: 5", b"Transfer-Encoding: chunked"),
        HEAD.replace(b"Content-Length: 5\r\n", b"").replace(b"\r\nContent-Length: 5", b""),
        b"GET /livez HTTP/1.1\r\nHost:",
        b"GET /livez HTTP/1.0",
        b"GET /metrics HTTP/1.0\r\nhost: 10.0.0.5:9090\r\ncontent-length:0",
        HEAD + b"\r\nX-Note: caf\xc3\xa9\t\xff",
        HEAD.replace(b"okta.example", b"[2001:db8::1]:443"),
        b"POST http://okta.example/hooks/registration?x=1 HTTP/1.1\r\nHOST: okta.example\r\nCONTENT-LENGTH: 0",
    ],
)
def test_check_request_head_passes_what_clients_send(head: bytes) -> None:
    assert check_request_head(head) is None


_PIECES = [
    *[b"POST", b"GET", b" ", b"/", b"/hooks/registration", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2", b"\r\n", b"\r"],
    *[b"\n", b"\t", b":", b"Host", b"host", b"Content-Length", b"content-LENGTH", b"Transfer-Encoding", b"chunked"],
    *[b"Chunked", b"gzip", b",", b"5", b"12", b"+", b"x", b"X-A", b"\x00", b"\xff", b"\x7f", b"\x80", b"@", b"[::1]"],
]
_PREFIXES = [b"", b"POST / HTTP/1.1\r\n", b"POST / HTTP/1.0\r\n", b"POST / HTTP/1.1\r\nHost: a\r\n"]


@settings(max_examples=3000, derandomize=True, database=None, deadline=None)
@given(prefix=st.sampled_from(_PREFIXES), pieces=st.lists(st.sampled_from(_PIECES), max_size=30))
def test_the_expression_and_the_line_by_line_reading_agree(prefix: bytes, pieces: list[bytes]) -> None:
    """The fast path (one expression) and the diagnosis (the rules written line by line) are two
    descriptions of the same rules: on every head, either both find it well-formed or both refuse it."""
    head = prefix + b"".join(pieces)
    assert (_HEAD.fullmatch(head) is None) == (_diagnose(head) is not None), head


# -- 4. Expect: 100-continue ---------------------------------------------------------------------------------


def _expecting(secret_line: bytes, announced: int) -> bytes:
    return hook_request(
        [REQUEST_LINE, HOST, JSON, secret_line, b"Expect: 100-continue", b"Content-Length: %d" % announced]
    )


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(2)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_expect_100_continue_is_answered_after_authentication(service: RunningService) -> None:
    """Without the secret: a 401 at once, never ``100 Continue``, the body never read (nor waited for),
    the connection closed. With it: 100, then the body, then the answer."""
    for announced in (len(EVENT), MAX_BODY_BYTES):
        with socket.create_connection(("127.0.0.1", service.hook_port), timeout=5) as sock:
            sock.sendall(_expecting(WRONG, announced))
            answer, raw = read_response(sock, timeout=3)
            assert b"100 Continue" not in raw
            assert answer is not None and answer.status == 401 and answer.header("connection") == "close", raw
            assert _closed(sock)

    with socket.create_connection(("127.0.0.1", service.hook_port), timeout=5) as sock:
        sock.sendall(_expecting(RIGHT, len(EVENT)))
        invited, _ = read_response(sock)
        assert invited is not None and invited.status == 100
        sock.sendall(EVENT)
        answer, _ = read_response(sock)
        assert answer is not None and answer.status == 200 and b'"commands"' in answer.body


def test_expect_100_continue_for_a_body_too_large_is_a_413_without_the_100(service: RunningService) -> None:
    with socket.create_connection(("127.0.0.1", service.hook_port), timeout=5) as sock:
        sock.sendall(_expecting(RIGHT, MAX_BODY_BYTES + 1))
        answer, raw = read_response(sock, timeout=3)
        assert b"100 Continue" not in raw
        assert answer is not None and answer.status == 413, raw
        assert _closed(sock)


# -- 5. no Content-Type without a body --------------------------------------------------------------------------


def _assert_content_type_matches_body(status: int, response: Response) -> None:
    content_type = response.header("content-type")
    assert content_type != "None", (status, response)
    if response.body:
        assert content_type, (status, response)
    else:
        assert content_type is None, (status, response)


def _slow_sender(port: int, answers: dict[int, Response]) -> None:
    """Half a head, then nothing: 408 within REQUEST_RECEIVE_SECONDS plus Sanic's timer period."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(REQUEST_LINE + b"\r\n" + HOST + b"\r\n")
        answer, _ = read_response(sock, timeout=9)
        assert answer is not None
        answers[answer.status] = answer


def test_no_answer_without_a_body_carries_a_content_type(service: RunningService) -> None:
    """Every status the service answers (499 is never sent: the client has gone; a 500 takes a bug,
    and goes through the same error handler as the 4xx here)."""
    answers: dict[int, Response] = {}
    slow = threading.Thread(target=_slow_sender, args=(service.hook_port, answers))
    slow.start()
    hook_calls: dict[str, bytes] = {
        "200": _case(HOST, JSON, RIGHT, length(EVENT), body=EVENT),
        "400": _case(HOST, JSON, RIGHT, b"Content-Length: 5", body=b"{nope"),
        "400 head": _case(HOST, JSON, RIGHT, b"Content-Length : 5", body=b"{nope"),
        "401": _case(HOST, JSON, WRONG, length(EVENT), body=EVENT),
        "401 no body": _case(HOST, JSON, body=b""),
        "404": hook_request([b"POST /hooks/nothing HTTP/1.1", HOST, length(EVENT)], EVENT),
        "405": hook_request([b"GET " + HOOK.encode() + b" HTTP/1.1", HOST]),
        "413": _case(HOST, JSON, RIGHT, b"Content-Length: %d" % (MAX_BODY_BYTES + 1)),
        "417": _case(HOST, JSON, RIGHT, b"Expect: a-miracle", length(EVENT), body=EVENT),
    }
    for name, request_bytes in hook_calls.items():
        sent = exchange(service.hook_port, request_bytes + PROBE, timeout=5)
        assert sent.responses, (name, sent.raw)
        answer = sent.responses[0]
        assert str(answer.status) == name.split()[0], (name, sent.raw)
        _assert_content_type_matches_body(answer.status, answer)
        answers.setdefault(answer.status, answer)
    for path in ("/livez", "/readyz", "/metrics"):
        sent = exchange(service.ops_port, hook_request([f"GET {path} HTTP/1.1".encode(), HOST, b"Connection: close"]))
        assert sent.statuses == [200], (path, sent.raw)
        _assert_content_type_matches_body(200, sent.responses[0])
    slow.join(timeout=15)
    assert set(answers) == {200, 400, 401, 404, 405, 408, 413, 417}
    for status, answer in answers.items():
        _assert_content_type_matches_body(status, answer)
    assert answers[401].body == b""


def test_readyz_while_draining_is_a_503_with_its_body_and_type(in_process: InProcessService) -> None:
    """/readyz's 503 (from SIGTERM on) is the one status the hook port's process can only show while
    draining: the in-process service (real sockets) shows it without stopping a process."""
    in_process.begin_draining()
    sent = exchange(in_process.ops_port, hook_request([b"GET /readyz HTTP/1.1", HOST, b"Connection: close"]))

    assert sent.statuses == [503] and sent.responses[0].body == b"not ready"
    _assert_content_type_matches_body(503, sent.responses[0])
