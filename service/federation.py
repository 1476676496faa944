"""Several directories answering as one person: who holds them, what the others add, in one deadline.

Companies keep people in more than one directory: two forests after a merger, a domain per region, an
HR directory beside the accounts. A hook serves every user of its Okta flow, so it asks them all:

- The directories that *hold people* (configured without ``join``) are the candidates for a login:
  those whose ``user_search`` routes it to them (``domains``, ``strip_domains``), or every one when
  none routes. They are asked in parallel. Found in exactly one: that is the person's *home*. Found in
  two: ``ambiguous``, never a guess (one person's values must not reach another's token).
- *Secondary* directories (with ``join``) never decide who the person is. One joined by an attribute is
  searched with that attribute's value in the home entry (``employeeID`` -> HR's ``employeeNumber``) as
  soon as the home entry arrives; one joined by the identifier is asked beside the candidates. Only the
  directories some rule reads are asked at all.
- Everything ends by the one deadline. A directory that fails or is late costs its own part only: the
  answer carries what arrived, and :attr:`Person.missing` says which part is not there and why.

One directory (the ``directory:`` form) takes the plain path: one awaited lookup, no task, the same
exceptions as before. Standard library and the directory protocol only: no ldap3, no Okta.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from service.directory import (
    DEFAULT_NAME,
    CacheResult,
    CredentialDirectory,
    DeadlineExceeded,
    DirectoryEntry,
    DirectoryError,
    DirectorySet,
    Join,
    PasswordCheck,
    UserDirectory,
    UserQuery,
)

#: How long past its deadline a lookup is waited for before it counts as late: each one ends by the
#: deadline itself (the thread bridge and the cache see to it); this only guards against one that does not.
_LATE_GRACE_SECONDS = 0.05

#: A directory that answered "no entry for this person": rules reading it get their defaults.
NOBODY = DirectoryEntry("", {})


@dataclass(frozen=True)
class Source:
    """One directory as a hook type reads it: its lookups (through the hook type's own cache, or not)
    and what the hook's rules need of it."""

    name: str
    directory: UserDirectory
    #: None: it holds people (a candidate for a login). Else how it finds the person another one holds.
    join: Join | None
    #: What the rules read of it (attributes, DN resolutions, groups), for any person (:meth:`UserQuery.with_value`).
    query: UserQuery


@dataclass(frozen=True, slots=True)
class Person:
    """One person's entries, by directory."""

    #: The directory that holds the person.
    home: str
    #: Every directory that answered: its entry, or :data:`NOBODY` when it has none for the person.
    entries: Mapping[str, DirectoryEntry]
    #: Directories that did not answer in time, and why: ``deadline`` or a directory error kind.
    missing: Mapping[str, str] = field(default_factory=dict)
    #: How the caches answered: ``stale`` when any part is an older answer served because its directory
    #: failed, else the home's (None without a cache).
    cache: CacheResult | None = None
    #: For ``stale``: the failure that made a directory unable to answer.
    error_kind: str | None = None

    def entry(self, directory: str | None) -> DirectoryEntry | None:
        """What a rule reading ``directory`` (None: the home) maps: the entry (:data:`NOBODY` when that
        directory has none for the person, or was not asked), or None when its part is missing."""
        if directory is None:
            return self.entries[self.home]
        if directory in self.missing:
            return None
        return self.entries.get(directory, NOBODY)


@dataclass(frozen=True, slots=True)
class Found:
    """:meth:`Federation.find`'s answer: the person, or None for nobody (with how a cache said so)."""

    person: Person | None
    cache: CacheResult | None = None


class Federation:
    """The directories of one hook type, asked as one (see the module docstring)."""

    def __init__(self, sources: Iterable[Source], clock: Callable[[], float] = time.monotonic) -> None:
        """``clock``: what deadlines are instants of (:func:`time.monotonic`; a fake clock in tests)."""
        self._clock = clock
        every = list(sources)
        self._candidates = [source for source in every if source.join is None]
        if not self._candidates:
            raise ValueError("no directory holds people (every one has a join)")
        self._beside = [source for source in every if source.join is not None and source.join.identifier]
        self._after = [source for source in every if source.join is not None and source.join.attribute]

    @classmethod
    def plan(
        cls,
        directories: DirectorySet,
        reads: Mapping[str | None, UserQuery],
        directory_of: Callable[[str], UserDirectory],
        clock: Callable[[], float] = time.monotonic,
    ) -> Federation:
        """The sources of a hook whose rules read ``reads`` (directory name, None for the home -> what
        they read there). The directories that hold people are always asked (to find the person), for
        what the home's rules, their own and the joins read; a secondary only when a rule reads it.
        ``directory_of(name)``: the directory to ask (the hook type's cache of it)."""
        home_reads = reads.get(None, UserQuery("", frozenset()))
        joined = frozenset(
            config.join.attribute.lower()
            for name, config in directories.named.items()
            if name in reads and config.join is not None and config.join.attribute is not None
        )
        account_reads = _union(home_reads, UserQuery("", joined))
        sources = []
        for name, config in directories.named.items():
            own = reads.get(name)
            if config.join is None:
                query = _union(account_reads, own) if own is not None else account_reads
            elif own is None:
                continue  # no rule reads it: never asked
            else:
                query = own
            sources.append(Source(name, directory_of(name), config.join, query))
        return cls(sources, clock)

    @classmethod
    def alone(cls, directory: UserDirectory, reads: Mapping[str | None, UserQuery]) -> Federation:
        """One directory holding everyone, reading what every rule reads (tests, tools: the hooks'
        directory given as it is)."""
        query = UserQuery("", frozenset())
        for wanted in reads.values():
            query = _union(query, wanted)
        return cls([Source(DEFAULT_NAME, directory, None, query)])

    def search_values(self, identifier: str) -> dict[str, str]:
        """What each directory asked for ``identifier`` compares (its ``user_search``): the candidates
        whose domains hold the login, and the secondaries joined by the identifier. Empty when no
        directory holds the login (asked once per request)."""
        values: dict[str, str] = {}
        for source in (*self._candidates, *self._beside):
            value = source.directory.search_value(identifier)
            if value is not None:
                values[source.name] = value
        return values if any(source.name in values for source in self._candidates) else {}

    async def find(self, values: Mapping[str, str], deadline: float, start_by: float | None = None) -> Found:
        """The person ``values`` (from :meth:`search_values`) names, with what every directory the rules
        read has of them, by ``deadline`` (a :func:`time.monotonic` instant).

        Raises :class:`DeadlineExceeded` or :class:`DirectoryError` when who the person is cannot be told:
        no candidate found them and one of them failed, or two found them (``ambiguous``)."""
        candidates = [source for source in self._candidates if source.name in values]
        beside = [source for source in self._beside if source.name in values]
        if len(candidates) == 1 and not beside:  # one directory holds the login: no task to start
            home = candidates[0]
            lookup = await home.directory.find_user(home.query.with_value(values[home.name]), deadline, start_by)
            if lookup.entry is None:
                return Found(None, lookup.cache)
            if not self._after:
                return Found(
                    Person(home.name, {home.name: lookup.entry}, cache=lookup.cache, error_kind=lookup.error_kind)
                )
            parts = _Parts(deadline, self._clock)
            parts.answered(home.name, lookup.entry, lookup.cache, lookup.error_kind)
            with parts:
                self._join(lookup.entry, parts, start_by)
                await parts.settle()
            return Found(parts.person(home.name))
        parts = _Parts(deadline, self._clock)
        with parts:
            return await self._find_among(parts, candidates, beside, values, start_by)

    async def _find_among(
        self,
        parts: _Parts,
        candidates: list[Source],
        beside: list[Source],
        values: Mapping[str, str],
        start_by: float | None,
    ) -> Found:
        for source in beside:
            parts.ask(source, values[source.name], start_by)
        pending = {parts.ask(source, values[source.name], start_by) for source in candidates}
        home: str | None = None
        failures: list[BaseException] = []
        caches: list[CacheResult | None] = []
        while pending:
            done, pending = await asyncio.wait(pending, timeout=parts.time_left(), return_when=asyncio.FIRST_COMPLETED)
            if not done:  # past the deadline: the ones still out are late
                break
            for task in done:
                name = task.get_name()
                error = task.exception()
                if error is not None:
                    failures.append(error)
                    continue
                entry = parts.entries.get(name)
                caches.append(parts.caches.get(name))
                if entry is None or entry is NOBODY:
                    continue
                if home is not None:
                    raise DirectoryError("ambiguous", "several directories hold this person")
                home = name
                self._join(entry, parts, start_by)
        if home is None:
            if pending or failures:
                raise _first_failure(failures) if failures else DeadlineExceeded("search")
            return Found(None, _nobody_cache(caches))
        await parts.settle()
        return Found(parts.person(home))

    def _join(self, entry: DirectoryEntry, parts: _Parts, start_by: float | None) -> None:
        """Ask each directory joined by an attribute for the person ``entry`` (the home's) is."""
        for source in self._after:
            assert source.join is not None and source.join.attribute is not None
            found = entry.values(source.join.attribute)
            if not found or not found[0]:
                parts.answered(source.name, NOBODY, None, None)  # nothing to join on: no entry there
                continue
            # As the home entry holds it: the joined directory's matching rule for its match attribute
            # decides what is equal (lower-casing would miss every value of a caseExactMatch attribute).
            parts.ask(source, found[0], start_by)


class _Parts:
    """The lookups of one call, each a task named after its directory, and what they gave. Used as a
    context: whatever ends the call (an answer, ``ambiguous``, the caller cancelled because Okta hung up),
    no lookup of it is left running, and no failure of one is left unread (asyncio would log it)."""

    def __init__(self, deadline: float, clock: Callable[[], float]) -> None:
        self._deadline = deadline
        self._clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.entries: dict[str, DirectoryEntry] = {}
        self.caches: dict[str, CacheResult | None] = {}
        self.kinds: dict[str, str] = {}
        self.missing: dict[str, str] = {}

    def __enter__(self) -> _Parts:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cancel()

    def time_left(self) -> float:
        return max(0.0, self._deadline - self._clock()) + _LATE_GRACE_SECONDS

    def ask(self, source: Source, value: str, start_by: float | None) -> asyncio.Task[None]:
        task = asyncio.create_task(self._lookup(source, value, start_by), name=source.name)
        task.add_done_callback(_read_failure)
        self._tasks[source.name] = task
        return task

    async def _lookup(self, source: Source, value: str, start_by: float | None) -> None:
        try:
            lookup = await source.directory.find_user(source.query.with_value(value), self._deadline, start_by)
        except DeadlineExceeded:
            self.missing[source.name] = "deadline"
            raise
        except DirectoryError as error:
            self.missing[source.name] = error.kind
            raise
        except Exception:
            self.missing[source.name] = "other"
            raise
        self.answered(source.name, lookup.entry or NOBODY, lookup.cache, lookup.error_kind)

    def answered(self, name: str, entry: DirectoryEntry, cache: CacheResult | None, error_kind: str | None) -> None:
        self.entries[name] = entry
        self.caches[name] = cache
        if error_kind is not None:
            self.kinds[name] = error_kind

    async def settle(self) -> None:
        """Wait for every lookup until the deadline; what is still out then is missing (``deadline``)."""
        tasks = list(self._tasks.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.time_left())
            for task in late:
                self.missing[task.get_name()] = "deadline"
                task.cancel()

    def cancel(self) -> None:
        for task in self._tasks.values():
            task.cancel()  # nothing for a task that is done

    def person(self, home: str) -> Person:
        missing = {name: reason for name, reason in self.missing.items() if name not in self.entries}
        stale = [name for name, cache in self.caches.items() if cache == "stale"]
        cache: CacheResult | None = "stale" if stale else self.caches.get(home)
        error_kind = self.kinds.get(stale[0]) if stale else None
        return Person(home, dict(self.entries), missing, cache, error_kind)


class PasswordHolders:
    """The directories that hold people, as the password import hook asks them: the one that holds the
    person judges the password, in one bind; no other directory ever sees it.

    One candidate for the login (one directory, or a login routed by domain): its own search and bind,
    in one worker call. Several: each searched in parallel (no attribute read), then one bind in the one
    that found the person. Two found them: ``ambiguous`` (binding as either could let the wrong one in).
    A candidate that failed while none or one found them: its failure is raised (UNVERIFIED, Okta asks
    again at the next sign-in), because the person it may hold is unknown: a password is never checked
    against one of two people the directories could not tell apart."""

    def __init__(self, directories: Mapping[str, CredentialDirectory]) -> None:
        self._directories = dict(directories)

    def search_values(self, identifier: str) -> dict[str, str]:
        """As :meth:`Federation.search_values`, for the directories that hold people."""
        values = {name: directory.search_value(identifier) for name, directory in self._directories.items()}
        return {name: value for name, value in values.items() if value is not None}

    async def verify(self, values: Mapping[str, str], password: str, deadline: float) -> PasswordCheck:
        """Whether ``password`` is the one of the person ``values`` names, by ``deadline``."""
        if len(values) == 1:
            ((name, value),) = values.items()
            return await self._directories[name].verify_password(_NO_ATTRIBUTES.with_value(value), password, deadline)
        names = list(values)
        lookups = await asyncio.gather(
            *(self._directories[name].find_user(_NO_ATTRIBUTES.with_value(values[name]), deadline) for name in names),
            return_exceptions=True,
        )
        failures = [lookup for lookup in lookups if isinstance(lookup, BaseException)]
        found = [
            (name, lookup.entry.dn)
            for name, lookup in zip(names, lookups, strict=True)
            if not isinstance(lookup, BaseException) and lookup.entry is not None
        ]
        if len(found) > 1:
            raise DirectoryError("ambiguous", "several directories hold this person")
        if failures:
            raise _first_failure(failures)
        if not found:
            return PasswordCheck(found=False)
        ((name, dn),) = found
        return PasswordCheck(found=True, rejection=await self._directories[name].check_password(dn, password, deadline))


#: The search before a bind reads no attribute: it only finds the one entry to bind as.
_NO_ATTRIBUTES = UserQuery("", frozenset())


def _read_failure(task: asyncio.Task[None]) -> None:
    """A lookup's failure is in :attr:`_Parts.missing` already (or raised by who awaited it)."""
    if not task.cancelled():
        task.exception()


def _union(first: UserQuery, second: UserQuery) -> UserQuery:
    """What either query reads."""
    resolve: dict[str, frozenset[str]] = dict(first.resolve)
    for attribute, targets in second.resolve:
        resolve[attribute] = resolve.get(attribute, frozenset()) | targets
    return UserQuery.of("", first.attributes | second.attributes, resolve, first.groups | second.groups)


def _first_failure(failures: list[BaseException]) -> BaseException:
    """The failure to report when nobody was found and a candidate failed: a directory error before a
    deadline (it says more), else the first deadline."""
    for failure in failures:
        if isinstance(failure, DirectoryError):
            return failure
    return failures[0]


def _nobody_cache(caches: list[CacheResult | None]) -> CacheResult | None:
    """How "nobody" was known, when every candidate said so: as they all said (``negative_hit``: every one
    from memory), else ``miss`` (some directory was asked)."""
    kinds = set(caches)
    return caches[0] if len(kinds) == 1 else "miss"
