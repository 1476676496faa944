"""A person's groups, direct or nested, with the names the directory stores for them.

Groups are found by *searching for the groups that list the person* (``(member=<user DN>)`` under the
groups base), not by reading ``memberOf`` and then each group DN:

- one search answers for all of a person's direct groups, and returns each group's naming attribute with
  it, so names keep their case and commas (OpenLDAP's dynlist hands out normalised, lower-cased DNs) and
  there is no cap on how many DNs can be resolved;
- no overlay is needed on OpenLDAP (``memberOf`` needs ``memberof`` or ``dynlist``);
- the members of a group are never read, so a group of 100 000 members costs nothing more, and AD's
  ranged retrieval (``member;range=0-1499``, needed to *read* more than 1500 values) never arises.

Nested membership:

- Active Directory: one search with the in-chain matching rule, which the DC evaluates transitively
  (``(member:1.2.840.113556.1.4.1941:=<user DN>)``).
- Elsewhere: a breadth-first walk, one search per level for the groups that list any group of the level
  before (``(|(member=<dn1>)(member=<dn2>)...)``, batched), cycle-safe (a group seen once is never walked
  again), bounded by ``max_depth`` levels and ``max_groups`` groups. Past a bound, the answer says it is
  incomplete rather than failing. Every search first reports the ``groups`` stage, which is where a
  lookup past its deadline stops.

Every DN put in a filter is escaped once, here, per RFC 4515 (``cn=R&D\\2C Europe`` -> ``cn=R&D\\5c2C
Europe``): a DN is attacker-influenced text as much as a login is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import ldap3

from service.directory.config import GroupSearch
from service.directory.connections import Connection, ConnectionPool, filter_value, run_search
from service.directory.entry import Groups
from service.directory.errors import DirectoryError, StageReporter

#: Active Directory's LDAP_MATCHING_RULE_IN_CHAIN: the DC follows the ``member`` links transitively.
IN_CHAIN_RULE = "1.2.840.113556.1.4.1941"
#: Active Directory's LDAP_MATCHING_RULE_BIT_AND on userAccountControl's ACCOUNTDISABLE bit.
DISABLED_ACCOUNT = "(userAccountControl:1.2.840.113556.1.4.803:=2)"
#: DNs per OR filter of the nested walk: a level of 60 groups is one search; a level of thousands a few,
#: each filter well below the request size directories accept (AD: MaxReceiveBuffer, 10 MB).
BATCH = 200

Dialect = Literal["openldap", "active_directory"]
_SCOPES = {"subtree": ldap3.SUBTREE, "one": ldap3.LEVEL}
_LDAP_SUCCESS, _LDAP_SIZE_LIMIT, _LDAP_NO_SUCH_OBJECT = 0, 4, 32


def in_chain_filter(member_attribute: str, user_dn: str) -> str:
    """``(member:1.2.840.113556.1.4.1941:=<escaped user DN>)``: every group the user is in, at any depth."""
    return f"({member_attribute}:{IN_CHAIN_RULE}:={filter_value(user_dn)})"


def member_filter(member_attribute: str, dns: Sequence[str]) -> str:
    """``(member=<dn>)`` for one DN, ``(|(member=<dn1>)(member=<dn2>)...)`` for several."""
    terms = "".join(f"({member_attribute}={filter_value(dn)})" for dn in dns)
    return terms if len(dns) == 1 else f"(|{terms})"


@dataclass(frozen=True, slots=True)
class _Found:
    dn: str
    name: str | None


class GroupReader:
    """Reads one person's groups on a connection the lookup already holds."""

    def __init__(self, config: GroupSearch, dialect: Dialect, pool: ConnectionPool) -> None:
        self._config = config
        self._dialect = dialect
        self._pool = pool
        self._name = config.name_attribute.lower()

    def read(self, connection: Connection, user_dn: str, *, nested: bool, on_stage: StageReporter) -> Groups:
        if not nested:
            return self._walk(connection, user_dn, 1, on_stage)
        if self._dialect == "active_directory":
            on_stage("groups")
            found, cut = self._search(connection, in_chain_filter(self._config.member_attribute, user_dn))
            if len(found) > self._config.max_groups:
                return _groups(_first(found, self._config.max_groups), complete=False)
            return _groups(found, complete=not cut)
        return self._walk(connection, user_dn, self._config.max_depth, on_stage)

    def _walk(self, connection: Connection, user_dn: str, depth: int, on_stage: StageReporter) -> Groups:
        limit = self._config.max_groups
        seen: dict[str, _Found] = {}  # lower-cased DN -> group: what makes the walk cycle-safe
        frontier = [user_dn]
        for _ in range(depth):
            level: dict[str, _Found] = {}
            for batch in _batches(frontier):
                on_stage("groups")
                found, cut = self._search(connection, self._member_filter(batch))
                level.update((group.dn.lower(), group) for group in found if group.dn.lower() not in seen)
                if cut:
                    return _groups(_first([*seen.values(), *level.values()], limit), complete=False)
            seen.update(level)
            if len(seen) > limit:
                return _groups(_first(seen.values(), limit), complete=False)
            frontier = [group.dn for group in level.values()]
            if not frontier:
                return _groups(seen.values(), complete=True)
        if depth == 1:
            return _groups(seen.values(), complete=True)  # direct groups were asked for: that is all
        return _groups(seen.values(), complete=not self._has_more(connection, frontier, seen, on_stage))

    def _has_more(
        self, connection: Connection, frontier: list[str], seen: dict[str, _Found], on_stage: StageReporter
    ) -> bool:
        """Whether the groups of the last level walked have parents not collected yet: only then did the
        depth bound cut something (a cycle back into the collected groups cuts nothing)."""
        for batch in _batches(frontier):
            on_stage("groups")
            found, cut = self._search(connection, self._member_filter(batch), len(seen) + 1, names=False)
            if cut or any(group.dn.lower() not in seen for group in found):
                return True
        return False

    def _member_filter(self, dns: Sequence[str]) -> str:
        return member_filter(self._config.member_attribute, dns)

    def _search(
        self, connection: Connection, condition: str, size_limit: int = 0, *, names: bool = True
    ) -> tuple[list[_Found], bool]:
        """The groups matching ``condition`` and whether a size limit cut the answer. Without
        ``size_limit``, only the server's own limit applies (OpenLDAP: 500, AD: MaxPageSize 1000): the
        answer is cut by ``max_groups`` here, in DN order, so the same groups are kept on every call."""
        search_filter = f"(&{self._config.filter}{condition})"
        with self._pool.operation("groups", connection.server):
            result, response = run_search(
                connection.ldap3_connection,
                self._config.base_dn,
                search_filter,
                search_scope=_SCOPES[self._config.scope],
                attributes=[self._config.name_attribute] if names else ["1.1"],
                size_limit=size_limit,
            )
            code = result.get("result")
            if code not in (_LDAP_SUCCESS, _LDAP_SIZE_LIMIT, _LDAP_NO_SUCH_OBJECT):
                raise DirectoryError("server_error", f"group search failed with LDAP result code {code}")
        found = [
            _Found(item["dn"], _name(item.get("raw_attributes", {}), self._name))
            for item in response or ()
            if item.get("type") == "searchResEntry"
        ]
        return found, code == _LDAP_SIZE_LIMIT


def _name(raw: Mapping[str, Sequence[bytes]], attribute: str) -> str | None:
    for key, values in raw.items():
        if key.lower() == attribute and values:
            return values[0].decode("utf-8", errors="replace")
    return None


def _batches(dns: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(dns), BATCH):
        yield dns[start : start + BATCH]


def _first(found: Iterable[_Found], limit: int) -> list[_Found]:
    """The first ``limit`` groups by DN: the same cut whichever order the server answered in."""
    return sorted(found, key=lambda group: group.dn.lower())[:limit]


def _groups(found: Iterable[_Found], *, complete: bool) -> Groups:
    """Names sorted and unique; a group without the naming attribute has no name to give and is left out."""
    return Groups(tuple(sorted({group.name for group in found if group.name})), complete)
