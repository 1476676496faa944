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

- Active Directory, ``nested_search: in_chain``: one search with the in-chain matching rule, which the
  DC evaluates transitively (``(member:1.2.840.113556.1.4.1941:=<user DN>)``). Every kind of group, but
  the DC follows every ``member`` link: hundreds of milliseconds once a group of thousands exists.
- Active Directory, ``nested_search: token_groups``: the user's ``tokenGroups`` (a constructed attribute,
  read with a base search at the user's DN: the SIDs of every security group the user is in, at any depth,
  and of the primary group), then the SIDs not seen lately resolved to names in one search under the
  groups base (``(&<filter>(|(objectSid=<sid1>)(objectSid=<sid2>)...))``, binary SIDs escaped byte by
  byte, 200 a filter). The names are remembered (:class:`SidNames`: ten minutes, 10,000 SIDs, emptied
  with the caches on SIGHUP): groups are rarely renamed, and a lookup then costs one base read.
- Elsewhere: a breadth-first walk, one search per level for the groups that list any group of the level
  before (``(|(member=<dn1>)(member=<dn2>)...)``, batched), cycle-safe (a group seen once is never walked
  again), bounded by ``max_depth`` levels and ``max_groups`` groups. Past a bound, the answer says it is
  incomplete rather than failing. Every search first reports the ``groups`` stage, which is where a
  lookup past its deadline stops.

Every DN put in a filter is escaped once, here, per RFC 4515 (``cn=R&D\\2C Europe`` -> ``cn=R&D\\5c2C
Europe``): a DN is attacker-influenced text as much as a login is.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

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
_T = TypeVar("_T")
_SCOPES = {"subtree": ldap3.SUBTREE, "one": ldap3.LEVEL}
_LDAP_SUCCESS, _LDAP_SIZE_LIMIT, _LDAP_NO_SUCH_OBJECT = 0, 4, 32


def in_chain_filter(member_attribute: str, user_dn: str) -> str:
    """``(member:1.2.840.113556.1.4.1941:=<escaped user DN>)``: every group the user is in, at any depth."""
    return f"({member_attribute}:{IN_CHAIN_RULE}:={filter_value(user_dn)})"


def member_filter(member_attribute: str, dns: Sequence[str]) -> str:
    """``(member=<dn>)`` for one DN, ``(|(member=<dn1>)(member=<dn2>)...)`` for several."""
    terms = "".join(f"({member_attribute}={filter_value(dn)})" for dn in dns)
    return terms if len(dns) == 1 else f"(|{terms})"


def binary_value(value: bytes) -> str:
    """A binary assertion value for a filter (RFC 4515): every byte as ``\\XX``."""
    return "".join(f"\\{byte:02x}" for byte in value)


def sid_filter(sids: Sequence[bytes]) -> str:
    """``(objectSid=<sid>)`` for one SID, ``(|(objectSid=<sid1>)(objectSid=<sid2>)...)`` for several."""
    terms = "".join(f"(objectSid={binary_value(sid)})" for sid in sids)
    return terms if len(sids) == 1 else f"(|{terms})"


@dataclass(frozen=True, slots=True)
class _Found:
    dn: str
    name: str | None
    #: objectSid, when asked for (the tokenGroups resolution).
    sid: bytes | None = None


class SidNames:
    """The groups that ``tokenGroups`` SIDs stand for, remembered for ``seconds``: SID -> the group found
    under the groups base with the groups filter, or None for a SID that is no such group (a builtin
    group outside the base, a group the filter leaves out), so that it is not searched for again either.
    At most ``max_entries`` SIDs, the least recently used forgotten first. Shared by the worker threads."""

    def __init__(self, seconds: float = 600.0, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self._seconds = seconds
        self._max = max_entries
        self._clock = clock
        self._known: OrderedDict[bytes, tuple[float, _Found | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sids: Iterable[bytes]) -> tuple[dict[bytes, _Found | None], list[bytes]]:
        """What is remembered of ``sids``, and the SIDs not remembered (or remembered too long ago)."""
        known: dict[bytes, _Found | None] = {}
        unknown: list[bytes] = []
        now = self._clock()
        with self._lock:
            for sid in sids:
                remembered = self._known.get(sid)
                if remembered is None or now - remembered[0] >= self._seconds:
                    unknown.append(sid)
                else:
                    self._known.move_to_end(sid)
                    known[sid] = remembered[1]
        return known, unknown

    def put(self, found: Mapping[bytes, _Found | None]) -> None:
        now = self._clock()
        with self._lock:
            for sid, group in found.items():
                self._known[sid] = (now, group)
                self._known.move_to_end(sid)
            while len(self._known) > self._max:
                self._known.popitem(last=False)

    def clear(self) -> int:
        """Forget every SID (SIGHUP, with the caches); how many there were."""
        with self._lock:
            count = len(self._known)
            self._known.clear()
        return count

    def __len__(self) -> int:
        return len(self._known)


class GroupReader:
    """Reads one person's groups on a connection the lookup already holds."""

    def __init__(self, config: GroupSearch, dialect: Dialect, pool: ConnectionPool) -> None:
        self._config = config
        self._dialect = dialect
        self._pool = pool
        self._name = config.name_attribute.lower()
        #: The names of tokenGroups SIDs (``nested_search: token_groups``).
        self.sid_names = SidNames()

    def read(self, connection: Connection, user_dn: str, *, nested: bool, on_stage: StageReporter) -> Groups:
        if not nested:
            return self._walk(connection, user_dn, 1, on_stage)
        if self._dialect == "active_directory":
            if self._config.nested_search == "token_groups":
                found, cut = self._token_groups(connection, user_dn, on_stage)
            else:
                on_stage("groups")
                found, cut = self._search(connection, in_chain_filter(self._config.member_attribute, user_dn))
            if len(found) > self._config.max_groups:
                return _groups(_first(found, self._config.max_groups), complete=False)
            return _groups(found, complete=not cut)
        return self._walk(connection, user_dn, self._config.max_depth, on_stage)

    def _token_groups(self, connection: Connection, user_dn: str, on_stage: StageReporter) -> tuple[list[_Found], bool]:
        """The groups of the user's ``tokenGroups`` that the groups base and filter hold: one base read,
        and a search for the SIDs not remembered, ``BATCH`` SIDs a filter."""
        on_stage("groups")
        sids = self._read_token_groups(connection, user_dn)
        known, unknown = self.sid_names.get(sids)
        cut = False
        for batch in _batches(unknown):
            on_stage("groups")
            found, batch_cut = self._search(connection, sid_filter(batch), sids=True)
            cut = cut or batch_cut
            by_sid = {group.sid: _Found(group.dn, group.name) for group in found if group.sid}
            answered = {sid: by_sid.get(sid) for sid in batch}
            if not batch_cut:  # a cut answer says nothing of the SIDs it left out
                self.sid_names.put(answered)
            known.update(answered)
        return [group for group in known.values() if group is not None], cut

    def _read_token_groups(self, connection: Connection, user_dn: str) -> list[bytes]:
        with self._pool.operation("groups", connection.server):
            result, response = run_search(
                connection.ldap3_connection, user_dn, "(objectClass=*)", search_scope=ldap3.BASE,
                attributes=["tokenGroups"],
            )  # fmt: skip
            code = result.get("result")
            if code == _LDAP_NO_SUCH_OBJECT:
                return []  # moved or deleted since the user search: no groups to give
            if code != _LDAP_SUCCESS:
                raise DirectoryError("server_error", f"tokenGroups read failed with LDAP result code {code}")
        for item in response:
            if item.get("type") == "searchResEntry":
                for key, values in item.get("raw_attributes", {}).items():
                    if key.lower() == "tokengroups":
                        return list(dict.fromkeys(values))
        return []

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
        self, connection: Connection, condition: str, size_limit: int = 0, *, names: bool = True, sids: bool = False
    ) -> tuple[list[_Found], bool]:
        """The groups matching ``condition`` and whether a size limit cut the answer. Without
        ``size_limit``, only the server's own limit applies (OpenLDAP: 500, AD: MaxPageSize 1000): the
        answer is cut by ``max_groups`` here, in DN order, so the same groups are kept on every call."""
        search_filter = f"(&{self._config.filter}{condition})"
        attributes = [self._config.name_attribute] if names else ["1.1"]
        with self._pool.operation("groups", connection.server):
            result, response = run_search(
                connection.ldap3_connection,
                self._config.base_dn,
                search_filter,
                search_scope=_SCOPES[self._config.scope],
                attributes=[*attributes, "objectSid"] if sids else attributes,
                size_limit=size_limit,
            )
            code = result.get("result")
            if code not in (_LDAP_SUCCESS, _LDAP_SIZE_LIMIT, _LDAP_NO_SUCH_OBJECT):
                raise DirectoryError("server_error", f"group search failed with LDAP result code {code}")
        found = [
            _Found(
                item["dn"],
                _name(item.get("raw_attributes", {}), self._name),
                _raw(item.get("raw_attributes", {}), "objectsid") if sids else None,
            )
            for item in response or ()
            if item.get("type") == "searchResEntry"
        ]
        return found, code == _LDAP_SIZE_LIMIT


def _raw(raw: Mapping[str, Sequence[bytes]], attribute: str) -> bytes | None:
    for key, values in raw.items():
        if key.lower() == attribute and values:
            return values[0]
    return None


def _name(raw: Mapping[str, Sequence[bytes]], attribute: str) -> str | None:
    value = _raw(raw, attribute)
    return None if value is None else value.decode("utf-8", errors="replace")


def _batches(items: list[_T]) -> Iterable[list[_T]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


def _first(found: Iterable[_Found], limit: int) -> list[_Found]:
    """The first ``limit`` groups by DN: the same cut whichever order the server answered in."""
    return sorted(found, key=lambda group: group.dn.lower())[:limit]


def _groups(found: Iterable[_Found], *, complete: bool) -> Groups:
    """Names sorted and unique; a group without the naming attribute has no name to give and is left out."""
    return Groups(tuple(sorted({group.name for group in found if group.name})), complete)
