"""The seam between the hooks and whatever answers "who is this user": a query in, a lookup result out.

The ldap3 :class:`~service.directory.Directory` and the cache in :mod:`service.cache` both implement
:class:`UserDirectory`, so the cache wraps the directory, hooks depend on neither, and tests or future
backends plug in without subclassing. :class:`UserQuery` is frozen and hashable because it is the cache key.

Standard library only: the vocabulary of answers (:class:`PasswordCheck`, :class:`PasswordRejection`) lives here
too, so that whoever reads an answer needs neither ldap3 nor the module that produces it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol

from service.directory.entry import DirectoryEntry, Membership

#: Where an answer came from when a cache stands in front of the directory: ``hit`` (fresh entry),
#: ``negative_hit`` (fresh "no such user"), ``miss`` (asked the directory), ``stale`` (the directory
#: failed and an older entry was served instead).
CacheResult = Literal["hit", "miss", "stale", "negative_hit"]


@dataclass(frozen=True, slots=True)
class UserQuery:
    """Everything that decides the directory's answer for one hook call, and nothing else.

    The directory's match settings (base DN, filter, match attribute, how nested groups are searched:
    ``groups.nested_search``) are fixed per directory, and a cache wraps exactly one directory, so they are
    not repeated here: a configuration change restarts the service, and its caches with it.
    """

    #: Lower-cased (:func:`normalise`): the match attributes used for Okta logins (``uid``, ``mail``,
    #: ``sAMAccountName``, ``userPrincipalName``) compare case-insensitively in LDAP, so ``Alice@x`` and
    #: ``alice@x`` are one user and one cache entry. With ``compared``, the directory's search value
    #: (:meth:`UserDirectory.search_value`: with ``strip_domains``, the local part).
    identifier: str
    #: Attributes the hook's mapping reads from the user entry.
    attributes: frozenset[str]
    #: DN-valued attribute -> attributes read from the entries it points at, sorted (hashable).
    resolve: tuple[tuple[str, frozenset[str]], ...] = ()
    #: The group memberships read with the entry (``direct``, ``nested``): part of the key, so an entry
    #: read without the nested walk never answers a query that needs nested groups.
    groups: frozenset[Membership] = frozenset()
    #: ``identifier`` is the search value already (:meth:`with_value`): the cache keys on the query as it
    #: is and the directory escapes it as it is, so the value is computed once per request, by the
    #: hook. False for an identifier as Okta sent it (:meth:`of`, :meth:`with_identifier`): the first
    #: directory or cache it reaches computes the value (:func:`search_query`).
    compared: bool = False

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

    def with_value(self, value: str) -> UserQuery:
        """The same attributes and groups for ``value``, what :meth:`UserDirectory.search_value` gave."""
        return UserQuery(value, self.attributes, self.resolve, self.groups, compared=True)


def normalise(identifier: str) -> str:
    """Lower-cased: the match attributes used for Okta logins compare case-insensitively, so ``Alice@x``
    and ``alice@x`` are one user and one cache entry. Nothing else is rewritten (no stripping): an
    identifier with a space anywhere is refused before any lookup (``service.okta.identifiers``), and
    any other caller's value reaches the directory as given."""
    return identifier.lower()


def search_query(query: UserQuery, search_value: Callable[[str], str | None]) -> UserQuery | None:
    """``query`` with the value the directory compares: as it is when the value was computed already,
    else with ``search_value`` of its identifier; None when that can match nobody."""
    if query.compared:
        return query
    value = search_value(query.identifier)
    return None if value is None else query.with_value(value)


@dataclass(frozen=True, slots=True)
class LookupResult:
    """The directory's answer (the entry, or None for "no such user") and how it was obtained."""

    entry: DirectoryEntry | None
    #: None when no cache stands in front of the directory.
    cache: CacheResult | None = None
    #: For ``stale``: the failure kind that made the directory unable to answer (``timeout``,
    #: ``deadline``, ``connect``...), for Okta's debugContext and the log line.
    error_kind: str | None = None


#: Spaces after an RDN separator: ``uid=ann, ou=people`` as an admin typed it into a group's ``member``.
_SPACED_SEPARATOR = re.compile(r"(?<!\\)([,;+])\s+")
#: Hex escapes (``\2C``, ``\C3\89``): decoded, and the specials among them escaped as ``\,``.
_HEX_ESCAPES = re.compile(r"(?:\\[0-9A-Fa-f]{2})+")
_SPECIALS = frozenset(',+"\\<>;=')


def _unhex(match: re.Match[str]) -> str:
    text = bytes.fromhex(match.group().replace("\\", "")).decode("utf-8", errors="replace")
    return "".join("\\" + char if char in _SPECIALS else char for char in text)


def dn_key(dn: str) -> str:
    r"""``dn`` as the change feed and the cache compare it: lower-cased (attribute types and the usual
    values compare case-insensitively), escapes in one form (``\2C`` and ``\,``, ``\C3\89`` and
    ``é``, ``\ `` and a space), no spaces after separators. The same entry, as the server returns it and
    as a group's ``member`` value or a ``memberOf`` value spells it, gets one key."""
    if "\\" in dn:
        dn = _HEX_ESCAPES.sub(_unhex, dn).replace("\\ ", " ").replace("\\#", "#")
    key = dn.lower()
    if ", " in key or "; " in key or "+ " in key or ",\t" in key:  # rare: most DNs take no regex at all
        key = _SPACED_SEPARATOR.sub(r"\1", key)
    return key


@dataclass(frozen=True, slots=True)
class Changes:
    """What one poll of the directory's change feed found (:mod:`service.directory.changes`), in the
    terms a cache of entries can act on: DNs lower-cased, group names lower-cased. Nothing here says
    what changed in an entry, only that it did. DNs are :func:`dn_key` s.

    A changed entry affects whoever *is* it (``entries``), whoever refers to it (a ``memberOf`` group
    DN, a resolved ``manager``) and, when it is a group, whoever lists it by name (``names``). A group
    whose members changed may have gained any of them (``members``): they are the people added to it.
    """

    #: Entries changed, created, moved (their new DN) or deleted since the last poll.
    entries: frozenset[str] = frozenset()
    #: Of ``entries``, those seen deleted (Active Directory's tombstones; OpenLDAP's entries that no
    #: longer exist).
    deleted: frozenset[str] = frozenset()
    #: DNs a changed group lists as members: each may have just been added to it.
    members: frozenset[str] = frozenset()
    #: Names of the changed entries (a group's ``name_attribute``), and of the groups a changed group lists
    #: as members (from their RDN): whoever lists one of these groups may be in other groups now.
    names: frozenset[str] = frozenset()
    #: The search values (:meth:`UserDirectory.search_value`) of the changed or deleted entries' match
    #: attribute: whoever is looked up by one may now be another entry (a person moved or renamed keeps
    #: their login, not their DN), or someone (a new person, remembered as "no such user").
    identifiers: frozenset[str] = frozenset()
    #: The feed started over (first poll, another server, a poll it could not finish): what changed
    #: before is unknown, so nothing read before counts as vouched for by the feed.
    resync: bool = False


class PasswordRejection(StrEnum):
    """Why the directory refused a person's password: the metric's ``reason`` label."""

    INVALID_CREDENTIALS = "invalid_credentials"
    NOT_PERMITTED_NOW = "not_permitted_now"
    WORKSTATION = "workstation"
    PASSWORD_EXPIRED = "password_expired"
    ACCOUNT_DISABLED = "account_disabled"
    ACCOUNT_EXPIRED = "account_expired"
    MUST_CHANGE_PASSWORD = "must_change_password"
    LOCKED = "locked"


@dataclass(frozen=True, slots=True)
class PasswordCheck:
    """The result of :meth:`CredentialDirectory.verify_password`: whether the user exists, and when it
    does, None for the right password or why the bind was refused."""

    found: bool
    rejection: PasswordRejection | None = None

    @property
    def verified(self) -> bool:
        return self.found and self.rejection is None


class UserDirectory(Protocol):
    def search_value(self, identifier: str) -> str | None:
        """What the directory compares with its match attribute for ``identifier`` (lower-cased;
        its local part with ``user_search.strip_domains``); None when it can match nobody,
        so callers need not ask. Asked once per request: :meth:`UserQuery.with_value` carries it on."""
        ...

    async def find_user(self, query: UserQuery, deadline: float, start_by: float | None = None) -> LookupResult:
        """The one entry matching ``query`` (none when its identifier can match nobody), within
        ``deadline`` (a :func:`time.monotonic` instant).

        ``start_by`` is the latest instant a directory lookup may start and still finish in time: past
        it (counting the wait for a worker thread), the directory raises ``DeadlineExceeded("queue")`` at
        once instead of queueing (load shedding); what needs no lookup (a cached entry) is still answered.

        Raises :class:`~service.directory.DeadlineExceeded` when the deadline passes and
        :class:`~service.directory.DirectoryError` when the directory fails or is ambiguous.
        """
        ...


class CredentialDirectory(Protocol):
    """What the password import hook needs: the directory itself, never a cache in front of it."""

    async def find_user(self, query: UserQuery, deadline: float, start_by: float | None = None) -> LookupResult:
        """As :meth:`UserDirectory.find_user` (the search before a bind, when several directories may
        hold the person)."""
        ...

    async def check_password(self, dn: str, password: str, deadline: float) -> PasswordRejection | None:
        """Bind as ``dn`` (found by :meth:`find_user`) with ``password`` on a connection of its own: None
        when the directory accepts it, else why not. Never retried."""
        ...

    def search_value(self, identifier: str) -> str | None:
        """As :meth:`UserDirectory.search_value`."""
        ...

    async def verify_password(self, query: UserQuery, password: str, deadline: float) -> PasswordCheck:
        """Find the user ``query`` names with the service account, then bind as them with ``password``
        on a connection of its own. Raises like :meth:`UserDirectory.find_user`."""
        ...
