"""The directory as the hooks see it: ``await directory.find_user(query, deadline)``, the ldap3
implementation of :class:`~service.directory.protocol.UserDirectory`.

ldap3 is blocking, so each lookup runs in one worker thread of a bounded executor, on one pooled
connection: the user search and the DN resolutions that follow it. The event loop only waits, up to the
deadline; a lookup still running after it is abandoned (its thread finishes on its own socket timeout).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import ldap3

from service.directory.config import DirectoryConfig
from service.directory.connections import Connection, ConnectionPool, filter_value, run_search
from service.directory.credentials import BindRefusal, CredentialChecker
from service.directory.entry import DirectoryEntry, Groups, Membership
from service.directory.errors import DeadlineExceeded, DirectoryError, Stage
from service.directory.groups import DISABLED_ACCOUNT, GroupReader
from service.directory.observer import DirectoryObserver, NullObserver
from service.directory.protocol import LookupResult, UserQuery

#: DN-valued attributes can be long (``memberOf`` of a busy user); each resolved DN is a round trip.
MAX_RESOLVED_VALUES = 25

_SCOPES = {"subtree": ldap3.SUBTREE, "one": ldap3.LEVEL}
_LDAP_SUCCESS, _LDAP_SIZE_LIMIT, _LDAP_NO_SUCH_OBJECT = 0, 4, 32
#: Weight of the latest lookup in the moving average of lookup time: about the last ten lookups count.
_AVERAGE_WEIGHT = 0.1


@dataclass(slots=True)
class _Progress:
    """Shared between the waiting coroutine and the worker thread: what the lookup is doing now."""

    stage: Stage = "pool_wait"
    started: bool = False
    abandoned: bool = False


class _Abandoned(Exception):
    """The caller stopped waiting; the thread stops at the next step."""


#: What a worker returns when the caller stopped waiting before or during the work.
_ABANDONED = object()
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PasswordCheck:
    """The result of :meth:`Directory.verify_password`: whether the user exists, and when it does,
    None for the right password or why the bind was refused."""

    found: bool
    refusal: BindRefusal | None = None

    @property
    def verified(self) -> bool:
        return self.found and self.refusal is None


class Directory:
    def __init__(self, config: DirectoryConfig, password: str = "", observer: DirectoryObserver | None = None) -> None:
        self._config = config
        self._observer = observer or NullObserver()
        self._pool = ConnectionPool(config, password, self._observer)
        self._executor = ThreadPoolExecutor(config.pool_size, thread_name_prefix="ldap")
        # Health checks get their own thread so that a saturated pool cannot starve them.
        self._checker = ThreadPoolExecutor(1, thread_name_prefix="ldap-health")
        self._progress_lock = threading.Lock()
        #: Moving average of the seconds a lookup holds a worker thread (0 until one has run).
        self._lookup_seconds = 0.0
        filter_template = config.user_search.filter
        if config.dialect == "active_directory" and not config.user_search.include_disabled:
            filter_template += f"(!{DISABLED_ACCOUNT})"
        self._filter_prefix = f"(&{filter_template}({config.user_search.match_attribute}="
        self._groups = GroupReader(config.groups, config.dialect, self._pool) if config.groups else None
        self._credentials = CredentialChecker(config, self._pool)

    def search_value(self, identifier: str) -> str | None:
        """What the user search compares for ``identifier``; None when it can match nobody (a login
        outside ``user_search.strip_domains``), so the caller need not ask the directory."""
        return self._config.user_search.search_value(identifier)

    def queue_wait(self) -> float:
        """Seconds a lookup asked for now would wait for a worker thread: the lookups already waiting,
        ``pool_size`` at a time, each taking the recent average. A caller whose time left cannot cover
        this wait and a lookup answers at once instead of joining a queue that cannot serve it in time
        (and that would only delay the requests behind it)."""
        return self._pool.waiting * self._lookup_seconds / self._config.pool_size

    def pool_state(self) -> tuple[int, int, int]:
        """Connections open, connections lent out, lookups waiting for a worker thread."""
        return self._pool.state()

    @property
    def servers(self) -> list[str]:
        return [server.name for server in self._pool.servers]

    async def find_user(self, query: UserQuery, deadline: float, start_by: float | None = None) -> LookupResult:
        """The one entry whose match attribute equals ``query.identifier`` (its local part with
        ``strip_domains``); entry None when there is none. ``query.groups`` says which memberships to
        read with it (``direct``, ``nested``); it needs ``directory.groups``.

        ``deadline`` is a :func:`time.monotonic` instant. Raises :class:`DeadlineExceeded` when it passes
        and :class:`DirectoryError` when the directory fails or several entries match (``ambiguous``: a
        guess could hand one person's attributes to another).
        """
        if start_by is not None and time.monotonic() + self.queue_wait() > start_by:
            # Queued too long behind other requests (overload), or too many lookups already waiting for
            # a worker thread: this one could not finish in time, and starting it would only delay the
            # requests queued behind it. Nothing was asked of the directory.
            raise DeadlineExceeded("queue")
        identifier, attributes, resolve, groups = query.identifier, query.attributes, dict(query.resolve), query.groups

        def work(on_stage: Callable[[Stage], None]) -> DirectoryEntry | None:
            return self._attempt(identifier, attributes, resolve, groups, on_stage, retry=True)

        return LookupResult(await self._in_thread(work, deadline))

    async def verify_password(self, identifier: str, password: str, deadline: float) -> PasswordCheck:
        """Find the one entry for ``identifier`` with the service account (never through a cache: a
        credential check must see the directory as it is now), then bind as it with ``password`` on a
        connection of its own. No retry of the bind. Raises like :meth:`find_user`; ``ambiguous`` when
        several entries match."""

        def work(on_stage: Callable[[Stage], None]) -> PasswordCheck:
            entry = self._attempt(identifier, frozenset(), {}, frozenset(), on_stage, retry=True)
            if entry is None:
                return PasswordCheck(found=False)
            return PasswordCheck(found=True, refusal=self._credentials.check(entry.dn, password, on_stage))

        return await self._in_thread(work, deadline)

    async def _in_thread(self, work: Callable[[Callable[[Stage], None]], T], deadline: float) -> T:
        """Run blocking ``work(on_stage)`` in a worker thread, waiting up to ``deadline``
        (:class:`DeadlineExceeded` names the stage it had reached)."""
        progress = _Progress()
        self._pool.adjust_waiting(+1)
        context = contextvars.copy_context()  # keeps the trace and log context in the thread
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, context.run, self._run_work, work, deadline, progress)
        try:
            result = await asyncio.wait_for(future, timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            progress.abandoned = True
            raise DeadlineExceeded(progress.stage) from None
        except asyncio.CancelledError:  # the client went away: the thread stops at its next step
            progress.abandoned = True
            raise
        finally:
            self._started(progress)
        if result is _ABANDONED:
            raise DeadlineExceeded(progress.stage)
        return cast(T, result)

    def lookup(
        self,
        identifier: str,
        attributes: frozenset[str],
        resolve: Mapping[str, frozenset[str]],
        groups: frozenset[Membership] = frozenset(),
    ) -> DirectoryEntry | None:
        """Blocking lookup with no deadline, for ``check-config --probe``."""
        return self._lookup(identifier, attributes, resolve, groups, float("inf"), _Progress(started=True))

    def user_filter(self, identifier: str) -> str | None:
        """The filter that finds the user Okta names: the configured conditions (on Active Directory,
        also "not disabled"), and the match attribute equal to ``identifier`` (its local part with
        ``strip_domains``). None when the identifier is in none of the company's domains."""
        value = self._config.user_search.search_value(identifier)
        if value is None or "\x00" in value:
            # slapd stops comparing at an escaped NUL: "alice@example.com<NUL>x" would be Alice. The
            # hooks refuse such identifiers before any lookup; whoever calls, none is ever sent.
            return None
        # RFC 4515 escaping, applied exactly once, here and nowhere else.
        return self._filter_prefix + filter_value(value) + "))"

    async def start_background(self) -> asyncio.Task[None]:
        """Prewarm the pool and start checking every server periodically."""
        loop = asyncio.get_running_loop()
        loop.run_in_executor(self._checker, self._guarded, "prewarm", self._pool.prewarm)
        return asyncio.create_task(self._check_forever(), name="ldap-health-check")

    def _guarded(self, task: str, work: Callable[[], object]) -> None:
        """Run background ``work``; a bug in it is reported (with its traceback) rather than lost in a
        future nobody reads."""
        try:
            work()
        except Exception as error:
            self._observer.background_failed(task, error)

    async def check_servers(self) -> dict[str, bool]:
        loop = asyncio.get_running_loop()
        results = {}
        for server in self._pool.servers:
            up = await loop.run_in_executor(self._checker, self._pool.check, server)
            self._observer.server_up(server.name, up)
            results[server.name] = up
        return results

    def probe_servers(self) -> dict[str, DirectoryError | None]:
        """Blocking: bind once to every server and say why each failed (None: bind ok), for
        ``check-config --probe``. Server health is left untouched, so a lookup that follows tries
        every server rather than reporting a cooldown the probe itself caused."""
        return {server.name: self._pool.try_bind(server) for server in self._pool.servers}

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._checker.shutdown(wait=False, cancel_futures=True)
        self._pool.close()

    async def _check_forever(self) -> None:
        """Check every server, for ever: a bug in one round is reported and the next round still runs
        (a dead loop would freeze ``okta_hook_ldap_up`` and keep failed servers in cooldown)."""
        while True:
            try:
                await self.check_servers()
            except Exception as error:
                self._observer.background_failed("health_check", error)
            await asyncio.sleep(self._config.health_check_interval_seconds)

    def _started(self, progress: _Progress) -> None:
        """Count the lookup out of the waiting queue exactly once, whichever side gets here first."""
        with self._progress_lock:
            if progress.started:
                return
            progress.started = True
        self._pool.adjust_waiting(-1)

    # -- in the worker thread ------------------------------------------------------------------------

    def _lookup(
        self,
        identifier: str,
        attributes: frozenset[str],
        resolve: Mapping[str, frozenset[str]],
        groups: frozenset[Membership],
        deadline: float,
        progress: _Progress,
    ) -> DirectoryEntry | None:
        def work(on_stage: Callable[[Stage], None]) -> DirectoryEntry | None:
            return self._attempt(identifier, attributes, resolve, groups, on_stage, retry=True)

        result = self._run_work(work, deadline, progress)
        return None if result is _ABANDONED else cast(DirectoryEntry | None, result)

    def _run_work(self, work: Callable[[Callable[[Stage], None]], T], deadline: float, progress: _Progress) -> object:
        self._started(progress)
        if progress.abandoned or time.monotonic() >= deadline:
            return _ABANDONED  # nobody is waiting for the answer any more

        def on_stage(stage: Stage) -> None:
            if progress.abandoned:
                raise _Abandoned
            progress.stage = stage

        began = time.monotonic()
        try:
            return work(on_stage)
        except _Abandoned:
            return _ABANDONED
        finally:
            self._learn(time.monotonic() - began)

    def _learn(self, seconds: float) -> None:
        """Fold one lookup's time into the moving average that :meth:`queue_wait` uses (the first one is
        taken whole). A lost update between two threads only delays the average a little."""
        average = self._lookup_seconds
        self._lookup_seconds = seconds if average == 0 else average + _AVERAGE_WEIGHT * (seconds - average)

    def _attempt(
        self,
        identifier: str,
        attributes: frozenset[str],
        resolve: Mapping[str, frozenset[str]],
        groups: frozenset[Membership],
        on_stage: Any,
        retry: bool,
    ) -> DirectoryEntry | None:
        connection = self._pool.acquire(on_stage)
        try:
            entry = self._lookup_on(connection, identifier, attributes, resolve, groups, on_stage)
        except DirectoryError as error:
            self._pool.release(connection, reusable=False)
            if retry and error.kind == "session_lost" and connection.reused:
                # The pooled connection died while idle (server restart, idle timeout): its siblings
                # are suspect too. One more try, on a fresh connection.
                self._pool.discard_idle(connection.server)
                return self._attempt(identifier, attributes, resolve, groups, on_stage, retry=False)
            raise
        except _Abandoned:
            self._pool.release(connection, reusable=True)  # stopped between two operations: still sound
            raise
        except BaseException:
            self._pool.release(connection, reusable=False)
            raise
        self._pool.release(connection, reusable=True)
        return entry

    def _lookup_on(
        self,
        connection: Connection,
        identifier: str,
        attributes: frozenset[str],
        resolve: Mapping[str, frozenset[str]],
        groups: frozenset[Membership],
        on_stage: Any,
    ) -> DirectoryEntry | None:
        search = self._config.user_search
        search_filter = self.user_filter(identifier)
        if search_filter is None:
            return None  # outside the company's domains: nobody (the hooks refuse it before calling)
        on_stage("search")
        with self._pool.operation("search", connection.server):
            result, response = run_search(
                connection.ldap3_connection,
                search.base_dn,
                search_filter,
                search_scope=_SCOPES[search.scope],
                attributes=sorted(attributes) or ["1.1"],
                size_limit=2,  # two are enough to know it is not exactly one
            )
            code = result.get("result")
            entries = [item for item in response or () if item.get("type") == "searchResEntry"]
            if code == _LDAP_SIZE_LIMIT or len(entries) > 1:
                raise DirectoryError("ambiguous", "several directory entries match the user")
            if code not in (_LDAP_SUCCESS, _LDAP_NO_SUCH_OBJECT):
                raise DirectoryError("server_error", f"search failed with LDAP result code {code}")
        if not entries:
            return None
        found = entries[0]
        values = _decode(found.get("raw_attributes", {}))
        linked: dict[str, dict[str, tuple[str, ...]]] = {}
        for attribute, targets in resolve.items():
            for dn in values.get(attribute, ())[:MAX_RESOLVED_VALUES]:
                if dn not in linked:
                    on_stage("resolve")
                    linked[dn] = self._read(connection, dn, targets)
        memberships: dict[Membership, Groups] = {}
        if groups:
            if self._groups is None:
                raise DirectoryError("other", "group membership asked for without directory.groups")
            for membership in sorted(groups):
                memberships[membership] = self._groups.read(
                    connection, found["dn"], nested=membership == "nested", on_stage=on_stage
                )
        return DirectoryEntry(found["dn"], values, linked, memberships)

    def _read(self, connection: Connection, dn: str, attributes: frozenset[str]) -> dict[str, tuple[str, ...]]:
        """Attributes of the entry at ``dn``; empty when it does not exist (a dangling manager DN)."""
        with self._pool.operation("resolve", connection.server):
            result, response = run_search(
                connection.ldap3_connection,
                dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=sorted(attributes)
            )
            code = result.get("result")
            if code == _LDAP_NO_SUCH_OBJECT:
                return {}
            if code != _LDAP_SUCCESS:
                raise DirectoryError("server_error", f"DN resolution failed with LDAP result code {code}")
        for item in response or ():
            if item.get("type") == "searchResEntry":
                return _decode(item.get("raw_attributes", {}))
        return {}


#: Attributes whose values are bytes, never text: always hex, even when the bytes happen to be valid UTF-8
#: (one objectGUID in a few thousand is), so that the ``guid`` and ``sid`` transforms always get hex.
BINARY_ATTRIBUTES = frozenset(
    {"objectguid", "objectsid", "msexchmailboxguid", "ms-ds-consistencyguid", "sidhistory", "tokengroups"}
)


def _decode(raw: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """Text values from the wire: UTF-8 (LDAP's string encoding), hex for binary values (objectGUID)."""
    decoded = {}
    for name, values in raw.items():
        key = name.lower()
        texts = []
        for value in values:
            if key in BINARY_ATTRIBUTES or key.endswith(";binary"):
                texts.append(value.hex())
                continue
            try:
                texts.append(value.decode("utf-8"))
            except UnicodeDecodeError:
                texts.append(value.hex())
        decoded[key] = tuple(texts)
    return decoded
