"""The directory as the hooks see it: ``await directory.find_user(query, deadline)``, the ldap3
implementation of :class:`~service.directory.protocol.UserDirectory` and
:class:`~service.directory.protocol.CredentialDirectory`.

A thin facade over the pieces that do the work: the connection pool (:mod:`~service.directory.connections`), the thread
bridge that keeps blocking ldap3 calls off the event loop (:mod:`~service.directory.worker`), the user
search itself (:mod:`~service.directory.lookup`), the password bind (:mod:`~service.directory.credentials`),
the health checks (:mod:`~service.directory.health`) and the change feed
(:mod:`~service.directory.changes`). Each lookup runs in one worker thread, on one pooled connection;
the event loop only waits, up to the deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from service.directory.changes import ChangeFeed, ChangeSink
from service.directory.config import DirectoryConfig
from service.directory.connections import ConnectionPool
from service.directory.credentials import CredentialChecker
from service.directory.entry import DirectoryEntry, Membership
from service.directory.errors import DirectoryError, Stage, StageReporter
from service.directory.health import HealthChecks
from service.directory.lookup import UserLookup
from service.directory.observer import DirectoryObserver, NullObserver
from service.directory.protocol import LookupResult, PasswordCheck, PasswordRejection, UserQuery, search_query
from service.directory.service_account import ServiceAccount
from service.directory.worker import Worker
from service.secret_files import Credential, as_credential


class Directory:
    def __init__(
        self,
        config: DirectoryConfig,
        password: str | Credential = "",
        observer: DirectoryObserver | None = None,
        ca: Credential | None = None,
    ) -> None:
        """``password``: the service account's (a file's is read again when it changes; a string is
        fixed); ``ca``: the CA bundle of ``ca_file`` (made here from ``config.ca_file`` when not given)."""
        self._config = config
        observer = observer or NullObserver()
        self._account = ServiceAccount(config, as_credential(password, "directory.bind_password_env"), observer)
        self._pool = ConnectionPool(config, self._account, observer, ca)
        self._worker = Worker(config.pool_size, self._pool, name="ldap")
        self._users = UserLookup(config, self._pool)
        self._credentials = CredentialChecker(config, self._pool)
        self._health = HealthChecks(self._pool, observer, config.health_check_interval_seconds)
        self._changes = ChangeFeed(config, self._pool, observer) if config.change_feed else None

    def search_value(self, identifier: str) -> str | None:
        """What the user search compares for ``identifier`` (stripped, lower-cased, its local part with
        ``strip_domains``); None when it can match nobody (a login outside ``user_search.strip_domains``),
        so the caller need not ask the directory."""
        return self._config.user_search.search_value(identifier)

    def queue_wait(self) -> float:
        """Seconds a lookup asked for now would wait for a worker thread (:meth:`Worker.queue_wait`)."""
        return self._worker.queue_wait()

    def pool_state(self) -> tuple[int, int, int]:
        """Connections open, connections lent out, lookups waiting for a worker thread."""
        return self._pool.state()

    @property
    def servers(self) -> list[str]:
        return [server.name for server in self._pool.servers]

    async def find_user(self, query: UserQuery, deadline: float, start_by: float | None = None) -> LookupResult:
        """The one entry whose match attribute equals the query's search value; entry None when there
        is none. ``query.groups`` says which memberships to read with it (``direct``, ``nested``); it
        needs ``directory.groups``.

        ``deadline`` is a :func:`time.monotonic` instant. Raises :class:`DeadlineExceeded` when it passes
        (``queue`` at once when the lookup could not start by ``start_by``) and :class:`DirectoryError`
        when the directory fails or several entries match (``ambiguous``: a guess could hand one
        person's attributes to another).
        """
        searched = search_query(query, self.search_value)
        if searched is None:
            return LookupResult(None)  # outside the company's domains: nobody, nothing asked

        def work(on_stage: StageReporter) -> DirectoryEntry | None:
            return self._users.find(searched, on_stage)

        return LookupResult(await self._worker.run(work, deadline, start_by))

    async def verify_password(self, query: UserQuery, password: str, deadline: float) -> PasswordCheck:
        """Find the one entry ``query`` names with the service account (never through a cache: a
        credential check must see the directory as it is now), then bind as it with ``password`` on a
        connection of its own. No retry of the bind. Raises like :meth:`find_user`; ``ambiguous`` when
        several entries match."""
        searched = search_query(query, self.search_value)
        if searched is None:
            return PasswordCheck(found=False)

        def work(on_stage: StageReporter) -> PasswordCheck:
            entry = self._users.find(searched, on_stage)
            if entry is None:
                return PasswordCheck(found=False)
            return PasswordCheck(found=True, rejection=self._credentials.check(entry.dn, password, on_stage))

        return await self._worker.run(work, deadline)

    async def check_password(self, dn: str, password: str, deadline: float) -> PasswordRejection | None:
        """Bind as ``dn`` with ``password`` on a connection of its own (the entry was found by
        :meth:`find_user` already, when several directories had to be searched first): None when the
        directory accepts it. Never retried. Raises like :meth:`find_user`."""

        def work(on_stage: StageReporter) -> PasswordRejection | None:
            return self._credentials.check(dn, password, on_stage)

        return await self._worker.run(work, deadline)

    def lookup(
        self,
        identifier: str,
        attributes: frozenset[str],
        resolve: Mapping[str, frozenset[str]],
        groups: frozenset[Membership] = frozenset(),
    ) -> DirectoryEntry | None:
        """Blocking lookup with no deadline, in the calling thread, for ``check-config --probe``: the
        same query, search value and search as a hook's."""
        searched = search_query(UserQuery.of(identifier, attributes, resolve, groups), self.search_value)
        return None if searched is None else self._users.find(searched, _ignore_stage)

    def forget(self) -> int:
        """Forget what the directory remembers between lookups (the names of tokenGroups SIDs, with
        ``groups.nested_search: token_groups``), as the caches are emptied: on SIGHUP."""
        return self._users.forget_group_names()

    def user_filter(self, identifier: str) -> str | None:
        """The filter that finds the user Okta names as ``identifier``: the configured conditions (on
        Active Directory, also "not disabled"), and the match attribute equal to its search value. None
        when the identifier is in none of the company's domains, or holds a NUL."""
        value = self.search_value(identifier)
        return None if value is None else self._users.user_filter(value)

    async def start_background(self) -> asyncio.Task[None]:
        """Prewarm the pool and start checking every server periodically."""
        return await self._health.start()

    def follow_changes(self, sink: ChangeSink) -> asyncio.Task[None] | None:
        """Poll the directory for its changes every ``change_feed.poll_seconds``, telling ``sink``; None
        without ``directory.change_feed``."""
        if self._changes is None:
            return None
        return asyncio.create_task(self._changes.run(sink), name="ldap-change-feed")

    def server_health(self) -> dict[str, bool]:
        """Each server: whether it passed its last health check (False until its first, which starts
        with the service and ends within ``connect_timeout_seconds``). Read by ``/directories`` and
        ``okta_hook_directory_up``."""
        checked = self._health.last_checked
        return {server.name: checked.get(server.name, False) for server in self._pool.servers}

    def up(self) -> bool:
        """Whether any of its servers is (:meth:`server_health`)."""
        return any(self.server_health().values())

    async def check_servers(self) -> dict[str, bool]:
        return await self._health.check_servers()

    def probe_servers(self) -> dict[str, DirectoryError | None]:
        """Blocking: why a bind to each server fails (None: bind ok), for ``check-config --probe``."""
        return self._health.probe_servers()

    def forget_refused_password(self) -> bool:
        """Allow one more bind with a service account password the directory refused (SIGHUP: it was
        set in the directory after the file); whether one was refused."""
        return self._account.forget_refusal()

    def close(self) -> None:
        self._worker.close()
        self._health.close()
        if self._changes is not None:
            self._changes.close()
        self._pool.close()


def _ignore_stage(stage: Stage) -> None:
    """No deadline and nobody to abandon the lookup (the probe): stages are not recorded."""
