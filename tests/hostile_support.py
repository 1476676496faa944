"""The service in-process for many requests: the app factory's hook app, started once, called through
ASGI from a background event loop, with its log events and metrics at hand.

Sanic's test client starts and stops the app around every request (and stopping closes the directory),
which is fine for one request and far too slow for a thousand generated ones.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sanic import Sanic
from structlog.testing import capture_logs
from support.config import SECRET

from service.demo.slapd import SERVICE_BIND_PASSWORD, free_port
from service.server import create_apps
from service.settings import Secrets, parse_settings
from service.telemetry import Metrics, Telemetry

T = TypeVar("T")


@dataclass
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class InProcessService:
    """``create_apps`` on the real directory, serving until :meth:`close`."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        Sanic.test_mode = True
        self.spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.telemetry = Telemetry(Metrics(), provider)
        settings = parse_settings(dict(config))
        self.app, _ = create_apps(
            settings, Secrets((SECRET,), SERVICE_BIND_PASSWORD), self.telemetry, name=f"h{free_port()}"
        )
        self.app.asgi = True
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._run(self._start())
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://127.0.0.1:8080")

    async def _start(self) -> None:
        self.app.router.reset()
        self.app.signal_router.reset()
        await self.app._startup()
        await self.app._server_event("init", "before")
        await self.app._server_event("init", "after")

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    def post(
        self, path: str, content: bytes, secret: str | None = SECRET, headers: list[tuple[bytes, bytes]] | None = None
    ) -> Answer:
        """POST raw ``content``; ``headers`` are raw byte pairs, sent as they are (repeated ones too)."""
        all_headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json")]
        if secret is not None:
            all_headers.append((b"authorization", secret.encode()))
        all_headers += headers or []

        async def call() -> Answer:
            response = await self._client.post(path, content=content, headers=all_headers)
            return Answer(response.status_code, response.content)

        return self._run(call())

    def post_json(self, path: str, document: Any, **kwargs: Any) -> Answer:
        return self.post(path, json.dumps(document).encode(), **kwargs)

    def metric(self, name: str, labels: Mapping[str, str]) -> float:
        return self.telemetry.metrics.registry.get_sample_value(name, dict(labels)) or 0.0

    def close(self) -> None:
        async def stop() -> None:
            await self._client.aclose()
            await self.app._server_event("shutdown", "before")
            await self.app._server_event("shutdown", "after")

        try:
            self._run(stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


@contextmanager
def in_process(config: Mapping[str, Any]) -> Iterator[InProcessService]:
    service = InProcessService(config)
    try:
        yield service
    finally:
        service.close()


@contextmanager
def captured_logs() -> Iterator[list[dict[str, Any]]]:
    """Every structlog event the service emits meanwhile, as the dict handed to the renderer (before
    redaction: what is checked is what the code put in the event)."""
    with capture_logs() as events:
        yield events


def hook_lines(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event for event in events if event.get("event") == "hook_request"]


#: Where each hook type's looked-up identifier sits in Okta's example event (demo configuration:
#: registration and user import look up the email, token and SAML the login).
_SUBJECT_PATHS = {
    "registration": ("data", "userProfile", "email"),
    "token": ("data", "context", "user", "profile", "login"),
    "saml": ("data", "context", "user", "profile", "login"),
    "user_import": ("data", "user", "profile", "email"),
}
HOOK_PATHS = {
    "registration": "/hooks/registration",
    "token": "/hooks/token",
    "saml": "/hooks/saml",
    "user_import": "/hooks/user-import",
}


def event_for(hook: str, identifier: str) -> dict[str, Any]:
    """Okta's example event of ``hook`` asking about ``identifier``."""
    from okta_spec import example

    event = example(hook)
    *parents, key = _SUBJECT_PATHS[hook]
    node = event
    for name in parents:
        node = node[name]
    node[key] = identifier
    return event
