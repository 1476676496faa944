"""The service in the test process: the real app factory on real sockets, without a process start.

Starting ``python -m service serve`` costs about a second of imports per test on a loaded machine;
most tests only need the hook's HTTP behaviour. :class:`InProcessService` builds both apps with
``service.server.create_apps`` and serves them from an event loop in a thread of the test process, on
loopback ports, with the same lifecycle events as ``serve`` (the directory pool prewarms, the health
check runs, /readyz turns ready). It has the interface of ``support.servers.RunningService`` (``post``,
``metrics``, ``client``, ``hook_url``, ``ops_url``), so a test can use either; only start-up, signals,
reload and process-level behaviour need the real process.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
from collections.abc import Coroutine, Mapping
from typing import Any

import httpx
from hook_client import HookClient
from sanic import Sanic

from service.server import create_apps
from service.settings import load_secrets, parse_settings
from service.telemetry import Metrics, Telemetry

_names = itertools.count()


class InProcessService(HookClient):
    """Both apps of one configuration, served in a background event loop until :meth:`stop`."""

    def __init__(self, config: dict[str, Any], environ: Mapping[str, str]) -> None:
        Sanic.test_mode = True  # several apps in one process; no signal handlers of our own
        settings = parse_settings(config)
        secrets = load_secrets(settings, environ)  # as `serve` reads them: env variables and files
        self.settings = settings
        self.telemetry = Telemetry(Metrics())
        self.hook_app, self.ops_app = create_apps(settings, secrets, self.telemetry, name=f"in_process_{next(_names)}")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="in-process-service", daemon=True)
        self._thread.start()
        self._servers: list[Any] = []
        self._draining = False
        self._run(self._start())
        self.hook_port = self._servers[0].server.sockets[0].getsockname()[1]
        self.ops_port = self._servers[1].server.sockets[0].getsockname()[1]
        self.hook_url = f"http://127.0.0.1:{self.hook_port}"
        self.ops_url = f"http://127.0.0.1:{self.ops_port}"
        self.client = httpx.Client(timeout=10)
        first = secrets.hook_secrets[0]
        self.default_secret = first if isinstance(first, str) else first.read().value

    def _run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 15) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    async def _start(self) -> None:
        for app in (self.hook_app, self.ops_app):
            listener = socket.create_server(("127.0.0.1", 0))  # bound here: no free-port race
            server = await app.create_server(sock=listener, return_asyncio_server=True)
            assert server is not None
            await server.startup()
            self._servers.append(server)
        for server in self._servers:
            await server.before_start()  # the hook app's: prewarm the pool, start the health check
        for server in self._servers:
            await server.after_start()  # the hook app's: ready

    def begin_draining(self) -> None:
        """What SIGTERM does first (the ``before_server_stop`` listeners), without closing the sockets:
        to look at the service while it drains."""
        self._run(self._before_stop())

    async def _before_stop(self) -> None:
        if not self._draining:
            self._draining = True
            for server in self._servers:
                await server.before_stop()

    async def _stop(self) -> None:
        await self._before_stop()
        for server in self._servers:
            server.close()
            await server.wait_closed()
        for server in self._servers:
            await server.after_stop()

    def stop(self) -> None:
        self.client.close()
        if self._loop.is_running():
            try:
                self._run(self._stop())
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=10)
                if not self._thread.is_alive():
                    self._loop.close()
