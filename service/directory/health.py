"""Is each directory server there? The background health loop, and the probe of ``check-config --probe``.

The loop binds to every server every ``health_check_interval_seconds`` on a thread of its own (a pool
saturated by lookups cannot starve it): the result is ``okta_hook_ldap_up`` through the observer, and a
server that answers again leaves its failure cooldown. The probe binds once to each server and leaves
their health as it was.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from service.directory.connections import ConnectionPool
from service.directory.errors import DirectoryError
from service.directory.observer import DirectoryObserver


class HealthChecks:
    def __init__(self, pool: ConnectionPool, observer: DirectoryObserver, interval_seconds: float) -> None:
        self._pool = pool
        self._observer = observer
        self._interval = interval_seconds
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="ldap-health")
        #: Each server's last check: whether it accepted the bind.
        self.last_checked: dict[str, bool] = {}

    async def start(self) -> asyncio.Task[None]:
        """Prewarm the pool and start checking every server periodically."""
        loop = asyncio.get_running_loop()
        loop.run_in_executor(self._thread, self._guarded, "prewarm", self._pool.prewarm)
        return asyncio.create_task(self._check_forever(), name="ldap-health-check")

    async def check_servers(self) -> dict[str, bool]:
        """Bind to every server in turn; report each result to the observer (and the pool's cooldowns)."""
        loop = asyncio.get_running_loop()
        results = {}
        for server in self._pool.servers:
            up = await loop.run_in_executor(self._thread, self._pool.check, server)
            self._observer.server_up(server.name, up)
            results[server.name] = self.last_checked[server.name] = up
        return results

    def probe_servers(self) -> dict[str, DirectoryError | None]:
        """Blocking: bind once to every server and say why each failed (None: bind ok), for
        ``check-config --probe``. Server health is left untouched, so a lookup that follows tries
        every server rather than reporting a cooldown the probe itself caused."""
        return {server.name: self._pool.try_bind(server) for server in self._pool.servers}

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)

    def _guarded(self, task: str, work: Callable[[], object]) -> None:
        """Run background ``work``; a bug in it is reported (with its traceback) rather than lost in a
        future nobody reads."""
        try:
            work()
        except Exception as error:
            self._observer.background_failed(task, error)

    async def _check_forever(self) -> None:
        """Check every server, for ever: a bug in one round is reported and the next round still runs
        (a dead loop would freeze ``okta_hook_ldap_up`` and keep failed servers in cooldown)."""
        while True:
            try:
                await self.check_servers()
            except Exception as error:
                self._observer.background_failed("health_check", error)
            await asyncio.sleep(self._interval)
