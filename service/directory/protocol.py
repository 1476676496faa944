"""The seam between the hooks and whatever answers "who is this user": a query in, a lookup result out.

The ldap3 :class:`~service.directory.Directory` and the cache in :mod:`service.cache` both implement
:class:`UserDirectory`, so the cache wraps the directory, hooks depend on neither, and tests or future
backends plug in without subclassing. :class:`UserQuery` is frozen and hashable because it is the cache key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from service.directory.entry import DirectoryEntry, Membership

if TYPE_CHECKING:
    from service.directory.client import PasswordCheck

#: Where an answer came from when a cache stands in front of the directory: ``hit`` (fresh entry),
#: ``negative_hit`` (fresh "no such user"), ``miss`` (asked the directory), ``stale`` (the directory
#: failed and an older entry was served instead).
CacheResult = Literal["hit", "miss", "stale", "negative_hit"]


@dataclass(frozen=True, slots=True)
class UserQuery:
    """Everything that decides the directory's answer for one hook call, and nothing else.

    The directory's match settings (base DN, filter, match attribute) are fixed per directory, and a
    cache wraps exactly one directory, so they are not repeated here.
    """

    #: Stripped and lower-cased: the match attributes used for Okta logins (``uid``, ``mail``,
    #: ``sAMAccountName``, ``userPrincipalName``) compare case-insensitively in LDAP, so ``Alice@x`` and
    #: ``alice@x`` are one user and one cache entry.
    identifier: str
    #: Attributes the hook's mapping reads from the user entry.
    attributes: frozenset[str]
    #: DN-valued attribute -> attributes read from the entries it points at, sorted (hashable).
    resolve: tuple[tuple[str, frozenset[str]], ...] = ()
    #: The group memberships read with the entry (``direct``, ``nested``): part of the key, so an entry
    #: read without the nested walk never answers a query that needs nested groups.
    groups: frozenset[Membership] = frozenset()

    @classmethod
    def of(
        cls,
        identifier: str,
        attributes: frozenset[str],
        resolve: Mapping[str, frozenset[str]],
        groups: frozenset[Membership] = frozenset(),
    ) -> UserQuery:
        return cls(normalise(identifier), attributes, tuple(sorted(resolve.items())), groups)

    def with_identifier(self, identifier: str) -> UserQuery:
        """The same attributes and groups for another user: hooks build their template once."""
        return UserQuery(normalise(identifier), self.attributes, self.resolve, self.groups)


def normalise(identifier: str) -> str:
    return identifier.strip().lower()


@dataclass(frozen=True, slots=True)
class LookupResult:
    """The directory's answer (the entry, or None for "no such user") and how it was obtained."""

    entry: DirectoryEntry | None
    #: None when no cache stands in front of the directory.
    cache: CacheResult | None = None
    #: For ``stale``: the failure kind that made the directory unable to answer (``timeout``,
    #: ``deadline``, ``connect``...), for Okta's debugContext and the log line.
    error_kind: str | None = None


class UserDirectory(Protocol):
    def search_value(self, identifier: str) -> str | None:
        """What the directory compares with its match attribute for ``identifier`` (its local part with
        ``user_search.strip_domains``); None when it can match nobody, so callers need not ask."""
        ...

    async def find_user(self, query: UserQuery, deadline: float, start_by: float | None = None) -> LookupResult:
        """The one entry matching ``query``, within ``deadline`` (a :func:`time.monotonic` instant).

        ``start_by`` is the latest instant a directory lookup may start and still finish in time: past
        it (counting the wait for a worker thread), the directory raises ``DeadlineExceeded("queue")`` at
        once instead of queueing (load shedding); what needs no lookup (a cached entry) is still answered.

        Raises :class:`~service.directory.DeadlineExceeded` when the deadline passes and
        :class:`~service.directory.DirectoryError` when the directory fails or is ambiguous.
        """
        ...


class CredentialDirectory(Protocol):
    """What the password import hook needs: the directory itself, never a cache in front of it."""

    def search_value(self, identifier: str) -> str | None:
        """As :meth:`UserDirectory.search_value`."""
        ...

    async def verify_password(self, identifier: str, password: str, deadline: float) -> PasswordCheck:
        """Find the user with the service account, then bind as them with ``password`` on a connection
        of its own. Raises like :meth:`UserDirectory.find_user`."""
        ...
