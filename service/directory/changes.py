"""The directory's own changes: every ``poll_seconds``, one paged search for the entries changed since
the last poll, turned into :class:`~service.directory.protocol.Changes` for whoever keeps copies of
entries (the caches, through the server's wiring). This module knows LDAP, not the cache.

Two ways to ask, by dialect:

- OpenLDAP (any directory with ``modifyTimestamp``): ``(modifyTimestamp>=T)`` where ``T`` is what the
  server's clock said when the last poll started, less ``overlap_seconds``. That clock is read from
  the server's own timestamps, never this host's: the newest ``modifyTimestamp`` it holds (found at the
  start in a few size-limited searches, whatever this host's clock says), then the newest each poll
  returns, carried forward by the time elapsed since it was seen (so a quiet directory's window moves
  on). Timestamps have whole seconds, and a replica may receive a change after newer ones: the overlap
  catches both, and an entry seen already with the same ``entryCSN`` (or timestamp) is not reported
  twice. OpenLDAP keeps no trace of a deleted entry without its accesslog or syncprov overlays: the
  entries the caches served on the feed's word lately are asked about by ``entryDN``, and those gone
  are reported deleted (README, "Answering from memory").
- Active Directory: ``uSNChanged`` between the USN after the last poll and the DC's
  ``highestCommittedUSN`` read just before (what commits during the search is the next poll's), with
  the show-deleted control, so that tombstones (a deleted entry, under ``CN=Deleted Objects``) come
  back too, their DN rebuilt from ``msDS-LastKnownRDN`` and ``lastKnownParent``. USNs belong to one DC:
  on another DC (``dsServiceName``) the feed starts over from that DC's ``highestCommittedUSN``.

Either way the feed *starts over* (``Changes.resync``) on its first poll, on another server, and when
a poll's answer was cut by a size limit: what changed before is then unknown, and nothing read before
counts as vouched for by the feed. A poll's new position is kept only when the poll succeeded and was
delivered: a poll that fails or is given up is asked again, from the same place.

The feed has a connection and a thread of its own (a pool busy with lookups must not delay it), opened
through the pool, so server cooldowns and failover are the lookups'.
"""

from __future__ import annotations

import asyncio
import calendar
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

import ldap3

from service.directory.config import ChangeFeed as ChangeFeedConfig
from service.directory.config import DirectoryConfig
from service.directory.connections import Connection, ConnectionPool, filter_value, run_search
from service.directory.errors import DirectoryError
from service.directory.observer import DirectoryObserver
from service.directory.protocol import Changes, dn_key

#: Entries per page of a change search (AD's MaxPageSize is 1000; OpenLDAP pages any size).
PAGE_SIZE = 500
PAGED_RESULTS = "1.2.840.113556.1.4.319"
#: DNs asked about in one search whether they still exist (OpenLDAP: a filter of entryDN terms).
EXISTENCE_BATCH = 100
#: LDAP_SERVER_SHOW_DELETED_OID: AD returns tombstones (deleted objects) too.
SHOW_DELETED = "1.2.840.113556.1.4.417"

Scope = Literal["base", "one", "subtree"]
_SCOPES = {"base": ldap3.BASE, "one": ldap3.LEVEL, "subtree": ldap3.SUBTREE}
_LDAP_SUCCESS, _LDAP_SIZE_LIMIT, _LDAP_NO_SUCH_OBJECT = 0, 4, 32

#: One entry of an answer: its DN and its attributes as the server sent them (names lower-cased).
Item = tuple[str, dict[str, list[bytes]]]


class Search(Protocol):
    """A search on the feed's connection: every page of the answer, and whether a size limit cut it."""

    def __call__(
        self,
        base: str,
        query: str,
        attributes: Sequence[str],
        *,
        scope: Scope = "subtree",
        size_limit: int = 0,
        show_deleted: bool = False,
    ) -> tuple[list[Item], bool]: ...


class FeedBehind(Exception):
    """A poll took longer than the feed may lag (``max_lag_seconds``): given up, asked again next time."""


class ChangeSink(Protocol):
    """Who hears of each poll (the server's wiring: the caches and the feed's health)."""

    def changed(self, changes: Changes, started: float, finished: float) -> None:
        """A poll that started at ``started`` (``time.monotonic``) found ``changes``."""
        ...

    def failed(self, kind: str) -> None:
        """A poll failed (a :class:`DirectoryError` kind) or took longer than the feed may lag (``behind``)."""
        ...

    def unconfirmed(self) -> Collection[str]:
        """DNs whose entries were served on the feed's word lately: does each still exist? (Asked where
        the directory keeps no trace of a deletion: OpenLDAP.)"""
        ...


# -- reading answers ---------------------------------------------------------------------------------


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def _first(attributes: Mapping[str, list[bytes]], name: str) -> str | None:
    values = attributes.get(name)
    return _text(values[0]) if values else None


def naming_context(root: Mapping[str, list[bytes]], base_dn: str) -> str:
    """The naming context of the root DSE's ``namingContexts`` that holds ``base_dn`` (the longest that
    ends it); ``base_dn`` itself when the server lists none that does."""
    key = dn_key(base_dn)
    holding = [
        context
        for context in map(_text, root.get("namingcontexts", ()))
        if context and (key == dn_key(context) or key.endswith("," + dn_key(context)))
    ]
    return max(holding, key=len) if holding else base_dn


def first_rdn(dn: str) -> list[tuple[str, str]] | None:
    """The attribute types (lower-cased) and values (unescaped, RFC 4514) of ``dn``'s first RDN; None
    when it cannot be read as one. Directory data: never raises."""
    pairs: list[tuple[str, str]] = []
    attribute: str | None = None
    value = bytearray()
    i = 0
    while i < len(dn):
        char = dn[i]
        if attribute is None:
            equals = dn.find("=", i)
            if equals <= i:
                return None
            attribute, i = dn[i:equals].strip().lower(), equals + 1
            continue
        if char == "\\":
            pair = dn[i + 1 : i + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                value.append(int(pair, 16))
                i += 3
                continue
            if i + 1 >= len(dn):
                return None
            value += dn[i + 1].encode("utf-8")
            i += 2
            continue
        if char in ",;+":
            pairs.append((attribute, value.decode("utf-8", errors="replace")))
            if char != "+":
                return pairs
            attribute, value = None, bytearray()
            i += 1
            continue
        value += char.encode("utf-8")
        i += 1
    if attribute is None:
        return None
    pairs.append((attribute, value.decode("utf-8", errors="replace")))
    return pairs


def escape_rdn_value(value: str) -> str:
    """``value`` escaped for an RDN (RFC 4514): what AD does with a tombstone's last known RDN."""
    escaped = "".join("\\" + char if char in ',+"\\<>;=' else char for char in value)
    if escaped[:1] in ("#", " "):
        escaped = "\\" + escaped
    if escaped.endswith(" ") and not escaped.endswith("\\ "):
        escaped = escaped[:-1] + "\\ "
    return escaped


def _all_members(search: Search, dn: str, attributes: Mapping[str, list[bytes]], member: str) -> list[bytes]:
    """Every value of the ``member`` attribute: AD sends at most 1,500 per read
    (``member;range=0-1499``); the rest is read range by range."""
    values = list(attributes.get(member, ()))
    ranged = next((name for name in attributes if name.startswith(member + ";range=")), None)
    while ranged is not None:
        values += attributes[ranged]
        end = ranged.rpartition("-")[2]
        if end == "*" or not end.isdigit():
            break
        items, _ = search(dn, "(objectClass=*)", [f"{member};range={int(end) + 1}-*"], scope="base")
        attributes = items[0][1] if items else {}
        ranged = next((name for name in attributes if name.startswith(member + ";range=")), None)
    return values


@dataclass(frozen=True)
class _Reading:
    """What a change answer means to a cache: which attributes name a group and list its members, which
    one a person is looked up by, and the value a lookup compares for it."""

    name: str
    member: str
    match: str
    search_value: Callable[[str], str | None]

    def changes(
        self, search: Search, items: Iterable[Item], deleted: Iterable[tuple[str, Mapping[str, list[bytes]]]] = ()
    ) -> Changes:
        entries: set[str] = set()
        gone: set[str] = set()
        members: set[str] = set()
        names: set[str] = set()
        identifiers: set[str] = set()
        for dn, attributes in items:
            entries.add(dn_key(dn))
            names.update(_text(value).lower() for value in attributes.get(self.name, ()))
            identifiers.update(self._identifiers(attributes))
            for value in _all_members(search, dn, attributes, self.member):
                member = _text(value)
                members.add(dn_key(member))
                # A group put into this one: whoever lists it is in this one now too. Its name is its
                # RDN value when groups are named by their RDN attribute (cn=<name>).
                names.update(v.lower() for a, v in first_rdn(member) or () if a == self.name)
        for dn, tombstone in deleted:
            key = dn_key(dn)
            entries.add(key)
            gone.add(key)
            names.update(_text(value).lower() for value in tombstone.get(self.name, ()))
            identifiers.update(self._identifiers(tombstone))
        return Changes(
            frozenset(entries), frozenset(gone), frozenset(members), frozenset(names), frozenset(identifiers)
        )

    def _identifiers(self, attributes: Mapping[str, list[bytes]]) -> Iterator[str]:
        for value in attributes.get(self.match, ()):
            identifier = self.search_value(_text(value))
            if identifier is not None:
                yield identifier


# -- OpenLDAP: modifyTimestamp -----------------------------------------------------------------------


def generalized_time(seconds: int) -> str:
    return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(max(0, seconds)))


def stamp_seconds(stamp: str) -> int | None:
    """A GeneralizedTime (``20260102030405Z``, fractions and zone ignored) as Unix seconds; None for a
    value that is not one (directory data: never raises)."""
    digits = stamp[:14]
    if len(digits) != 14 or not digits.isdigit():
        return None
    try:
        return calendar.timegm(time.strptime(digits, "%Y%m%d%H%M%S"))
    except ValueError:
        return None


@dataclass(frozen=True)
class _StampPosition:
    server: str
    bases: tuple[str, ...]
    #: The server's own clock was at least ``newest`` (Unix seconds, read from its timestamps) at
    #: ``newest_at`` (this host's ``time.monotonic``): the time elapsed since carries the estimate
    #: forward, this host's wall clock never does. None: the bases hold no entry with a timestamp.
    newest: int | None
    newest_at: float
    #: When the poll that left this position started: the next one looks from the server's time then,
    #: less the overlap.
    polled_at: float
    #: DN -> (timestamp, entryCSN) of the entries already reported within the overlap window.
    seen: Mapping[str, tuple[int, str]]
    #: The server filters on ``entryDN`` (OpenLDAP does): entries can be asked about by DN.
    entry_dn: bool = False


class _Timestamps:
    """OpenLDAP's feed, by ``modifyTimestamp`` (see the module's docstring)."""

    def __init__(self, config: DirectoryConfig, feed: ChangeFeedConfig, reading: _Reading) -> None:
        self._user_base = config.user_search.base_dn
        self._bases = feed.base_dns
        self._overlap = int(feed.overlap_seconds + 0.999)
        self._reading = reading
        self._attributes = ["modifyTimestamp", "entryCSN", reading.name, reading.member, reading.match]

    def start(self, search: Search, server: str) -> _StampPosition:
        """The newest timestamp the server holds, and the entries of the overlap window before it taken
        as seen: they changed before the feed started, so the first poll does not report them."""
        bases = self._bases or (naming_context(_root(search, ["namingContexts"]), self._user_base),)
        newest = _newest(search, bases, int(time.time()))
        now = time.monotonic()
        # A server that cannot filter on entryDN would answer "nobody" for everyone asked about.
        found, _ = search(bases[0], f"(entryDN={filter_value(bases[0])})", ["1.1"], scope="base")
        _, position, _ = self.poll(search, _StampPosition(server, bases, newest, now, now, {}, bool(found)))
        return position

    def missing(self, search: Search, position: _StampPosition, dns: Collection[str]) -> frozenset[str]:
        """Of ``dns``, those no longer in the directory (deleted, or moved away: OpenLDAP keeps no trace of
        either), as :func:`dn_key` s; asked by ``entryDN``, ``EXISTENCE_BATCH`` at a time."""
        if not position.entry_dn:
            return frozenset()
        wanted = {dn_key(dn): dn for dn in dns}
        found: set[str] = set()
        batch = list(wanted.values())
        for start in range(0, len(batch), EXISTENCE_BATCH):
            query = "(|" + "".join(f"(entryDN={filter_value(dn)})" for dn in batch[start : start + EXISTENCE_BATCH])
            for base in position.bases:
                items, _ = search(base, query + ")", ["1.1"])
                found.update(dn_key(dn) for dn, _ in items)
        return frozenset(wanted.keys() - found)

    def poll(self, search: Search, position: _StampPosition) -> tuple[Changes, _StampPosition, bool]:
        started = time.monotonic()
        since = -1
        if position.newest is not None:
            # What the server's clock said, at least, when the last poll started, less the overlap: a
            # change since has a timestamp at or after it (a quiet directory's window moves on too).
            since = position.newest + int(position.polled_at - position.newest_at) - self._overlap
        query = f"(modifyTimestamp>={generalized_time(since)})"
        items: list[Item] = []
        cut = False
        for base in position.bases:
            found, truncated = search(base, query, self._attributes)
            items += found
            cut |= truncated
        searched = time.monotonic()
        seen = {dn: version for dn, version in position.seen.items() if version[0] >= since}
        stamped = [(item, stamp_seconds(_first(item[1], "modifytimestamp") or "")) for item in items]
        top = max((stamp for _, stamp in stamped if stamp is not None), default=None)
        fresh: list[Item] = []
        for item, stamp in stamped:
            key = dn_key(item[0])
            version = (stamp or 0, _first(item[1], "entrycsn") or "")
            if seen.get(key) == version:
                continue  # reported by an earlier poll of the overlap window
            fresh.append(item)
            # Without entryCSN, a second change in the newest second has the same version as the
            # first: entries of that second are reported again by the next poll rather than missed.
            if version[1] or stamp != top:
                seen[key] = version
        newest, newest_at = position.newest, position.newest_at
        if top is not None and (newest is None or top > newest + (searched - newest_at)):
            newest, newest_at = top, searched  # written before the search ended: the clock was past it
        after = replace(position, newest=newest, newest_at=newest_at, polled_at=started, seen=seen)
        return self._reading.changes(search, fresh), after, cut


def _newest(search: Search, bases: Sequence[str], hint: int) -> int | None:
    """The newest ``modifyTimestamp`` in ``bases``, in the server's own time: found with size-limited
    searches (``>= t``: is there one at or after t?), galloping from ``hint`` (this host's clock: a
    guess, never trusted) then halving. About 2 log2(distance) searches; None when no entry has one."""

    def at_or_after(t: int) -> int | None:
        found = None
        for base in bases:
            items, _ = search(base, f"(modifyTimestamp>={generalized_time(t)})", ["modifyTimestamp"], size_limit=1)
            for _, attributes in items:
                stamp = stamp_seconds(_first(attributes, "modifytimestamp") or "")
                if stamp is not None and stamp >= t and (found is None or stamp > found):
                    found = stamp
        return found

    found = at_or_after(hint)
    bounds = _forward(at_or_after, found) if found is not None else _backward(at_or_after, hint)
    if bounds is None:
        return None
    low, high = bounds
    while high - low > 1:  # something at low, nothing at or after high
        middle = (low + high) // 2
        later = at_or_after(middle)
        if later is None:
            high = middle
        else:
            low = later
    return low


Probe = Callable[[int], "int | None"]


def _forward(at_or_after: Probe, low: int) -> tuple[int, int]:
    """Something at ``low`` (a clock ahead of ours, or recent changes): double the step forward until
    nothing is found; (something, nothing at or after)."""
    step = 1
    while True:
        later = at_or_after(low + step)
        if later is None:
            return low, low + step
        low, step = later, step * 2


def _backward(at_or_after: Probe, hint: int) -> tuple[int, int] | None:
    """Nothing at or after ``hint``: double the step back until something is found; None for none at all."""
    high, step = hint, 1
    while hint - step > 0:
        found = at_or_after(hint - step)
        if found is not None:
            return found, high
        high, step = hint - step, step * 2
    found = at_or_after(0)
    return None if found is None else (found, high)


# -- Active Directory: uSNChanged --------------------------------------------------------------------


@dataclass(frozen=True)
class _UsnPosition:
    server: str
    #: The DC answering (its NTDS Settings DN): a load-balanced name can hand the feed another DC.
    dsa: str
    bases: tuple[str, ...]
    #: The lowest USN the next poll asks for.
    next_usn: int


class _Usns:
    """Active Directory's feed, by ``uSNChanged`` (see the module's docstring)."""

    _ROOT = ("highestCommittedUSN", "dsServiceName", "defaultNamingContext", "namingContexts")

    def __init__(self, config: DirectoryConfig, feed: ChangeFeedConfig, reading: _Reading) -> None:
        self._user_base = config.user_search.base_dn
        self._bases = feed.base_dns
        self._reading = reading
        self._attributes = [
            "uSNChanged",
            reading.name,
            reading.member,
            reading.match,
            "isDeleted",
            "lastKnownParent",
            "msDS-LastKnownRDN",
            "name",
        ]

    def start(self, search: Search, server: str) -> _UsnPosition:
        root = _root(search, self._ROOT)
        highest = _usn(root)
        bases = self._bases or (naming_context(root, self._user_base),)
        return _UsnPosition(server, _first(root, "dsservicename") or "", bases, highest + 1)

    def poll(self, search: Search, position: _UsnPosition) -> tuple[Changes, _UsnPosition, bool] | None:
        """None when another DC answers: its USNs are not comparable with the last one's."""
        root = _root(search, ("highestCommittedUSN", "dsServiceName"))
        if (_first(root, "dsservicename") or "") != position.dsa:
            return None
        highest = _usn(root)
        if highest < position.next_usn:
            return Changes(), position, False
        query = f"(&(uSNChanged>={position.next_usn})(uSNChanged<={highest}))"
        live: list[Item] = []
        deleted: list[tuple[str, Mapping[str, list[bytes]]]] = []
        cut = False
        for base in position.bases:
            found, truncated = search(base, query, self._attributes, show_deleted=True)
            cut |= truncated
            for dn, attributes in found:
                if (_first(attributes, "isdeleted") or "").upper() == "TRUE":
                    original = tombstone_dn(attributes)
                    if original is not None:
                        deleted.append((original, attributes))
                else:
                    live.append((dn, attributes))
        changes = self._reading.changes(search, live, deleted)
        return changes, replace(position, next_usn=highest + 1), cut


def tombstone_dn(attributes: Mapping[str, list[bytes]]) -> str | None:
    """The DN a deleted AD object had: ``CN=<last known RDN>,<last known parent>``. The RDN is
    ``msDS-LastKnownRDN`` (Windows Server 2008 R2 on) or the tombstone's ``name`` before its
    ``\\nDEL:<guid>`` mangling. None when the tombstone does not say (no lastKnownParent)."""
    parent = _first(attributes, "lastknownparent")
    rdn = _first(attributes, "msds-lastknownrdn") or (_first(attributes, "name") or "").split("\nDEL:")[0]
    if not parent or not rdn:
        return None
    return f"CN={escape_rdn_value(rdn)},{parent}"


def _usn(root: Mapping[str, list[bytes]]) -> int:
    value = _first(root, "highestcommittedusn")
    if value is None or not value.strip().isdigit():
        raise DirectoryError("server_error", "the root DSE has no highestCommittedUSN")
    return int(value)


def _root(search: Search, attributes: Sequence[str]) -> dict[str, list[bytes]]:
    items, _ = search("", "(objectClass=*)", attributes, scope="base")
    return items[0][1] if items else {}


# -- the feed ----------------------------------------------------------------------------------------

Position = _StampPosition | _UsnPosition


class _Searcher:
    """:class:`Search` on one connection the feed holds: paged, each page an operation the pool times,
    reports and classifies (``changes``)."""

    def __init__(self, pool: ConnectionPool, connection: Connection) -> None:
        self._pool = pool
        self._connection = connection

    def __call__(
        self,
        base: str,
        query: str,
        attributes: Sequence[str],
        *,
        scope: Scope = "subtree",
        size_limit: int = 0,
        show_deleted: bool = False,
    ) -> tuple[list[Item], bool]:
        items: list[Item] = []
        cookie: bytes | None = None
        options: dict[str, Any] = {"paged_size": PAGE_SIZE} if not size_limit and scope != "base" else {}
        while True:
            with self._pool.operation("changes", self._connection.server):
                result, response = run_search(
                    self._connection.ldap3_connection,
                    base,
                    query,
                    search_scope=_SCOPES[scope],
                    attributes=list(attributes),
                    size_limit=size_limit,
                    controls=[(SHOW_DELETED, True, None)] if show_deleted else None,
                    paged_cookie=cookie,
                    **options,
                )
                code = result.get("result")
                if code not in (_LDAP_SUCCESS, _LDAP_SIZE_LIMIT, _LDAP_NO_SUCH_OBJECT):
                    raise DirectoryError("server_error", f"change search failed with LDAP result code {code}")
            items += [
                (item["dn"], {name.lower(): values for name, values in item.get("raw_attributes", {}).items()})
                for item in response
                if item.get("type") == "searchResEntry"
            ]
            if code == _LDAP_SIZE_LIMIT:
                return items, size_limit == 0
            cookie = ((result.get("controls") or {}).get(PAGED_RESULTS) or {}).get("value", {}).get("cookie")
            if not options or not cookie:
                return items, False


class ChangeFeed:
    """Polls one directory for its changes (see the module's docstring)."""

    def __init__(self, config: DirectoryConfig, pool: ConnectionPool, observer: DirectoryObserver) -> None:
        if config.change_feed is None:
            raise ValueError("directory.change_feed is not configured")
        self._config = config
        self._feed = config.change_feed
        self._pool = pool
        self._observer = observer
        groups = config.groups
        name, member = (groups.name_attribute, groups.member_attribute) if groups else ("cn", "member")
        search = config.user_search
        reading = _Reading(name.lower(), member.lower(), search.match_attribute.lower(), search.search_value)
        dialect = _Usns if config.dialect == "active_directory" else _Timestamps
        self._reader = dialect(config, self._feed, reading)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="ldap-changes")
        self._connection: Connection | None = None
        #: Where the last delivered poll left off; None: start over at the next poll.
        self._position: Position | None = None
        self._polling: Future[tuple[Changes, Position]] | None = None

    @property
    def poll_seconds(self) -> float:
        return self._feed.poll_seconds

    async def poll(self, unconfirmed: Collection[str] = ()) -> Changes:
        """One poll, in the feed's thread, given up after ``max_lag_seconds`` (:class:`FeedBehind`). Its
        position is kept only when it returns: a failed poll is asked again, from the same place. On
        OpenLDAP, the entries of ``unconfirmed`` no longer there are reported deleted."""
        if self._polling is not None and not self._polling.done():
            raise FeedBehind  # the last poll is still stuck (a hung directory): none queued behind it
        self._polling = self._thread.submit(self._poll, unconfirmed)
        try:
            changes, position = await asyncio.wait_for(asyncio.wrap_future(self._polling), self._feed.max_lag_seconds)
        except TimeoutError:
            raise FeedBehind from None
        self._position = position
        return changes

    async def run(self, sink: ChangeSink) -> None:
        """Poll every ``poll_seconds`` for ever, telling ``sink``. A bug in a round is reported and the
        next round still runs (a dead feed would only stop the long freshness, silently)."""
        while True:
            started = time.monotonic()
            try:
                changes = await self.poll(sink.unconfirmed())
            except FeedBehind:
                sink.failed("behind")
            except DirectoryError as error:
                sink.failed(error.kind)
            except Exception as error:
                self._observer.background_failed("change_feed", error)
                sink.failed("other")
            else:
                sink.changed(changes, started, time.monotonic())
            await asyncio.sleep(max(0.0, started + self._feed.poll_seconds - time.monotonic()))

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool.retire(connection)

    # -- in the feed's thread ------------------------------------------------------------------------

    def _poll(self, unconfirmed: Collection[str] = ()) -> tuple[Changes, Position]:
        connection = self._connect()
        search = _Searcher(self._pool, connection)
        try:
            return self._read(search, connection.server.name, unconfirmed)
        except BaseException:
            self._connection = None
            self._pool.retire(connection)
            raise

    def _read(self, search: Search, server: str, unconfirmed: Collection[str] = ()) -> tuple[Changes, Position]:
        position = self._position
        if position is None or position.server != server:
            return Changes(resync=True), self._reader.start(search, server)
        polled: tuple[Changes, Position, bool] | None
        if isinstance(position, _UsnPosition):
            assert isinstance(self._reader, _Usns)
            polled = self._reader.poll(search, position)
        else:
            assert isinstance(self._reader, _Timestamps)
            polled = self._reader.poll(search, position)
        if polled is None:  # another DC behind the same address
            return Changes(resync=True), self._reader.start(search, server)
        changes, after, cut = polled
        if cut:  # more changes than one answer holds: those seen are evicted, the rest is unknown
            return replace(changes, resync=True), self._reader.start(search, server)
        if unconfirmed and isinstance(after, _StampPosition) and isinstance(self._reader, _Timestamps):
            gone = self._reader.missing(search, after, unconfirmed)
            changes = replace(changes, entries=changes.entries | gone, deleted=changes.deleted | gone)
        return changes, after

    def _connect(self) -> Connection:
        """The feed's connection: kept between polls, replaced when older than connection_max_age_seconds
        (a new one goes to the first server available, as the lookups' do)."""
        connection = self._connection
        if connection is not None and time.monotonic() - connection.opened_at < self._config.connection_max_age_seconds:
            return connection
        if connection is not None:
            self._connection = None
            self._pool.retire(connection)
        self._connection = self._pool.open(lambda stage: None)
        return self._connection


__all__ = ["ChangeFeed", "ChangeSink", "FeedBehind", "Item", "Search", "first_rdn", "naming_context", "tombstone_dn"]
