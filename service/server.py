"""The Sanic applications: the hook port Okta calls, and the ops port for probes and metrics.

Two apps in one process (Sanic serves secondary apps from the primary's process): the hook port can be
exposed to Okta through an Ingress while /livez, /readyz and /metrics stay on a port that is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import struct
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from types import SimpleNamespace
from typing import Any

from prometheus_client.exposition import choose_encoder
from sanic import HTTPResponse, Request, Sanic, json
from sanic.config import Config
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
from sanic.response import BaseHTTPResponse, text
from sanic.server.protocols.http_protocol import HttpProtocol

from service.auth import HookAuthenticator, SecretVerifier
from service.cache import CachedDirectory, CachePolicy
from service.directory import Directory, UserDirectory
from service.hooks import Hook
from service.http_framing import check_request_head
from service.json_text import encoder
from service.oauth import FETCH_ERRORS, BearerVerifier, IssuerKeys, Rejection
from service.okta import EventError, parse_event
from service.password_import import VERIFICATION_REASONS, PasswordImportHook
from service.policy import Outcome
from service.settings import HookSettings, PasswordImportSettings, Secrets, Settings
from service.telemetry import Telemetry
from service.telemetry.logs import log_exception
from service.telemetry.requests import RequestObservation

App = Sanic[Config, SimpleNamespace]

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

_SANIC_CONFIG = {
    "REQUEST_MAX_SIZE": MAX_BODY_BYTES,
    # Sanic's REQUEST_TIMEOUT restarts at every byte received (HttpProtocol.data_received sets _time):
    # it bounds the gap between bytes only. _BoundedHttpProtocol bounds the whole request.
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
#: event that is not Okta's) set ``request.ctx.refusal_reason`` themselves.
_REFUSAL_REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (NotFound, "not_found"),
    (MethodNotAllowed, "method_not_allowed"),
    (PayloadTooLarge, "too_large"),
    (RequestTimeout, "request_timeout"),
    (BadRequest, "malformed_http"),
)
#: What a status gets when nothing more precise was said.
_STATUS_REASONS = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
CLIENT_CLOSED = 499  # nginx's convention: the client went away before the answer

#: Okta's answer as Sanic's ``json()`` writes it (``json.dumps`` with compact separators), with the
#: encoder built once rather than on every call (and no JSONResponse, which keeps the body as data too).
_answer_json = encoder(separators=(",", ":"))


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


class _TimedRequest(Request):
    """A request that knows when its first byte arrived (see :class:`_BoundedHttpProtocol`): the start
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


class _StrictHttp(Http):
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


class _BoundedHttpProtocol(HttpProtocol):
    """Sanic's HTTP/1.1 protocol with a bound on the time to receive a whole request.

    Sanic measures its timeouts from the last byte received, so a client sending one header line every
    two seconds holds a connection for ever. This protocol also notes when the first byte of each
    request arrived (when the process read it, less the time it had waited in the kernel) and closes
    the connection (408) when headers and body are not all in within ``REQUEST_RECEIVE_TIMEOUT`` of it."""

    __slots__ = ("_socket", "receiving_since")
    HTTP_CLASS = _StrictHttp

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


class _ErrorHandler(ErrorHandler):
    """Refusals and unexpected errors: a fixed body (never the URL or an exception's message), a reason
    for telemetry, and for a real error a log line with the traceback but no user data."""

    def default(self, request: Request, exception: BaseException) -> HTTPResponse:
        if isinstance(exception, RequestCancelled) or _client_gone(request):
            request.ctx.refusal_reason = "client_closed"
            return _Bodiless(CLIENT_CLOSED)
        if isinstance(exception, SanicException) and exception.status_code < 500:
            status = exception.status_code
            reason = next((name for kind, name in _REFUSAL_REASONS if isinstance(exception, kind)), None)
            request.ctx.refusal_reason = reason or _STATUS_REASONS.get(status, "refused")
            return json({"message": _phrase(status)}, status=status, headers=exception.headers or None)
        status = exception.status_code if isinstance(exception, SanicException) else 500
        log_exception("unexpected_error", exception, route=request.uri_template or "unmatched")
        return json({"message": _phrase(status)}, status=status)

    @staticmethod
    def log(request: Request, exception: Exception) -> None:
        """Sanic's own log line holds the URL and the exception's message: :meth:`default` logs instead."""


class _Bodiless(HTTPResponse):
    """An answer without a body, and so without a ``Content-Type``: Sanic's ``empty()`` leaves the
    content type None, which its header formatting writes out as ``content-type: None``."""

    __slots__ = ()

    def __init__(self, status: int) -> None:
        super().__init__(b"", status)

    @property
    def processed_headers(self) -> Iterator[tuple[bytes, bytes]]:
        return (header for header in super().processed_headers if header[0] != b"content-type")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _client_gone(request: Request) -> bool:
    conn_info = request.conn_info
    return conn_info is not None and conn_info.lost


@dataclass
class ServiceState:
    """Per-process state shared by the two apps."""

    ready: bool = False
    background: list[asyncio.Task[None]] = field(default_factory=list)


def create_apps(
    settings: Settings, secrets: Secrets, telemetry: Telemetry, name: str = "okta_ldap_hook"
) -> tuple[App, App]:
    """Build the hook app and the ops app; nothing is started or connected until the server starts."""
    hook_app: App = Sanic(name, configure_logging=False, request_class=_TimedRequest, error_handler=_ErrorHandler())
    ops_app: App = Sanic(f"{name}_ops", configure_logging=False, error_handler=_ErrorHandler())
    for app in (hook_app, ops_app):
        app.config.update(_SANIC_CONFIG)

    state = ServiceState()
    verifier, issuer_keys = _authenticator(settings, secrets, telemetry)
    directory = Directory(settings.directory, secrets.bind_password, telemetry.directory)
    caches: list[CachedDirectory] = []
    hooks: list[Hook | PasswordImportHook] = []
    for hook_type, hook_settings in settings.hooks.enabled().items():
        if isinstance(hook_settings, PasswordImportSettings):
            # the directory itself: a credential check never goes through the cache
            hooks.append(PasswordImportHook(hook_settings, directory))
            telemetry.declare_password_verifications(VERIFICATION_REASONS)
            continue
        assert isinstance(hook_settings, HookSettings)
        policy = cache_policy(hook_settings)
        source: UserDirectory = directory
        if policy.enabled:
            cache = CachedDirectory(directory, policy, telemetry.cache(hook_type.value))
            telemetry.watch_cache(hook_type.value, cache.__len__)
            caches.append(cache)
            source = cache
        hooks.append(Hook(hook_type, hook_settings, source))
    telemetry.declare((hook.type.value for hook in hooks), directory.servers)
    telemetry.watch_pool(directory.pool_state)
    hook_paths = {hook.type.path: hook.type.value for hook in hooks}
    telemetry.declare_routes(hook_paths)

    def start_observation(request: Request) -> RequestObservation:
        # A body refused as too large never reaches routing: its path, if it is a hook's, is the route.
        route = request.uri_template or (request.path if request.path in hook_paths else "unmatched")
        # a label holds a known method only; Sanic's "NONE" (cut before the request line) and any
        # invented method become OpenTelemetry's "_OTHER"
        method = request.method if request.method in _METHODS else "_OTHER"
        received_at = getattr(request, "received_at", None)
        observation = telemetry.requests.started(method, route, hook_paths.get(route), request.headers, received_at)
        request.ctx.observation = observation
        return observation

    # Observation starts in the handler (a request middleware would cost an await on every call);
    # what Sanic refuses before any handler runs (404, 405, 408, a malformed head) is observed when it is
    # answered; a body over the limit (413) is refused in the handler, after authentication.
    for hook in hooks:
        handler = _hook_handler(hook, verifier, start_observation)
        # a streaming route: Sanic does not read the body (nor send 100 Continue) before the handler
        # has authenticated the request
        hook_app.add_route(handler, hook.type.path, methods=["POST"], name=hook.type.value, stream=True)

    def close_when_draining(request: Request) -> None:
        """Answer in-flight hooks during shutdown with ``Connection: close``: Sanic closes idle
        connections once at SIGTERM, then waits up to GRACEFUL_SHUTDOWN_TIMEOUT for the others, and a
        connection kept alive after its last answer would hold the pod for all of it."""
        stream = request.stream
        if not state.ready and stream is not None and hasattr(stream, "keep_alive"):
            stream.keep_alive = False

    async def observe_response(request: Request, response: BaseHTTPResponse) -> None:
        close_when_draining(request)
        if getattr(request.ctx, "observed", False):
            return  # the client left while the answer was on its way: it was recorded once already
        request.ctx.observed = True
        result = getattr(request.ctx, "result", None)
        outcome = result.outcome if result is not None else getattr(request.ctx, "outcome", None)
        reason: str | None = getattr(request.ctx, "refusal_reason", None)
        status = response.status
        if status == CLIENT_CLOSED:
            # what Okta (or whoever it was) received: nothing
            outcome, reason = Outcome.CLIENT_CLOSED, "client_closed"
        elif status >= 500:
            outcome, reason = Outcome.SERVER_ERROR, None
        elif status >= 400:
            outcome = Outcome.UNAUTHORIZED if status == 401 else outcome or Outcome.BAD_REQUEST
            reason = reason or _STATUS_REASONS.get(status, "refused")
        observation = getattr(request.ctx, "observation", None) or start_observation(request)
        telemetry.requests.finished(observation, status, outcome, result, reason)

    # One response middleware, not two: each costs an await on every request. The connection decision
    # comes first, then the observation.
    hook_app.register_middleware(observe_response, "response")

    def flush_caches() -> None:
        """Forget every cached directory answer and every answer kept for Okta's retries."""
        entries = sum(cache.clear() for cache in caches)
        for hook in hooks:
            hook.forget_answers()
        telemetry.cache_flushed(entries)

    @hook_app.before_server_start
    async def start_directory(app: App) -> None:
        state.background.append(await directory.start_background())
        # SIGHUP empties the cache: see README "Answering from memory" for why a signal, not an endpoint.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # no signals off the main thread
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, flush_caches)

    if issuer_keys is not None:

        @hook_app.before_server_start
        async def start_key_refresh(app: App) -> None:
            # In the background: neither startup nor the probes wait for the issuer.
            state.background.append(issuer_keys.start())

    @hook_app.after_server_start
    async def mark_ready(app: App) -> None:
        state.ready = True

    @hook_app.before_server_stop
    async def mark_draining(app: App) -> None:
        state.ready = False
        # Sanic drains the primary app's connections only; close the ops port's idle keep-alive
        # connections (Prometheus, kubelet) before the loop stops, or they die with errors logged.
        for info in ops_app.state.server_info:
            for connection in list(getattr(info.server, "connections", ())):
                connection.close_if_idle()

    @hook_app.after_server_stop
    async def stop_everything(app: App) -> None:
        for task in state.background:
            task.cancel()
        directory.close()
        telemetry.shutdown()

    @ops_app.get("/livez")
    async def livez(request: Request) -> HTTPResponse:
        """The process and its event loop answer. Nothing else: restarting a pod never fixes LDAP."""
        return text("ok")

    @ops_app.get("/readyz")
    async def readyz(request: Request) -> HTTPResponse:
        """Configuration loaded and serving. Deliberately not LDAP: an LDAP outage that took every pod
        out of the Service would turn fallback answers into connection errors, which deny registrations."""
        return text("ready") if state.ready else text("not ready", status=503)

    @ops_app.get("/metrics")
    async def metrics(request: Request) -> HTTPResponse:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return HTTPResponse(encoder(telemetry.metrics.exposed), content_type=content_type)

    return hook_app, ops_app


def cache_policy(settings: HookSettings) -> CachePolicy:
    cache = settings.cache
    return CachePolicy(
        fresh_seconds=cache.fresh_seconds,
        stale_seconds=cache.stale_seconds,
        negative_seconds=cache.negative_seconds,
        refresh_ahead_seconds=cache.refresh_ahead_seconds,
        max_entries=cache.max_entries,
        refresh_budget_seconds=settings.deadline_seconds,
    )


def _authenticator(
    settings: Settings, secrets: Secrets, telemetry: Telemetry
) -> tuple[HookAuthenticator, IssuerKeys | None]:
    """The header secret, OAuth bearer tokens, or both, as configured (``auth``)."""
    secret = SecretVerifier(settings.auth.header, secrets.hook_secrets) if secrets.hook_secrets else None
    oauth = settings.auth.oauth
    if oauth is None:
        return HookAuthenticator(secret, None), None
    telemetry.oauth.declare(FETCH_ERRORS, tuple(reason.value for reason in Rejection))
    keys = IssuerKeys(oauth, telemetry.oauth)
    bearer = BearerVerifier(oauth, keys, telemetry.oauth, report_not_bearer=secret is None)
    return HookAuthenticator(secret, bearer), keys


def _hook_handler(
    hook: Hook | PasswordImportHook,
    verifier: HookAuthenticator,
    start_observation: Callable[[Request], RequestObservation],
) -> Callable[[Request], Coroutine[Any, Any, HTTPResponse]]:
    async def handle(request: Request) -> HTTPResponse:
        start_observation(request)
        received_at: float = getattr(request, "received_at", None) or time.monotonic()
        # every value of the header: a repeated one is refused, not resolved by picking one
        auth_refusal = await verifier.refusal(request.headers)
        if auth_refusal is not None:
            _refused(request, Outcome.UNAUTHORIZED, auth_refusal)
            _leave_body_unread(request)
            return _Bodiless(401)
        await _read_body(request)
        try:
            event = parse_event(request.body, hook.type)
        except EventError as error:
            _refused(request, Outcome.BAD_REQUEST, error.reason)
            return json({"message": str(error)}, status=400)
        request.ctx.result = result = await hook.answer(event, received_at)
        return HTTPResponse(_answer_json(result.body), content_type="application/json")

    handle.__name__ = f"{hook.type.value}_hook"
    return handle


def _leave_body_unread(request: Request) -> None:
    """An unauthenticated request's body is never read: no ``100 Continue`` invites it (Sanic would
    even send one before the 401), and the connection is closed after the answer, so the bytes it sent
    are never read as a next request either."""
    stream = request.stream
    if isinstance(stream, Http) and stream.request_body:
        stream.expecting_continue = False
        stream.request_body = None
        stream.keep_alive = False


async def _read_body(request: Request) -> None:
    """Read an authenticated request's body (the hook routes stream: Sanic has not read it). Sanic lifts
    the size limit of a streaming route: it is set back, and a body announced larger is refused (413)
    without a ``100 Continue`` first."""
    stream = request.stream
    if isinstance(stream, Http):
        stream.request_max_size = MAX_BODY_BYTES
        if (stream.request_bytes or 0) > MAX_BODY_BYTES:
            stream.expecting_continue = False
    await request.receive_body()  # type: ignore[no-untyped-call]


def _refused(request: Request, outcome: Outcome, reason: str) -> None:
    """Record why a request is refused (a fixed vocabulary) for the request's log line."""
    request.ctx.outcome = outcome
    request.ctx.refusal_reason = reason
    observation = getattr(request.ctx, "observation", None)
    if observation is not None:
        observation.reason = reason


def serve(settings: Settings, secrets: Secrets, telemetry: Telemetry) -> None:
    """Run both apps in this one process until SIGTERM/SIGINT (Kubernetes scales with replicas; one
    process per pod keeps metrics whole and exemplars possible)."""
    hook_app, ops_app = create_apps(settings, secrets, telemetry)
    server = settings.server
    hook_app.prepare(
        host=server.host,
        port=server.hook_port,
        single_process=True,
        access_log=False,
        motd=False,
        protocol=_BoundedHttpProtocol,
        backlog=LISTEN_BACKLOG,
    )
    ops_app.prepare(host=server.host, port=server.ops_port, access_log=False, motd=False, protocol=_BoundedHttpProtocol)
    Sanic.serve_single(primary=hook_app)
