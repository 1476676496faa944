"""HTTP/1.1 as the hook port speaks it: bounded in time and size, refusals with fixed bodies and reasons.

Sanic's own protocol, request and error handler, each narrowed for a service Okta calls: a whole
request must arrive within 3 s of its first byte (the deadline counts from that byte), error answers
never echo the URL or an exception's message, and every refusal carries a reason from a fixed
vocabulary for the ``okta_hook_refusals_total`` label and the log line. The per-request facts the
server and telemetry share travel in one typed :class:`RequestContext`.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from http import HTTPStatus
from types import SimpleNamespace
from typing import Any

from sanic import HTTPResponse, Request, json
from sanic.exceptions import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestCancelled,
    RequestTimeout,
    SanicException,
)
from sanic.handlers import ErrorHandler
from sanic.http import Http
from sanic.http.constants import Stage
from sanic.models.protocol_types import TransportProtocol
from sanic.server.protocols.http_protocol import HttpProtocol

from service.hooks.result import HookResult
from service.http_framing import check_request_head
from service.policy import Outcome
from service.telemetry.logs import log_exception
from service.telemetry.requests import RequestObservation


class RequestContext(SimpleNamespace):
    """What one request gathers on its way, for its answer's observation (``request.ctx``)."""

    #: The request's span, timer and route, from when the handler (or the refusal) started observing it.
    observation: RequestObservation | None
    #: The hook's answer, when the hook ran.
    result: HookResult | None
    #: The outcome when the hook did not run (a refusal), decided where the refusal was answered.
    outcome: Outcome | None
    #: Why the request was refused, from a fixed vocabulary.
    refusal_reason: str | None
    #: Recorded already (the client left while the answer was on its way).
    observed: bool

    def __init__(self) -> None:
        super().__init__(observation=None, result=None, outcome=None, refusal_reason=None, observed=False)


#: Okta's events are a few KB; its responses are capped at 256 KB, its requests are no bigger.
MAX_BODY_BYTES = 256 * 1024

#: A whole request (headers and body) must arrive within this many seconds of its first byte. Okta
#: writes a request at once and gives up after 3 s, so a request still arriving after 3 s can no longer
#: be answered in time: it is a slow sender holding a connection. Checked every 1.5 s (Sanic's timer,
#: half the shortest timeout), so such a connection is closed 3 to 4.5 s after its first byte.
REQUEST_RECEIVE_SECONDS = 3.0

#: An idle keep-alive connection is closed after this. Okta opens connections as it needs them; a
#: fronting proxy that pools upstream connections must drop idle ones sooner than this (ingress-nginx
#: ``upstream-keepalive-timeout``, Envoy ``common_http_protocol_options.idle_timeout``: e.g. 5 s), or it
#: may send a request on a connection the service is closing (a 502 for that one call).
KEEP_ALIVE_SECONDS = 10.0

#: Connections the kernel may hold before the service accepts them. Sanic's default (100) is less than
#: a burst of new connections from Okta or a proxy; beyond it the kernel drops the handshake's last step
#: and the client's first request waits for a SYN-ACK retransmission (1 s, then 3 s...), a delay the
#: service cannot see or shed. Linux caps it at net.core.somaxconn (4096 by default).
LISTEN_BACKLOG = 1024

SANIC_CONFIG = {
    "REQUEST_MAX_SIZE": MAX_BODY_BYTES,
    # Sanic's REQUEST_TIMEOUT restarts at every byte received (HttpProtocol.data_received sets _time):
    # it bounds the gap between bytes only. BoundedHttpProtocol bounds the whole request.
    "REQUEST_TIMEOUT": REQUEST_RECEIVE_SECONDS,
    "REQUEST_RECEIVE_TIMEOUT": REQUEST_RECEIVE_SECONDS,
    "RESPONSE_TIMEOUT": 3,  # a backstop only: every hook answers within its own deadline first
    "KEEP_ALIVE_TIMEOUT": KEEP_ALIVE_SECONDS,
    "GRACEFUL_SHUTDOWN_TIMEOUT": 10,  # drain in-flight hooks on SIGTERM
    "ACCESS_LOG": False,  # one summary log line per hook request instead
    "FALLBACK_ERROR_FORMAT": "json",
    "MOTD": False,
}


#: Reason of each refusal Sanic makes before or around the handler: a fixed vocabulary for the log line
#: and the ``okta_hook_refusals_total{reason}`` label. The handler's own refusals (401, 400 for an
#: event that is not Okta's) set the :class:`RequestContext` themselves.
REFUSAL_REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (NotFound, "not_found"),
    (MethodNotAllowed, "method_not_allowed"),
    (PayloadTooLarge, "too_large"),
    (RequestTimeout, "request_timeout"),
    (BadRequest, "malformed_http"),
)
#: What a status gets when nothing more precise was said.
STATUS_REASONS = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
CLIENT_CLOSED = 499  # nginx's convention: the client went away before the answer

#: Offset of ``tcpi_last_data_recv`` (u32, milliseconds) in Linux's ``struct tcp_info``: eight u8
#: fields, then ``tcpi_rto`` ... ``tcpi_last_ack_sent`` (11 u32) before it.
_TCPI_LAST_DATA_RECV = 52


def _kernel_wait(sock: Any) -> float:
    """Seconds the bytes just read had waited in the kernel (Linux ``TCP_INFO.tcpi_last_data_recv``).

    A request's bytes wait there while the process is not reading: the event loop is busy with other
    requests, or the process is not scheduled at all (CPU-throttled at its Kubernetes limit, a saturated
    node), or the connection is still in the accept queue. Okta's clock runs meanwhile. 0 where the
    kernel does not say (another OS, a test transport). ``sock`` is the connection's socket, as its
    transport's ``get_extra_info("socket")`` gave it (None when there is none)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        (milliseconds,) = struct.unpack_from("I", info, _TCPI_LAST_DATA_RECV)
    except (AttributeError, OSError, struct.error):
        return 0.0
    return float(milliseconds) / 1000


class TimedRequest(Request):
    """A request that knows when its first byte arrived (see :class:`BoundedHttpProtocol`): the start
    of the hook's deadline, so time spent queued behind other requests counts."""

    __slots__ = ("received_at",)

    def __init__(
        self,
        url_bytes: bytes,
        headers: Any,
        version: str,
        method: str,
        transport: TransportProtocol,
        app: Any,
        head: bytes = b"",
        stream_id: int = 0,
    ) -> None:
        protocol = transport.get_protocol() if hasattr(transport, "get_protocol") else None
        began = getattr(protocol, "receiving_since", None)
        self.received_at: float = began if began is not None else time.monotonic()
        super().__init__(url_bytes, headers, version, method, transport, app, head, stream_id)

    @staticmethod
    def make_context() -> RequestContext:
        return RequestContext()


def context_of(request: Request) -> RequestContext:
    """The request's :class:`RequestContext` (both apps make every request a :class:`TimedRequest`)."""
    context = request.ctx
    assert isinstance(context, RequestContext)
    return context


class StrictHttp(Http):
    """Sanic's HTTP/1 exchange, with each request head checked by :func:`check_request_head` before
    Sanic parses it. A head that two HTTP parsers could read differently (``Content-Length : 5``,
    obs-fold, a control byte, two framing fields...) is answered 400 (``malformed_http``) and the
    connection is closed, so the bytes after it are never read as another request."""

    __slots__ = ()

    async def http1_request_header(self) -> None:
        buffer = self.recv_buffer
        start = 0
        while (end := buffer.find(b"\r\n\r\n", start)) == -1:  # as Sanic waits for the whole head
            start = max(0, len(buffer) - 3)
            if start >= self.HEADER_MAX_SIZE:
                break
            await self._receive_more()
        if 0 <= end < self.HEADER_MAX_SIZE and check_request_head(buffer, end) is not None:
            raise BadRequest("Bad Request")  # in the REQUEST stage: answered, then the connection closed
        await super().http1_request_header()  # type: ignore[no-untyped-call]  # (a head too large: 413)


class BoundedHttpProtocol(HttpProtocol):
    """Sanic's HTTP/1.1 protocol with a bound on the time to receive a whole request.

    Sanic measures its timeouts from the last byte received, so a client sending one header line every
    two seconds holds a connection for ever. This protocol also notes when the first byte of each
    request arrived (when the process read it, less the time it had waited in the kernel) and closes
    the connection (408) when headers and body are not all in within ``REQUEST_RECEIVE_TIMEOUT`` of it."""

    __slots__ = ("_socket", "receiving_since")
    HTTP_CLASS = StrictHttp

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.receiving_since: float | None = None
        self._socket: Any = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[no-untyped-call]
        # once per connection: the event loop builds a new socket object on every get_extra_info call
        self._socket = transport.get_extra_info("socket")

    def _receiving(self) -> bool:
        http = self.http
        if http is None:
            return False
        return http.stage is Stage.REQUEST or (http.stage is Stage.HANDLER and bool(http.request_body))

    def data_received(self, data: bytes) -> None:
        if not self._receiving():  # the first byte of a request
            self.receiving_since = time.monotonic() - _kernel_wait(self._socket)
        super().data_received(data)

    def check_timeouts(self) -> None:
        began = self.receiving_since
        if (
            self._task is not None
            and began is not None
            and self._receiving()
            and time.monotonic() - began > self.app.config.REQUEST_RECEIVE_TIMEOUT
        ):
            self._http.exception = RequestTimeout("Request Timeout")  # answered 408, then closed
            self._http.request_body = None  # or Sanic would read the rest of the body before closing
            self._task.cancel()
            return
        super().check_timeouts()  # type: ignore[no-untyped-call]


class RefusalHandler(ErrorHandler):
    """Refusals and unexpected errors: a fixed body (never the URL or an exception's message), a reason
    for telemetry, and for a real error a log line with the traceback but no user data."""

    def default(self, request: Request, exception: BaseException) -> HTTPResponse:
        context = context_of(request)
        if isinstance(exception, RequestCancelled) or client_gone(request):
            # what Okta (or whoever it was) received: nothing
            context.outcome, context.refusal_reason = Outcome.CLIENT_CLOSED, "client_closed"
            return Bodiless(CLIENT_CLOSED)
        if isinstance(exception, SanicException) and exception.status_code < 500:
            status = exception.status_code
            reason = next((name for kind, name in REFUSAL_REASONS if isinstance(exception, kind)), None)
            context.outcome = Outcome.UNAUTHORIZED if status == 401 else Outcome.BAD_REQUEST
            context.refusal_reason = reason or STATUS_REASONS.get(status, "refused")
            return json({"message": _phrase(status)}, status=status, headers=exception.headers or None)
        status = exception.status_code if isinstance(exception, SanicException) else 500
        context.outcome, context.refusal_reason = Outcome.SERVER_ERROR, None
        log_exception("unexpected_error", exception, route=request.uri_template or "unmatched")
        return json({"message": _phrase(status)}, status=status)

    @staticmethod
    def log(request: Request, exception: Exception) -> None:
        """Sanic's own log line holds the URL and the exception's message: :meth:`default` logs instead."""


class Bodiless(HTTPResponse):
    """An answer without a body, and so without a ``Content-Type``: Sanic's ``empty()`` leaves the
    content type None, which its header formatting writes out as ``content-type: None``."""

    __slots__ = ()

    def __init__(self, status: int) -> None:
        super().__init__(b"", status)

    @property
    def processed_headers(self) -> Iterator[tuple[bytes, bytes]]:
        return (header for header in super().processed_headers if header[0] != b"content-type")


def leave_body_unread(request: Request) -> None:
    """An unauthenticated request's body is never read: no ``100 Continue`` invites it (Sanic would
    even send one before the 401), and the connection is closed after the answer, so the bytes it sent
    are never read as a next request either."""
    stream = request.stream
    if isinstance(stream, Http) and stream.request_body:
        stream.expecting_continue = False
        stream.request_body = None
        stream.keep_alive = False


async def read_body(request: Request) -> None:
    """Read an authenticated request's body (the hook routes stream: Sanic has not read it). Sanic lifts
    the size limit of a streaming route: it is set back, and a body announced larger is refused (413)
    without a ``100 Continue`` first."""
    stream = request.stream
    if isinstance(stream, Http):
        stream.request_max_size = MAX_BODY_BYTES
        if (stream.request_bytes or 0) > MAX_BODY_BYTES:
            stream.expecting_continue = False
    await request.receive_body()  # type: ignore[no-untyped-call]


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def client_gone(request: Request) -> bool:
    conn_info = request.conn_info
    return conn_info is not None and conn_info.lost


