"""A clock and a directory that tests control, so that the hooks, the cache and the failure policies are
tested in microseconds, without a slapd and without sleeping (the way httpx ships ``MockTransport`` and
structlog ships ``structlog.testing``).

- :class:`FakeClock`: monotonic seconds that move only when a test moves them. Hand it to
  ``CachedDirectory`` and ``RecentAnswers`` as their ``clock``, and run the scenario with
  :meth:`FakeClock.run`: the event loop's own time is then the fake clock, so asyncio's timeouts (the
  ``wait_for`` in ``CachedDirectory``, a hanging :class:`FakeDirectory`'s deadline) count fake seconds too,
  and a loop with nothing left to do but wait jumps straight to its next timer instead of sleeping.
- :class:`FakeDirectory`: a ``UserDirectory`` answering from a dict, told to fail or to hang until
  released or until the deadline, recording every query it is asked.

Real slapd, Prometheus and Helm stay for what only they can prove: LDAP behaviour, start-up, signals,
the demo. These fakes are for the logic in front of the directory.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from service.directory import (
    DeadlineExceeded,
    DirectoryEntry,
    Groups,
    LookupResult,
    Membership,
    PasswordCheck,
    PasswordRejection,
    UserQuery,
    UserSearch,
)
from service.directory.errors import Stage

T = TypeVar("T")

PEOPLE_DN = "ou=people,dc=example,dc=com"


class FakeClockStuck(AssertionError):
    """The scenario waits on something that can never happen: no timer is pending and nothing woke the
    loop for ``stuck_after`` real seconds (a test waiting on a lookup nobody releases, say)."""


class FakeClock:
    """Monotonic seconds that move only through :meth:`advance` (or, inside :meth:`run`, when the event
    loop has nothing to do but wait for its next timer)."""

    def __init__(self, start: float = 1_000.0) -> None:
        # Not 0: an instant of 0 would hide code that mistakes "no time" for "the start of time".
        self._now = start

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock ``seconds`` forward; the new time."""
        if seconds < 0:
            raise ValueError("a monotonic clock never goes back")
        self._now += seconds
        return self._now

    def run(self, main: Coroutine[Any, Any, T], *, stuck_after: float = 10.0) -> T:
        """Run ``main`` to its end on an event loop whose time is this clock.

        Timers (``asyncio.sleep``, ``wait_for``, ``asyncio.timeout``) fire at fake instants. When every
        task waits and a timer is pending, the clock jumps to it at once: a hook waiting out its deadline
        on a hanging directory takes no real time. Threads (``run_in_executor``) run in real time while
        fake time may jump past their timeouts: keep them out of scenarios run here. A scenario that waits
        with no timer pending and nothing happening for ``stuck_after`` real seconds fails with
        :class:`FakeClockStuck` instead of hanging the test run.

        An error the loop reports instead of raising (an exception in a done callback, a task's
        exception nobody retrieved, at the end of the scenario too) fails the run: asyncio only logs them."""
        reported: list[dict[str, Any]] = []

        def loop() -> _FakeTimeLoop:
            fake = _FakeTimeLoop(self, stuck_after)
            fake.set_exception_handler(lambda _, context: reported.append(context))
            return fake

        with asyncio.Runner(loop_factory=loop) as runner:
            result = runner.run(main)
        if reported:
            raise AssertionError(f"the event loop reported errors: {reported}")
        return result


class _JumpingSelector(selectors.DefaultSelector):
    """The loop's selector: where the loop would block until its next timer, the fake clock jumps there."""

    def __init__(self, clock: FakeClock, stuck_after: float) -> None:
        super().__init__()
        self._clock = clock
        self._stuck_after = stuck_after

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        if timeout is None:  # no timer pending: only I/O or another thread can wake the loop
            ready = super().select(self._stuck_after)
            if not ready:
                raise FakeClockStuck(f"nothing scheduled and nothing happened for {self._stuck_after} s")
            return ready
        self._clock.advance(timeout)
        return []


class _FakeTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock: FakeClock, stuck_after: float) -> None:
        self._fake_clock = clock
        super().__init__(_JumpingSelector(clock, stuck_after))

    def time(self) -> float:
        return self._fake_clock()


async def until(condition: Callable[[], bool], *, turns: int = 100) -> None:
    """Let the other tasks run, without time passing, until ``condition`` holds (a background refresh
    reached the directory, say)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"not reached in {turns} turns of the event loop")


def person(mail: str, **attributes: str | tuple[str, ...]) -> DirectoryEntry:
    """A person's entry under ``ou=people`` holding ``mail`` and ``attributes`` (names lower-cased, as the
    directory reports them; a string is one value)."""
    uid = mail.partition("@")[0]
    values = {"mail": (mail,)} | {
        name.lower(): (value,) if isinstance(value, str) else value for name, value in attributes.items()
    }
    return DirectoryEntry(f"uid={uid},{PEOPLE_DN}", values)


class FakeDirectory:
    """A :class:`~service.directory.UserDirectory` answering from ``people``: the value the directory
    compares (the mail, or with ``strip_domains`` the local part), in any case, -> the entry.

    Like the ldap3 ``Directory`` it answers only what the query asks (its attributes, the entries of its
    DN resolutions, its memberships), sheds a lookup asked after ``start_by`` (``DeadlineExceeded("queue")``)
    and raises ``DeadlineExceeded`` when a lookup it holds reaches its deadline. ``clock`` is the
    one deadlines are instants of: a :class:`FakeClock` in scenarios run with :meth:`FakeClock.run`."""

    def __init__(
        self,
        people: Mapping[str, DirectoryEntry] | None = None,
        *,
        clock: Callable[[], float],
        strip_domains: tuple[str, ...] = (),
        search: UserSearch | None = None,
        passwords: Mapping[str, str] | None = None,
    ) -> None:
        """``search``: the configured ``user_search`` whose values it compares (default: ``mail``, or
        ``uid`` with ``strip_domains``); ``passwords``: DN -> password, for :meth:`check_password`."""
        self._people = {key.lower(): entry for key, entry in (people or {}).items()}
        self._clock = clock
        match = "uid" if strip_domains else "mail"
        self._search = search or UserSearch(PEOPLE_DN, match_attribute=match, strip_domains=strip_domains)
        self._passwords = dict(passwords or {})
        #: The DNs :meth:`check_password` was asked to bind as, in order.
        self.binds: list[str] = []
        #: Every query asked, in order (shed ones too).
        self.queries: list[UserQuery] = []
        #: The ``(deadline, start_by)`` each of :attr:`queries` was asked with.
        self.deadlines: list[tuple[float, float | None]] = []
        #: The deadline each of :attr:`binds` was asked with.
        self.bind_deadlines: list[float] = []
        #: Lookups waiting on :meth:`hang` now.
        self.held = 0
        self._failure: BaseException | None = None
        self._gate: asyncio.Event | None = None
        self._stage: Stage = "search"

    @property
    def calls(self) -> int:
        return len(self.queries)

    def put(self, key: str, entry: DirectoryEntry) -> None:
        """Add or replace the entry ``key`` (what the directory compares) finds."""
        self._people[key.lower()] = entry

    def delete(self, key: str) -> None:
        del self._people[key.lower()]

    def fail(self, error: BaseException | None) -> None:
        """Every lookup from now on raises ``error`` (a ``DirectoryError``, a ``DeadlineExceeded``, or
        anything else standing in for a bug); None: answer again."""
        self._failure = error

    def hang(self, stage: Stage = "search") -> None:
        """Lookups from now on wait until :meth:`release` or their deadline, where they raise
        ``DeadlineExceeded(stage)`` (where the real directory was: ``pool_wait``, ``connect``...)."""
        self._stage = stage
        if self._gate is None:
            self._gate = asyncio.Event()

    def release(self) -> None:
        """Let every held lookup go on (to its answer, or the failure set by :meth:`fail`); answer at once
        from now on."""
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.set()

    def search_value(self, identifier: str) -> str | None:
        return self._search.search_value(identifier)

    async def find_user(self, query: UserQuery, deadline: float, start_by: float | None = None) -> LookupResult:
        self.queries.append(query)
        self.deadlines.append((deadline, start_by))
        if start_by is not None and self._clock() > start_by:
            raise DeadlineExceeded("queue")
        gate = self._gate
        if gate is not None:
            self.held += 1
            try:
                await asyncio.wait_for(gate.wait(), max(0.0, deadline - self._clock()))
            except TimeoutError:
                raise DeadlineExceeded(self._stage) from None
            finally:
                self.held -= 1
        if self._failure is not None:
            raise self._failure.with_traceback(None)
        return LookupResult(self._answer(query))

    async def check_password(self, dn: str, password: str, deadline: float) -> PasswordRejection | None:
        self.binds.append(dn)
        self.bind_deadlines.append(deadline)
        if self._failure is not None:
            raise self._failure.with_traceback(None)
        return None if self._passwords.get(dn) == password else PasswordRejection.INVALID_CREDENTIALS

    async def verify_password(self, query: UserQuery, password: str, deadline: float) -> PasswordCheck:
        entry = (await self.find_user(query, deadline)).entry
        if entry is None:
            return PasswordCheck(found=False)
        return PasswordCheck(found=True, rejection=await self.check_password(entry.dn, password, deadline))

    def _answer(self, query: UserQuery) -> DirectoryEntry | None:
        # as the directory does: a query that carries its search value (the hooks') is not computed again
        value = query.identifier if query.compared else self.search_value(query.identifier)
        entry = None if value is None else self._people.get(value.lower())
        if entry is None:
            return None
        attributes = {name: values for name, values in entry.attributes.items() if name in query.attributes}
        linked = {
            dn: {name: values for name, values in entry.linked.get(dn, {}).items() if name in wanted}
            for attribute, wanted in query.resolve
            for dn in entry.attributes.get(attribute, ())
            if dn in entry.linked
        }
        groups: dict[Membership, Groups] = {
            membership: entry.groups.get(membership, Groups()) for membership in query.groups
        }
        return DirectoryEntry(entry.dn, attributes, linked, groups)


__all__ = ["FakeClock", "FakeClockStuck", "FakeDirectory", "person", "until"]
