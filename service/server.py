"""The Sanic applications: the hook port Okta calls, and the ops port for probes and metrics.

Two apps in one process (Sanic serves secondary apps from the primary's process): the hook port can be
exposed to Okta through an Ingress while /livez, /readyz and /metrics stay on a port that is not. This
module wires the parts together; how HTTP is spoken is :mod:`service.http_protocol`, what each hook
answers is :mod:`service.hooks`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from prometheus_client.exposition import choose_encoder
from sanic import HTTPResponse, Request, Sanic, json
from sanic.config import Config
from sanic.response import BaseHTTPResponse, text

from service.auth import OAUTH_SOURCE, HookAuthenticator, SecretVerifier
from service.cache import CachedDirectory, CachePolicy, EvictionCause, FeedHealth
from service.directory import Changes, Directory, DirectorySet, UserDirectory
from service.hooks.base import Hook
from service.http_protocol import (
    LISTEN_BACKLOG,
    METHODS,
    SANIC_CONFIG,
    Bodiless,
    BoundedHttpProtocol,
    RefusalHandler,
    RequestContext,
    TimedRequest,
    context_of,
    leave_body_unread,
    read_body,
)
from service.json_text import encoder
from service.oauth import FETCH_ERRORS, BearerVerifier, IssuerKeys, Rejection
from service.okta import EventError, parse_event
from service.policy import Outcome, can_deny
from service.settings import Secrets, Settings
from service.telemetry import Telemetry
from service.telemetry.cache import FeedTelemetry
from service.telemetry.requests import RequestObservation

App = Sanic[Config, SimpleNamespace]
Handler = Callable[[Request], Coroutine[Any, Any, HTTPResponse]]

#: Okta's answer as Sanic's ``json()`` writes it (``json.dumps`` with compact separators), with the
#: encoder built once rather than on every call (and no JSONResponse, which keeps the body as data too).
_answer_json = encoder(separators=(",", ":"))


@dataclass
class ServiceState:
    """Per-process state shared by the two apps."""

    ready: bool = False
    background: list[asyncio.Task[None]] = field(default_factory=list)


@dataclass
class _Wiring:
    """What hook types are built from (``service.hooks.base.Wiring``): every configured directory, and
    a cache of its own for each (hook type, directory) with the type's cache enabled; for a directory
    with a change feed, the feed's health, which its caches consult."""

    directories: DirectorySet
    live_directories: dict[str, Directory]
    telemetry: Telemetry
    feeds: dict[str, FeedHealth] = field(default_factory=dict)
    #: Each directory's caches (one per hook type that reads it): what its change feed evicts from.
    caches: dict[str, list[CachedDirectory]] = field(default_factory=dict)

    def live(self, name: str) -> Directory:
        return self.live_directories[name]

    def cached(self, hook_type: str, name: str, policy: CachePolicy, deadline_seconds: float) -> UserDirectory:
        directory = self.live_directories[name]
        if not policy.enabled:
            return directory
        cache = CachedDirectory(
            directory,
            policy,
            self.telemetry.cache(hook_type, name),
            refresh_budget_seconds=deadline_seconds,
            feed=self.feeds.get(name),
        )
        self.telemetry.watch_cache(hook_type, name, cache.__len__)
        self.caches.setdefault(name, []).append(cache)
        return cache

    def every_cache(self) -> list[CachedDirectory]:
        return [cache for caches in self.caches.values() for cache in caches]


class _FeedSink:
    """Where a directory's change feed reports each poll (``directory.changes.ChangeSink``): every hook
    type's cache of that directory evicts what the changes affect, then the feed's health says whether
    those caches may keep entries ``feed_fresh_seconds``. Evictions come first: an entry is never vouched
    for by a poll whose changes it has not been checked against."""

    def __init__(self, caches: list[CachedDirectory], health: FeedHealth, telemetry: FeedTelemetry) -> None:
        self._caches = caches
        self._health = health
        self._telemetry = telemetry

    def changed(self, changes: Changes, started: float, finished: float) -> None:
        was_current = self._health.current(finished)
        evictions: Counter[EvictionCause] = Counter()
        for cache in self._caches:
            evictions.update(cache.apply(changes))
        self._health.polled(started, finished, changes.resync)
        self._telemetry.polled(changes, evictions, was_current)

    def failed(self, kind: str) -> None:
        was_current = self._health.current()
        self._health.failed()
        self._telemetry.failed(kind, was_current)

    def unconfirmed(self) -> frozenset[str]:
        """The DNs every cache served past its fresh_seconds on the feed's word lately."""
        return frozenset().union(*(cache.unconfirmed() for cache in self._caches))


def create_apps(
    settings: Settings, secrets: Secrets, telemetry: Telemetry, name: str = "okta_ldap_hook"
) -> tuple[App, App]:
    """Build the hook app and the ops app; nothing is started or connected until the server starts."""
    hook_app: App = Sanic(name, configure_logging=False, request_class=TimedRequest, error_handler=RefusalHandler())
    ops_app: App = Sanic(
        f"{name}_ops", configure_logging=False, request_class=TimedRequest, error_handler=RefusalHandler()
    )
    for app in (hook_app, ops_app):
        app.config.update(SANIC_CONFIG)
    state = ServiceState()
    telemetry.credential_files.watch(secrets.files())
    wiring = _wiring(settings, secrets, telemetry)
    hooks = _hooks(settings, wiring, telemetry)
    sinks = _feed_sinks(wiring, telemetry)
    verifier, issuer_keys = _authenticator(settings, secrets, telemetry)
    _route_hooks(hook_app, hooks, verifier, telemetry, state)
    flush_caches = _flusher(hooks, wiring, telemetry)
    _lifecycle(hook_app, ops_app, state, wiring.live_directories, issuer_keys, telemetry, flush_caches, sinks)
    _ops_routes(ops_app, state, telemetry, wiring.live_directories)
    return hook_app, ops_app


def _wiring(settings: Settings, secrets: Secrets, telemetry: Telemetry) -> _Wiring:
    """Every configured directory, each with its own credentials, observer and change feed's health."""
    directories = settings.directory_set()
    live: dict[str, Directory] = {}
    feeds: dict[str, FeedHealth] = {}
    for name, config in directories.named.items():
        own = secrets.of(name)
        live[name] = Directory(config, own.bind_password, telemetry.directory_observer(name), own.ca_bundle)
        if config.change_feed is not None:
            feeds[name] = FeedHealth(config.change_feed.max_lag_seconds)
    return _Wiring(directories, live, telemetry, feeds, {name: [] for name in live})


def _feed_sinks(wiring: _Wiring, telemetry: Telemetry) -> dict[str, _FeedSink]:
    """A sink for each directory's change feed, over that directory's caches (built with the hooks)."""
    return {
        name: _FeedSink(wiring.caches[name], health, telemetry.change_feed(name, health.lag, health.current))
        for name, health in wiring.feeds.items()
    }


def _hooks(settings: Settings, wiring: _Wiring, telemetry: Telemetry) -> list[Hook]:
    """One hook per configured hook type, and their metric series declared at zero."""
    hooks: list[Hook] = []
    for hook_type, section in settings.enabled_hooks().items():
        hooks.append(hook_type.create(section, wiring))
        if hook_type.kind.verifications:
            telemetry.declare_password_verifications(hook_type.kind.verifications)
    directories = wiring.live_directories
    telemetry.declare(
        {hook.type.value: can_deny(hook.type) for hook in hooks},
        {name: directory.servers for name, directory in directories.items()},
    )
    for name, directory in directories.items():
        telemetry.watch_pool(name, directory.pool_state)
        telemetry.watch_directory(name, wiring.directories.role(name), directory.up)
    return hooks


def _authenticator(
    settings: Settings, secrets: Secrets, telemetry: Telemetry
) -> tuple[HookAuthenticator, IssuerKeys | None]:
    """The header secret, OAuth bearer tokens, or both, as configured (``auth``); each accepted call
    counted by the source that accepted it."""
    secret = SecretVerifier(settings.auth.header, secrets.hook_secrets) if secrets.hook_secrets else None
    sources = secret.sources if secret is not None else ()
    oauth = settings.auth.oauth
    if oauth is None:
        return HookAuthenticator(secret, None, telemetry.count_accepted(sources)), None
    telemetry.oauth.declare(FETCH_ERRORS, tuple(reason.value for reason in Rejection))
    keys = IssuerKeys(oauth, telemetry.oauth)
    bearer = BearerVerifier(oauth, keys, telemetry.oauth, report_not_bearer=secret is None)
    return HookAuthenticator(secret, bearer, telemetry.count_accepted((*sources, OAUTH_SOURCE))), keys


def _route_hooks(
    app: App, hooks: list[Hook], verifier: HookAuthenticator, telemetry: Telemetry, state: ServiceState
) -> None:
    """A POST route per hook, and the one response middleware that observes every answer.

    Observation starts in the handler (a request middleware would cost an await on every call); what
    Sanic refuses before any handler runs (404, 405, 408, a malformed head) is observed when it is
    answered; a body over the limit (413) is refused in the handler, after authentication. The routes
    stream: Sanic does not read the body (nor send 100 Continue) before the handler has authenticated
    the request."""
    hook_paths = {hook.type.path: hook.type.value for hook in hooks}
    telemetry.declare_routes(hook_paths)

    def start_observation(request: Request) -> RequestObservation:
        # A body refused as too large never reaches routing: its path, if it is a hook's, is the route.
        route = request.uri_template or (request.path if request.path in hook_paths else "unmatched")
        # a label holds a known method only; Sanic's "NONE" (cut before the request line) and any
        # invented method become OpenTelemetry's "_OTHER"
        method = request.method if request.method in METHODS else "_OTHER"
        received_at = getattr(request, "received_at", None)
        observation = telemetry.requests.started(method, route, hook_paths.get(route), request.headers, received_at)
        context_of(request).observation = observation
        return observation

    for hook in hooks:
        handler = _hook_handler(hook, verifier, start_observation)
        app.add_route(handler, hook.type.path, methods=["POST"], name=hook.type.value, stream=True)

    async def observe_response(request: Request, response: BaseHTTPResponse) -> None:
        # One response middleware, not two: each costs an await on every request. The connection
        # decision comes first, then the observation.
        _close_when_draining(request, state)
        context = context_of(request)
        if context.observed:
            return  # the client left while the answer was on its way: it was recorded once already
        context.observed = True
        result = context.result
        # a refusal or an error answered after the hook ran outranks the hook's own outcome
        outcome = context.outcome or (result.outcome if result is not None else None)
        observation = context.observation or start_observation(request)
        telemetry.requests.finished(observation, response.status, outcome, result, context.refusal_reason)

    app.register_middleware(observe_response, "response")


def _close_when_draining(request: Request, state: ServiceState) -> None:
    """Answer in-flight hooks during shutdown with ``Connection: close``: Sanic closes idle connections
    once at SIGTERM, then waits up to GRACEFUL_SHUTDOWN_TIMEOUT for the others, and a connection kept
    alive after its last answer would hold the pod for all of it."""
    stream = request.stream
    if not state.ready and stream is not None and hasattr(stream, "keep_alive"):
        stream.keep_alive = False


def _hook_handler(
    hook: Hook, verifier: HookAuthenticator, start_observation: Callable[[Request], RequestObservation]
) -> Handler:
    async def handle(request: Request) -> HTTPResponse:
        start_observation(request)
        context = context_of(request)
        received_at: float = request.received_at if isinstance(request, TimedRequest) else 0.0
        # every value of the header: a repeated one is refused, not resolved by picking one
        auth_refusal = await verifier.why_refused(request.headers)
        if auth_refusal is not None:
            _refused(context, Outcome.UNAUTHORIZED, auth_refusal)
            leave_body_unread(request)
            return Bodiless(401)
        await read_body(request)
        try:
            event = parse_event(request.body, hook.type)
        except EventError as error:
            _refused(context, Outcome.BAD_REQUEST, error.reason)
            return json({"message": str(error)}, status=400)
        context.result = result = await hook.answer(event, received_at)
        return HTTPResponse(_answer_json(result.body), content_type="application/json")

    handle.__name__ = f"{hook.type.value}_hook"
    return handle


def _refused(context: RequestContext, outcome: Outcome, reason: str) -> None:
    """Record why a request is refused (a fixed vocabulary) for the request's log line."""
    context.outcome = outcome
    context.refusal_reason = reason
    if context.observation is not None:
        context.observation.reason = reason


def _flusher(hooks: list[Hook], wiring: _Wiring, telemetry: Telemetry) -> Callable[[], None]:
    def flush_caches() -> None:
        """Forget every cached directory answer, every answer kept for Okta's retries, the group names the
        directory remembers (tokenGroups SIDs), and that the directory refused the service account's
        password (one more bind with it is allowed: the operator set it in the directory after the file)."""
        entries = sum(cache.clear() for cache in wiring.every_cache())
        rearmed = False
        for directory in wiring.live_directories.values():
            directory.forget()
            rearmed = directory.forget_refused_password() or rearmed
        for hook in hooks:
            hook.forget_answers()
        telemetry.cache_flushed(entries, rearmed_bind=rearmed)

    return flush_caches


def _lifecycle(
    hook_app: App,
    ops_app: App,
    state: ServiceState,
    directories: dict[str, Directory],
    issuer_keys: IssuerKeys | None,
    telemetry: Telemetry,
    flush_caches: Callable[[], None],
    feed_sinks: dict[str, _FeedSink],
) -> None:
    """Start the background work with the server, say ready once serving, drain and stop on SIGTERM."""

    @hook_app.before_server_start
    async def start_background(app: App) -> None:
        for name, directory in directories.items():
            state.background.append(await directory.start_background())
            sink = feed_sinks.get(name)
            if sink is not None and (feed := directory.follow_changes(sink)) is not None:
                state.background.append(feed)
        if issuer_keys is not None:  # in the background: neither startup nor the probes wait for the issuer
            state.background.append(issuer_keys.start())
        # SIGHUP empties the cache: see README "Answering from memory" for why a signal, not an endpoint.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # no signals off the main thread
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, flush_caches)

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
        for directory in directories.values():
            directory.close()
        telemetry.shutdown()


def _ops_routes(app: App, state: ServiceState, telemetry: Telemetry, directories: dict[str, Directory]) -> None:
    @app.get("/livez")
    async def livez(request: Request) -> HTTPResponse:
        """The process and its event loop answer. Nothing else: restarting a pod never fixes LDAP."""
        return text("ok")

    @app.get("/readyz")
    async def readyz(request: Request) -> HTTPResponse:
        """Configuration loaded and serving. Deliberately not LDAP: an LDAP outage that took every pod
        out of the Service would turn fallback answers into connection errors, which deny registrations."""
        return text("ready") if state.ready else text("not ready", status=503)

    @app.get("/directories")
    async def directory_health(request: Request) -> HTTPResponse:
        """Each configured directory's servers and whether they passed their last health check: where an
        operator looks first when answers come back ``enriched_partial``. Not a probe (see /readyz)."""
        report = {}
        for name, directory in directories.items():
            servers = directory.server_health()
            report[name] = {"up": any(servers.values()), "servers": servers}
        return HTTPResponse(_answer_json(report), content_type="application/json")

    @app.get("/metrics")
    async def metrics(request: Request) -> HTTPResponse:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return HTTPResponse(encoder(telemetry.metrics.exposed), content_type=content_type)


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
        protocol=BoundedHttpProtocol,
        backlog=LISTEN_BACKLOG,
    )
    ops_app.prepare(host=server.host, port=server.ops_port, access_log=False, motd=False, protocol=BoundedHttpProtocol)
    Sanic.serve_single(primary=hook_app)
