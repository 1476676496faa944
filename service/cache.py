"""Answering from memory: a per-user cache of the directory's answers in front of the directory.

Why: every hook call used to be an LDAP round trip, so a slow or hanging directory meant tokens and
assertions without the claims applications authorize on, and 50 concurrent calls for one user made 50
searches. :class:`CachedDirectory` implements the same :class:`~service.directory.UserDirectory`
protocol as the directory it wraps:

- a fresh answer (found, or "no such user" for a shorter time) is served without asking;
- concurrent identical queries share one lookup (single-flight), each caller still bounded by its
  own deadline;
- a hot entry requested shortly before it goes stale is re-read in the background (refresh-ahead);
- when the directory fails (timeout, deadline, connection, server down: anything but ``ambiguous``)
  and an older answer exists, that answer is served as ``stale``;
- at most ``max_entries`` entries, least recently used dropped first. Memory only, never on disk;
- with the directory's change feed (:meth:`CachedDirectory.apply`, :class:`FeedHealth`): a change
  evicts the entries it affects at once, through an index from DNs and group names to the entries
  that carry them, and entries live up to ``feed_fresh_seconds`` while the feed is current.

Pure asyncio: no ldap3, no prometheus. What happens is reported to a :class:`CacheObserver`.
"""

from __future__ import annotations

import asyncio
import marshal
import re
import struct
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Annotated, Generic, Literal, Protocol, TypeVar

from annotated_types import Ge, Le

from service.directory.entry import DirectoryEntry, Groups
from service.directory.errors import DeadlineExceeded, DirectoryError
from service.directory.protocol import (
    CacheResult,
    Changes,
    LookupResult,
    UserDirectory,
    UserQuery,
    dn_key,
    search_query,
)

#: Background refreshes running at once, at most: they must never take the whole LDAP pool from the
#: requests that are waiting on it.
MAX_CONCURRENT_REFRESHES = 4

#: Why an entry left the cache before its time: ``lru`` (the ``max_entries`` bound), or a change the
#: directory's feed reported: the person's own entry changed (``entry``) or was deleted (``deleted``), an
#: entry the answer refers to changed (``reference``: a ``memberOf`` group, a resolved manager), a group
#: the person is listed in changed (``group``), or a changed group lists the person (``member``: perhaps
#: just added to it).
EvictionCause = Literal["lru", "entry", "deleted", "reference", "group", "member"]
EVICTION_CAUSES: tuple[EvictionCause, ...] = ("lru", "entry", "deleted", "reference", "group", "member")


class CacheObserver(Protocol):
    """The seam through which telemetry watches one cache."""

    def looked_up(self, result: CacheResult) -> None: ...

    def evicted(self, cause: EvictionCause, count: int = 1) -> None: ...

    def refreshed(self, error_kind: str | None) -> None:
        """A background refresh finished; ``error_kind`` is None when it succeeded."""
        ...


class NullCacheObserver:
    def looked_up(self, result: CacheResult) -> None:
        pass

    def evicted(self, cause: EvictionCause, count: int = 1) -> None:
        pass

    def refreshed(self, error_kind: str | None) -> None:
        pass


@dataclass(frozen=True)
class CachePolicy:
    """How long the directory's answers are reused: a hook type's ``cache:`` section (README,
    "Answering from memory"). Seconds; ``0`` turns each off.

    A change in the directory (a group removal) reaches Okta only after ``fresh_seconds``; stale
    entries are served only while the directory fails, never instead of a working directory. A plain
    dataclass, as :mod:`service.directory.config`: the settings module validates it from YAML
    (unknown keys refused, strict types, the bounds below named with the key).
    """

    __pydantic_config__ = {"extra": "forbid", "strict": True}  # noqa: RUF012 (read by pydantic, not by us)

    #: An answer this young is served without asking the directory.
    fresh_seconds: Annotated[float, Ge(0)] = 300
    #: While the directory fails (timeout, deadline, connection, server down; never when several
    #: entries match), an answer up to this old is served, outcome ``enriched_stale``. 0 or >= fresh_seconds.
    #: Counts from when the entry was read.
    stale_seconds: Annotated[float, Ge(0)] = 3600
    #: "No such user" is remembered this long (shorter: a user created in the directory shows up soon).
    negative_seconds: Annotated[float, Ge(0)] = 60
    #: An entry requested within this many seconds of going stale is re-read in the background, so a hot
    #: user never waits on the directory. Capped at half of fresh_seconds.
    refresh_ahead_seconds: Annotated[float, Ge(0)] = 30
    #: Least recently used entries are dropped beyond this many (per hook type; ~0.5 KB each).
    max_entries: Annotated[int, Ge(0), Le(10_000_000)] = 100_000
    #: An event Okta re-sends (same eventId, same body) within this many seconds gets the very same
    #: answer, when that answer came from the directory's data. Okta retries once, after its 3 s timeout.
    replay_seconds: Annotated[float, Ge(0), Le(3600)] = 10
    #: With ``directory.change_feed``: while its polls succeed, an answer this young is served without
    #: asking (a change evicts it within a poll); when a poll fails or falls behind, ``fresh_seconds``
    #: again at once. 0 (off) or at least fresh_seconds.
    feed_fresh_seconds: Annotated[float, Ge(0), Le(86400)] = 0

    def __post_init__(self) -> None:
        if self.stale_seconds and self.stale_seconds < self.fresh_seconds:
            raise ValueError("stale_seconds must be 0 (off) or at least fresh_seconds")
        if self.feed_fresh_seconds and self.feed_fresh_seconds < self.fresh_seconds:
            raise ValueError("feed_fresh_seconds must be 0 (off) or at least fresh_seconds")

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and (self.fresh_seconds > 0 or self.stale_seconds > 0 or self.negative_seconds > 0)


class FeedHealth:
    """Whether the directory's change feed vouches for what the caches hold: one per directory, shared
    by every hook type's cache, told of each poll by the server's wiring.

    An entry is vouched for while the last good poll is at most ``max_lag_seconds`` old (every change
    since then reaches the caches within a poll) and the entry was read after the feed last started
    over (``covered_since``: what changed before a resync, on another server or during a poll it could
    not finish, is unknown). A failed poll ends it at once; a feed that falls behind ends it by itself."""

    def __init__(self, max_lag_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_lag_seconds = max_lag_seconds
        self._clock = clock
        self._since = clock()
        #: Entries read from this instant on are covered by the feed (none until its first poll).
        self.covered_since = float("inf")
        #: When the last good poll started (what the directory said then is what it reported).
        self.last_good = float("-inf")
        self._failing = False

    def polled(self, started: float, finished: float, resync: bool) -> None:
        """A poll that started at ``started`` succeeded; with ``resync``, nothing read before it
        ended is vouched for."""
        if resync:
            self.covered_since = finished
        self.last_good = started
        self._failing = False

    def failed(self) -> None:
        """A poll failed: every cache is back on ``fresh_seconds`` now, not when the lag says so."""
        self._failing = True

    def current(self, now: float | None = None) -> bool:
        """Whether entries may live ``feed_fresh_seconds`` now."""
        now = self._clock() if now is None else now
        return not self._failing and now - self.last_good <= self.max_lag_seconds

    def vouches(self, read_at: float, now: float) -> bool:
        return read_at >= self.covered_since and not self._failing and now - self.last_good <= self.max_lag_seconds

    def lag(self) -> float:
        """Seconds since the last good poll started (since the feed was made, before the first one)."""
        return self._clock() - max(self.last_good, self._since)


class CachedDirectory:
    """A :class:`UserDirectory` answering from memory when it can, from ``directory`` when it must."""

    def __init__(
        self,
        directory: UserDirectory,
        policy: CachePolicy,
        observer: CacheObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
        refresh_budget_seconds: float = 2.5,
        feed: FeedHealth | None = None,
    ) -> None:
        """``refresh_budget_seconds``: the time a background refresh may take (the hook's deadline).
        ``feed``: the directory's change feed is on; the cache indexes its entries for :meth:`apply`,
        and keeps them ``feed_fresh_seconds`` while the feed vouches for them."""
        self._directory = directory
        self._policy = policy
        self._refresh_budget = refresh_budget_seconds
        self._observer = observer or NullCacheObserver()
        self._clock = clock
        # key (the query, with the value the directory compares) -> one bytes object: the monotonic time
        # it was read, then the entry (none: "no such user"); see _Packer. 100,000 entries must fit in a
        # pod's memory with the rest of the service.
        self._entries: OrderedDict[UserQuery, bytes] = OrderedDict()
        self._packer = _Packer()
        # key -> the lookup in flight for it and that lookup's deadline
        self._in_flight: dict[UserQuery, tuple[asyncio.Future[DirectoryEntry | None], float]] = {}
        self._refreshing = 0
        # refresh when younger than this, i.e. within refresh_ahead of going stale (capped at half the fresh time)
        ahead = min(policy.refresh_ahead_seconds, policy.fresh_seconds / 2)
        self._refresh_after = policy.fresh_seconds - ahead if ahead > 0 else float("inf")
        self._feed = feed
        self._feed_fresh = policy.feed_fresh_seconds if feed is not None else 0.0
        ahead = min(policy.refresh_ahead_seconds, self._feed_fresh / 2)
        self._feed_refresh_after = self._feed_fresh - ahead if ahead > 0 else float("inf")
        # With the feed: who carries each DN and group name, so that a change finds the entries it
        # affects without a scan. Kept with the entries (store, replace, evict, LRU, clear).
        self._index = _ChangeIndex() if feed is not None else None
        # Changes applied while lookups were in flight, and when: a lookup that read the directory
        # before a change and finishes after it must not store what it read (the change is past).
        self._recent: deque[tuple[float, Changes]] = deque()
        # DNs of entries served past fresh_seconds on the feed's word since the feed last asked: a
        # directory without tombstones (OpenLDAP) says nothing of a deletion, so these are asked about.
        self._unconfirmed: set[str] = set()
        self._asked_at = clock()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> int:
        """Forget every entry (an operator's flush); lookups in flight are left to finish."""
        count = len(self._entries)
        self._entries.clear()
        if self._index is not None:
            self._index.clear()
        return count

    def unconfirmed(self) -> frozenset[str]:
        """The DNs of the entries served past ``fresh_seconds`` on the feed's word since this was last
        answered, at most once per ``fresh_seconds``: the feed asks whether they still exist (a deleted
        person then goes within about ``fresh_seconds`` of being asked about again, as without the feed)."""
        now = self._clock()
        if not self._unconfirmed or now - self._asked_at < self._policy.fresh_seconds:
            return frozenset()
        self._asked_at = now
        taken = frozenset(self._unconfirmed)
        self._unconfirmed.clear()
        return taken

    def apply(self, changes: Changes) -> dict[EvictionCause, int]:
        """Evict every entry ``changes`` affects (see :class:`Changes`), each counted once under the
        first cause that applies; lookups in flight will not store what they read before them."""
        if self._in_flight:
            self._recent.append((self._clock(), changes))
        if self._index is None:
            return {}
        doomed = self._index.affected(changes)
        counts: dict[EvictionCause, int] = {}
        for key, cause in doomed.items():
            self._drop(key)
            counts[cause] = counts.get(cause, 0) + 1
        for cause, count in counts.items():
            self._observer.evicted(cause, count)
        return counts

    def search_value(self, identifier: str) -> str | None:
        return self._directory.search_value(identifier)

    async def find_user(self, query: UserQuery, deadline: float, start_by: float | None = None) -> LookupResult:
        # Keyed by what the directory compares: with strip_domains, alice@corp.example.com and
        # alice@example.com are one search, so one entry. The rest of the query (attributes, DN
        # resolutions, group memberships) is part of the key too. The hooks computed the value already
        # (query.compared): the key is the query as it is, and the directory is handed the key.
        key = search_query(query, self._directory.search_value)
        if key is None:  # matches nobody (the hooks refuse it before asking): nothing to ask or remember
            return LookupResult(None)
        now = self._clock()
        record = self._entries.get(key)
        if record is not None:
            age = now - _read_at(record)
            if len(record) == _STAMP.size:  # "no such user"
                if age < self._policy.negative_seconds:
                    self._observer.looked_up("negative_hit")
                    return _NEGATIVE_HIT
            elif age < self._policy.fresh_seconds:
                self._entries.move_to_end(key)
                self._observer.looked_up("hit")
                if age >= self._refresh_after and not self._vouched(record, now):
                    self._refresh_ahead(key)
                return LookupResult(self._packer.unpack(record), "hit")
            elif age < self._feed_fresh and self._vouched(record, now):
                self._entries.move_to_end(key)
                self._observer.looked_up("hit")
                if age >= self._feed_refresh_after:
                    self._refresh_ahead(key)
                found = self._packer.unpack(record)
                self._unconfirmed.add(found.dn)
                return LookupResult(found, "hit")
        try:
            entry = await self._shared_lookup(key, deadline, start_by)
        except (DeadlineExceeded, DirectoryError) as error:
            kind = _kind(error)
            if kind == "ambiguous":  # the directory now matches several entries: the old one is no answer
                self._drop(key)
            stale = self._stale(key, now)
            if stale is None:
                self._observer.looked_up("miss")
                raise
            self._observer.looked_up("stale")
            return LookupResult(stale, "stale", kind)
        self._observer.looked_up("miss")
        return LookupResult(entry, "miss")

    def _vouched(self, record: bytes, now: float) -> bool:
        """Whether the change feed vouches for ``record`` now (it would have evicted it on a change)."""
        feed = self._feed
        return feed is not None and feed.vouches(_read_at(record), now)

    def _stale(self, key: UserQuery, now: float) -> DirectoryEntry | None:
        record = self._entries.get(key)
        if record is None or len(record) == _STAMP.size or now - _read_at(record) >= self._policy.stale_seconds:
            return None
        return self._packer.unpack(record)

    # -- single-flight ----------------------------------------------------------------------------

    async def _shared_lookup(self, key: UserQuery, deadline: float, start_by: float | None) -> DirectoryEntry | None:
        """Join the lookup in flight for ``key`` or start it; wait for it until ``deadline`` at most."""
        shared = self._in_flight.get(key)
        future, lookup_deadline = shared if shared is not None else (self._start(key, deadline, start_by), deadline)
        if lookup_deadline <= deadline:
            # The lookup ends by its own deadline, no later than this caller's, with the directory's own
            # DeadlineExceeded (which knows the stage). Shielded: a cancelled caller must not cancel it.
            return await asyncio.shield(future)
        try:  # a lookup allowed to run longer than this caller may wait (a refresh started earlier)
            return await asyncio.wait_for(asyncio.shield(future), max(0.0, deadline - self._clock()))
        except TimeoutError:
            # The shared lookup carries on for the others; this caller's own deadline has passed.
            raise DeadlineExceeded("search") from None

    def _start(
        self, key: UserQuery, deadline: float, start_by: float | None = None
    ) -> asyncio.Future[DirectoryEntry | None]:
        task = asyncio.ensure_future(self._read(key, deadline, start_by))
        self._in_flight[key] = (task, deadline)
        task.add_done_callback(lambda done: self._finished(key, done))
        return task

    def _finished(self, key: UserQuery, task: asyncio.Future[DirectoryEntry | None]) -> None:
        shared = self._in_flight.get(key)
        if shared is not None and shared[0] is task:
            del self._in_flight[key]
        if not self._in_flight:
            self._recent.clear()  # no lookup left that a change could have overtaken
        if not task.cancelled():
            task.exception()  # retrieved here: every waiter may have given up on it already

    async def _read(self, key: UserQuery, deadline: float, start_by: float | None) -> DirectoryEntry | None:
        started = self._clock()
        entry = (await self._directory.find_user(key, deadline, start_by)).entry
        if self._recent and self._overtaken(key, entry, started):
            self._drop(key)  # read before a change it misses: answered, not kept (the change evicted the rest)
        else:
            self._store(key, entry)
        return entry

    def _overtaken(self, key: UserQuery, entry: DirectoryEntry | None, started: float) -> bool:
        """Whether a change applied after ``started`` affects ``entry`` (or, for "no such user", ``key``)."""
        tags = None if entry is None else _tags(entry)
        return any(applied >= started and _touches(changes, key, tags) for applied, changes in self._recent)

    def _store(self, key: UserQuery, entry: DirectoryEntry | None) -> None:
        policy = self._policy
        keep = policy.negative_seconds if entry is None else max(policy.fresh_seconds, policy.stale_seconds)
        if keep <= 0 or policy.max_entries <= 0:
            self._drop(key)  # a deleted user's stale entry must not outlive the news
            return
        index = self._index
        if index is not None:
            old = self._entries.get(key)
            if old is not None:
                self._unindex(key, old)
            index.add(key, None if entry is None else _tags(entry))
        self._entries[key] = self._packer.pack(entry, self._clock())
        self._entries.move_to_end(key)
        while len(self._entries) > policy.max_entries:
            dropped, record = self._entries.popitem(last=False)
            if index is not None:
                self._unindex(dropped, record)
            self._observer.evicted("lru")

    def _drop(self, key: UserQuery) -> None:
        record = self._entries.pop(key, None)
        if record is not None and self._index is not None:
            self._unindex(key, record)

    def _unindex(self, key: UserQuery, record: bytes) -> None:
        if self._index is not None:  # "no such user" carries its identifier only
            self._index.discard(key, _tags(self._packer.unpack(record)) if len(record) > _STAMP.size else None)

    # -- refresh-ahead ----------------------------------------------------------------------------

    def _refresh_ahead(self, key: UserQuery) -> None:
        if key in self._in_flight or self._refreshing >= MAX_CONCURRENT_REFRESHES:
            return
        self._refreshing += 1
        task = self._start(key, self._clock() + self._refresh_budget)
        task.add_done_callback(self._refresh_done)

    def _refresh_done(self, task: asyncio.Future[DirectoryEntry | None]) -> None:
        self._refreshing -= 1
        if task.cancelled():
            self._observer.refreshed("cancelled")
            return
        error = task.exception()
        self._observer.refreshed(None if error is None else _kind(error))


_STAMP = struct.Struct("d")
#: Distinct attribute-name layouts remembered; entries of other layouts carry their names themselves.
_MAX_SHAPES = 1024

Shape = tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]


class _Packer:
    """One bytes object per entry: the read time, then the entry in marshal's compact form, with the
    attribute names (the same for almost every entry) replaced by the number of their layout. A third
    of the size of the same entry as dicts and tuples. Memory only: never written anywhere.

    The entry's groups travel with it (each membership read: its names and whether the walk was
    complete), so an answer from memory carries the same group claims and truncation flag."""

    def __init__(self) -> None:
        self._shapes: dict[Shape, int] = {}
        self._by_number: list[Shape] = []

    def pack(self, entry: DirectoryEntry | None, read_at: float) -> bytes:
        stamp = _STAMP.pack(read_at)
        if entry is None:
            return stamp
        linked = entry.linked
        shape: Shape = (tuple(entry.attributes), tuple(tuple(values) for values in linked.values()))
        number = self._shapes.get(shape)
        if number is None and len(self._by_number) < _MAX_SHAPES:
            number = self._shapes[shape] = len(self._by_number)
            self._by_number.append(shape)
        values = (
            tuple(entry.attributes.values()),
            tuple(linked),
            tuple(tuple(attributes.values()) for attributes in linked.values()),
            tuple((membership, groups.names, groups.complete) for membership, groups in entry.groups.items()),
        )
        return stamp + marshal.dumps(
            (entry.dn, -1 if number is None else number, shape if number is None else (), values)
        )

    def unpack(self, record: bytes) -> DirectoryEntry:
        dn, number, shape, (values, targets, linked_values, groups) = marshal.loads(memoryview(record)[_STAMP.size :])
        names, linked_names = self._by_number[number] if number >= 0 else shape
        return DirectoryEntry(
            dn,
            dict(zip(names, values, strict=True)),
            {
                target: dict(zip(target_names, target_values, strict=True))
                for target, target_names, target_values in zip(targets, linked_names, linked_values, strict=True)
            },
            {membership: Groups(names, complete) for membership, names, complete in groups},
        )


#: An attribute value that reads as a DN (``cn=...,ou=...``): what ``memberOf`` and ``manager`` hold.
_DN_VALUE = re.compile(r"[A-Za-z][A-Za-z0-9.-]*=")


@dataclass(frozen=True, slots=True)
class _Tags:
    """What of an entry a change can touch: its own DN, the DNs it refers to (DN-valued attributes,
    resolved entries), as :func:`dn_key` s, and the names of the groups it lists, lower-cased."""

    own: str
    refs: frozenset[str]
    names: frozenset[str]


def _tags(entry: DirectoryEntry) -> _Tags:
    refs = {dn_key(dn) for dn in entry.linked}
    refs.update(dn_key(value) for values in entry.attributes.values() for value in values if _DN_VALUE.match(value))
    names = {name.lower() for groups in entry.groups.values() for name in groups.names}
    return _Tags(dn_key(entry.dn), frozenset(refs), frozenset(names))


def _touches(changes: Changes, key: UserQuery, tags: _Tags | None) -> bool:
    if changes.resync or key.identifier in changes.identifiers:
        return True
    return tags is not None and (
        tags.own in changes.entries
        or tags.own in changes.members
        or not tags.refs.isdisjoint(changes.entries)
        or not tags.names.isdisjoint(changes.names)
    )


class _Keys:
    """Tag -> the cache keys carrying it. Most tags (a person's own DN) have one key: stored as it is,
    a set only from the second key on (an empty set alone is 216 bytes)."""

    __slots__ = ("_by_tag",)

    def __init__(self) -> None:
        self._by_tag: dict[str, UserQuery | set[UserQuery]] = {}

    def __len__(self) -> int:
        return len(self._by_tag)

    def add(self, tag: str, key: UserQuery) -> None:
        held = self._by_tag.get(tag)
        if held is None:
            self._by_tag[tag] = key
        elif isinstance(held, set):
            held.add(key)
        elif held is not key and held != key:
            self._by_tag[tag] = {held, key}

    def discard(self, tag: str, key: UserQuery) -> None:
        held = self._by_tag.get(tag)
        if isinstance(held, set):
            held.discard(key)
            if len(held) == 1:
                self._by_tag[tag] = next(iter(held))
        elif held is not None and (held is key or held == key):
            del self._by_tag[tag]

    def get(self, tag: str) -> Iterable[UserQuery]:
        held = self._by_tag.get(tag)
        if held is None:
            return ()
        return held if isinstance(held, set) else (held,)

    def clear(self) -> None:
        self._by_tag.clear()


class _ChangeIndex:
    """Which cached entries a change affects, by the entries' own DNs, the DNs they refer to, the group
    names they list, and the identifier they were looked up by ("no such user" too). Bounded with the
    cache: every entry stored is added, every entry dropped removed (its tags recomputed from its record),
    so the index never holds a key the cache does not."""

    __slots__ = ("_ids", "_names", "_own", "_refs")

    def __init__(self) -> None:
        self._own, self._refs, self._names, self._ids = _Keys(), _Keys(), _Keys(), _Keys()

    def __len__(self) -> int:
        """Tags held (for the memory benchmark)."""
        return len(self._own) + len(self._refs) + len(self._names) + len(self._ids)

    def add(self, key: UserQuery, tags: _Tags | None) -> None:
        self._ids.add(key.identifier, key)  # the key's own string: no copy
        if tags is None:
            return
        self._own.add(tags.own, key)
        for ref in tags.refs:
            self._refs.add(ref, key)
        for name in tags.names:
            self._names.add(name, key)

    def discard(self, key: UserQuery, tags: _Tags | None) -> None:
        self._ids.discard(key.identifier, key)
        if tags is None:
            return
        self._own.discard(tags.own, key)
        for ref in tags.refs:
            self._refs.discard(ref, key)
        for name in tags.names:
            self._names.discard(name, key)

    def clear(self) -> None:
        for keys in (self._own, self._refs, self._names, self._ids):
            keys.clear()

    def affected(self, changes: Changes) -> dict[UserQuery, EvictionCause]:
        """Every key ``changes`` affects, with the first cause that applies."""
        doomed: dict[UserQuery, EvictionCause] = {}
        causes: tuple[tuple[EvictionCause, _Keys, Collection[str]], ...] = (
            ("deleted", self._own, changes.deleted),
            ("entry", self._own, changes.entries),
            ("entry", self._ids, changes.identifiers),
            ("reference", self._refs, changes.entries),
            ("group", self._names, changes.names),
            ("member", self._own, changes.members),
        )
        for cause, keys, tags in causes:
            for tag in tags:
                for key in keys.get(tag):
                    doomed.setdefault(key, cause)
        return doomed


def _read_at(record: bytes) -> float:
    return float(_STAMP.unpack_from(record)[0])


def _kind(error: BaseException) -> str:
    if isinstance(error, DeadlineExceeded):
        return "deadline"
    if isinstance(error, DirectoryError):
        return error.kind
    return type(error).__name__


_NEGATIVE_HIT = LookupResult(None, "negative_hit")

K = TypeVar("K")
V = TypeVar("V")


class RecentAnswers(Generic[K, V]):
    """Answers given in the last ``window_seconds``, at most ``max_entries``: Okta re-sends an event it
    got no answer for in time, and the retry must get the answer the first call got. The caller's key
    must name the event itself (:class:`~service.hooks.Hook` uses the digest of its body), not a part of
    it that another event can share."""

    def __init__(self, window_seconds: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self._window = window_seconds
        self._max = max_entries
        self._clock = clock
        self._answers: OrderedDict[K, tuple[V, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        """Whether anything is ever remembered (a window and a size above 0)."""
        return self._window > 0 and self._max > 0

    def get(self, key: K) -> V | None:
        record = self._answers.get(key)
        if record is None:
            return None
        if self._clock() - record[1] >= self._window:
            del self._answers[key]
            return None
        return record[0]

    def put(self, key: K, value: V) -> None:
        if not self.enabled:
            return
        self._answers[key] = (value, self._clock())
        self._answers.move_to_end(key)
        while len(self._answers) > self._max:
            self._answers.popitem(last=False)

    def clear(self) -> None:
        self._answers.clear()


__all__ = [
    "EVICTION_CAUSES",
    "CacheObserver",
    "CachePolicy",
    "CachedDirectory",
    "EvictionCause",
    "FeedHealth",
    "NullCacheObserver",
    "RecentAnswers",
]
