"""Finding one person in LDAP: the user filter (the value escaped once, here), the user search, the
reads of the entries its DN-valued attributes point at, and the person's groups.

Blocking ldap3 calls on one pooled connection, run in a worker thread (:mod:`service.directory.worker`);
each operation first reports its stage, which is where a lookup nobody waits for any more stops. The
query arrives whole, with the value the directory compares already computed (``query.compared``): it is
escaped here and never computed again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import ldap3

from service.directory.config import DirectoryConfig
from service.directory.connections import Connection, ConnectionPool, filter_value, run_search
from service.directory.entry import DirectoryEntry, Groups, Membership
from service.directory.errors import Abandoned, DirectoryError, StageReporter
from service.directory.groups import DISABLED_ACCOUNT, GroupReader
from service.directory.protocol import UserQuery

#: DN-valued attributes can be long (``memberOf`` of a busy user); each resolved DN is a round trip.
MAX_RESOLVED_VALUES = 25
#: Attributes whose values are bytes, never text: always hex, even when the bytes happen to be valid UTF-8
#: (one objectGUID in a few thousand is), so that the ``guid`` and ``sid`` transforms always get hex.
BINARY_ATTRIBUTES = frozenset(
    {"objectguid", "objectsid", "msexchmailboxguid", "ms-ds-consistencyguid", "sidhistory", "tokengroups"}
)

_SCOPES = {"subtree": ldap3.SUBTREE, "one": ldap3.LEVEL}
_LDAP_SUCCESS, _LDAP_SIZE_LIMIT, _LDAP_NO_SUCH_OBJECT = 0, 4, 32

Linked = dict[str, dict[str, tuple[str, ...]]]


class UserLookup:
    """The user search of one directory configuration, on connections lent by ``pool``."""

    def __init__(self, config: DirectoryConfig, pool: ConnectionPool) -> None:
        self._search = config.user_search
        self._pool = pool
        filter_template = config.user_search.filter
        if config.dialect == "active_directory" and not config.user_search.include_disabled:
            filter_template += f"(!{DISABLED_ACCOUNT})"
        self._filter_prefix = f"(&{filter_template}({config.user_search.match_attribute}="
        self._groups = GroupReader(config.groups, config.dialect, pool) if config.groups else None

    def forget_group_names(self) -> int:
        """Forget the remembered names of tokenGroups SIDs; how many there were."""
        return self._groups.sid_names.clear() if self._groups else 0

    def user_filter(self, value: str) -> str | None:
        """The filter that finds the person whose match attribute equals ``value`` (a search value): the
        configured conditions (on Active Directory, also "not disabled") and the escaped value. None
        when ``value`` holds a NUL."""
        if "\x00" in value:
            # slapd stops comparing at an escaped NUL: "alice@example.com<NUL>x" would be Alice. The
            # hooks refuse such identifiers before any lookup; whoever calls, none is ever sent.
            return None
        # RFC 4515 escaping, applied exactly once, here and nowhere else.
        return self._filter_prefix + filter_value(value) + "))"

    def find(self, query: UserQuery, on_stage: StageReporter) -> DirectoryEntry | None:
        """The one entry whose match attribute equals ``query.identifier``, with what ``query`` asks for
        (attributes, DN resolutions, groups); None when there is none. On a pooled connection, tried
        once more on a fresh one when the pooled one had died while idle.

        Raises :class:`DirectoryError` when the directory fails or several entries match (``ambiguous``:
        a guess could hand one person's attributes to another)."""
        if not query.compared:  # a bug: the value would go out without strip_domains
            raise ValueError("the query's search value has not been computed (protocol.search_query)")
        return self._attempt(query, on_stage, retry=True)

    def _attempt(self, query: UserQuery, on_stage: StageReporter, retry: bool) -> DirectoryEntry | None:
        connection = self._pool.acquire(on_stage)
        try:
            entry = self._find_on(connection, query, on_stage)
        except DirectoryError as error:
            self._pool.release(connection, reusable=False)
            if retry and error.kind == "session_lost" and connection.reused:
                # The pooled connection died while idle (server restart, idle timeout): its siblings
                # are suspect too. One more try, on a fresh connection.
                self._pool.discard_idle(connection.server)
                return self._attempt(query, on_stage, retry=False)
            raise
        except Abandoned:
            self._pool.release(connection, reusable=True)  # stopped between two operations: still sound
            raise
        except BaseException:
            self._pool.release(connection, reusable=False)
            raise
        self._pool.release(connection, reusable=True)
        return entry

    def _find_on(self, connection: Connection, query: UserQuery, on_stage: StageReporter) -> DirectoryEntry | None:
        search_filter = self.user_filter(query.identifier)
        if search_filter is None:
            return None  # a NUL: nobody (the hooks refuse it before calling)
        on_stage("search")
        found = self._search_user(connection, search_filter, query.attributes)
        if found is None:
            return None
        dn: str = found["dn"]
        values = _decode(found.get("raw_attributes", {}))
        linked = self._resolve(connection, values, query.resolve, on_stage)
        return DirectoryEntry(dn, values, linked, self._memberships(connection, dn, query.groups, on_stage))

    def _search_user(
        self, connection: Connection, search_filter: str, attributes: frozenset[str]
    ) -> dict[str, Any] | None:
        """The one entry the filter matches (ldap3's item), None for none; ``ambiguous`` for several."""
        with self._pool.operation("search", connection.server):
            result, response = run_search(
                connection.ldap3_connection,
                self._search.base_dn,
                search_filter,
                search_scope=_SCOPES[self._search.scope],
                attributes=sorted(attributes) or ["1.1"],
                size_limit=2,  # two are enough to know it is not exactly one
            )
            code = result.get("result")
            entries = [item for item in response or () if item.get("type") == "searchResEntry"]
            if code == _LDAP_SIZE_LIMIT or len(entries) > 1:
                raise DirectoryError("ambiguous", "several directory entries match the user")
            if code not in (_LDAP_SUCCESS, _LDAP_NO_SUCH_OBJECT):
                raise DirectoryError("server_error", f"search failed with LDAP result code {code}")
        return entries[0] if entries else None

    def _resolve(
        self,
        connection: Connection,
        values: Mapping[str, tuple[str, ...]],
        resolve: tuple[tuple[str, frozenset[str]], ...],
        on_stage: StageReporter,
    ) -> Linked:
        """For each DN-valued attribute asked for, the attributes of the entries its values point at."""
        linked: Linked = {}
        for attribute, targets in resolve:
            for dn in values.get(attribute, ())[:MAX_RESOLVED_VALUES]:
                if dn not in linked:
                    on_stage("resolve")
                    linked[dn] = self._read(connection, dn, targets)
        return linked

    def _memberships(
        self, connection: Connection, dn: str, groups: frozenset[Membership], on_stage: StageReporter
    ) -> dict[Membership, Groups]:
        memberships: dict[Membership, Groups] = {}
        if groups:
            if self._groups is None:
                raise DirectoryError("other", "group membership asked for without directory.groups")
            for membership in sorted(groups):
                memberships[membership] = self._groups.read(
                    connection, dn, nested=membership == "nested", on_stage=on_stage
                )
        return memberships

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


def _decode(raw: Mapping[str, Sequence[bytes]]) -> dict[str, tuple[str, ...]]:
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
