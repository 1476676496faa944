"""The Sanic applications: the hook port Okta calls, and the ops port for probes and metrics.

Two apps in one process (Sanic serves secondary apps from the primary's process): the hook port can be
exposed to Okta through an Ingress while /livez, /readyz and /metrics stay on a port that is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from prometheus_client.exposition import choose_encoder
from sanic import HTTPResponse, Request, Sanic, empty, json
from sanic.config import Config
from sanic.response import BaseHTTPResponse, text

from service.auth import HookAuthenticator, SecretVerifier
from service.cache import CachedDirectory, CachePolicy
from service.directory import Directory, UserDirectory
from service.hooks import Hook
from service.oauth import FETCH_ERRORS, BearerVerifier, IssuerKeys, Rejection
from service.okta import EventError, parse_event
from service.policy import Outcome
from service.settings import HookSettings, Secrets, Settings
from service.telemetry import Telemetry
from service.telemetry.requests import RequestObservation

App = Sanic[Config, SimpleNamespace]

#: Okta's events are a few KB; its responses are capped at 256 KB, its requests are no bigger.
MAX_BODY_BYTES = 256 * 1024

_SANIC_CONFIG = {
    "REQUEST_MAX_SIZE": MAX_BODY_BYTES,
    "REQUEST_TIMEOUT": 5,  # slow senders
    "RESPONSE_TIMEOUT": 3,  # a backstop only: every hook answers within its own deadline first
    "KEEP_ALIVE_TIMEOUT": 75,  # longer than a fronting proxy's idle timeout
    "GRACEFUL_SHUTDOWN_TIMEOUT": 10,  # drain in-flight hooks on SIGTERM
    "ACCESS_LOG": False,  # one summary log line per hook request instead
    "FALLBACK_ERROR_FORMAT": "json",
    "MOTD": False,
}


@dataclass
class ServiceState:
    """Per-process state shared by the two apps."""

    ready: bool = False
    background: list[asyncio.Task[None]] = field(default_factory=list)


def create_apps(
    settings: Settings, secrets: Secrets, telemetry: Telemetry, name: str = "okta_ldap_hook"
) -> tuple[App, App]:
    """Build the hook app and the ops app; nothing is started or connected until the server starts."""
    hook_app: App = Sanic(name, configure_logging=False)
    ops_app: App = Sanic(f"{name}_ops", configure_logging=False)
    for app in (hook_app, ops_app):
        app.config.update(_SANIC_CONFIG)

    state = ServiceState()
    verifier, issuer_keys = _authenticator(settings, secrets, telemetry)
    directory = Directory(settings.directory, secrets.bind_password, telemetry.directory)
    caches: list[CachedDirectory] = []
    hooks = []
    for hook_type, hook_settings in settings.hooks.enabled().items():
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

    for hook in hooks:
        hook_app.add_route(_hook_handler(hook, verifier), hook.type.path, methods=["POST"], name=hook.type.value)

    def start_observation(request: Request) -> RequestObservation:
        # A body refused as too large never reaches routing: its path, if it is a hook's, is the route.
        route = request.uri_template or (request.path if request.path in hook_paths else "unmatched")
        observation = telemetry.requests.started(request.method, route, hook_paths.get(route), request.headers)
        request.ctx.observation = observation
        return observation

    @hook_app.on_request
    async def observe_request(request: Request) -> None:
        start_observation(request)

    async def close_when_draining(request: Request, response: BaseHTTPResponse) -> None:
        """Answer in-flight hooks during shutdown with ``Connection: close``: Sanic closes idle
        connections once at SIGTERM, then waits up to GRACEFUL_SHUTDOWN_TIMEOUT for the others, and a
        connection kept alive after its last answer would hold the pod for all of it."""
        stream = request.stream
        if not state.ready and stream is not None and hasattr(stream, "keep_alive"):
            stream.keep_alive = False

    async def observe_response(request: Request, response: BaseHTTPResponse) -> None:
        result = getattr(request.ctx, "result", None)
        outcome = result.outcome if result is not None else getattr(request.ctx, "outcome", None)
        if outcome is None and response.status in (400, 413):
            outcome = Outcome.BAD_REQUEST
        observation = getattr(request.ctx, "observation", None) or start_observation(request)
        telemetry.requests.finished(observation, response.status, outcome, result)

    # response middleware runs in reverse registration order: observe last, after the connection decision
    hook_app.register_middleware(observe_response, "response")
    hook_app.register_middleware(close_when_draining, "response")

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
        return HTTPResponse(encoder(telemetry.metrics.registry), content_type=content_type)

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


def _hook_handler(hook: Hook, verifier: HookAuthenticator) -> Callable[[Request], Coroutine[Any, Any, HTTPResponse]]:
    async def handle(request: Request) -> HTTPResponse:
        received_at = time.monotonic()
        # every value of the header: a repeated one is refused, not resolved by picking one
        auth_refusal = await verifier.refusal(request.headers)
        if auth_refusal is not None:
            _refused(request, Outcome.UNAUTHORIZED, auth_refusal)
            return empty(status=401)
        try:
            event = parse_event(request.body, hook.type)
        except EventError as error:
            _refused(request, Outcome.BAD_REQUEST, error.reason)
            return json({"message": str(error)}, status=400)
        request.ctx.result = result = await hook.answer(event, received_at)
        return json(result.body)

    handle.__name__ = f"{hook.type.value}_hook"
    return handle


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
    hook_app.prepare(host=server.host, port=server.hook_port, single_process=True, access_log=False, motd=False)
    ops_app.prepare(host=server.host, port=server.ops_port, access_log=False, motd=False)
    Sanic.serve_single(primary=hook_app)
