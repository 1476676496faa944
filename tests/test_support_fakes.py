"""The fakes the hook, cache and policy tests stand on (tests/support/fakes.py): fake time that asyncio's
timers follow, and a directory that answers like the real one in what the logic in front of it sees."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from support.fakes import FakeClock, FakeClockStuck, FakeDirectory, person

from service.directory import DeadlineExceeded, DirectoryError, Groups, UserQuery


def test_the_clock_moves_only_forward_and_only_when_told() -> None:
    clock = FakeClock()
    assert clock() == clock() == 1000.0
    assert clock.advance(2.5) == clock() == 1002.5
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_timers_count_fake_seconds_and_an_idle_loop_jumps_to_the_next_one() -> None:
    clock = FakeClock()

    async def scenario() -> tuple[float, bool]:
        await asyncio.sleep(3600)
        event = asyncio.Event()
        try:
            await asyncio.wait_for(event.wait(), 5)
            timed_out = False
        except TimeoutError:
            timed_out = True
        return clock(), timed_out

    started = time.monotonic()
    assert clock.run(scenario()) == (1000.0 + 3600 + 5, True)
    assert time.monotonic() - started < 1  # an hour and five seconds, in no real time


def test_a_scenario_waiting_on_nothing_fails_instead_of_hanging() -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    with pytest.raises(FakeClockStuck):
        FakeClock().run(forever(), stuck_after=0.05)


ROSARIO = "rosario.jones@example.com"
CAROL_DN = "uid=carol.chen,ou=people,dc=example,dc=com"


def test_the_directory_answers_only_what_the_query_asks() -> None:
    clock = FakeClock()
    entry = dataclasses.replace(
        person(ROSARIO, title="Engineer", employeeNumber="1002", manager=CAROL_DN),
        linked={CAROL_DN: {"mail": ("carol.chen@example.com",), "title": ("VP",)}},
        groups={"direct": Groups(("engineering",)), "nested": Groups(("all-staff", "engineering"))},
    )
    directory = FakeDirectory({ROSARIO: entry}, clock=clock)
    query = UserQuery.of("Rosario.Jones@Example.com", frozenset({"title", "manager"}), {"manager": frozenset({"mail"})})

    async def scenario() -> None:
        found = (await directory.find_user(query, clock() + 1)).entry
        assert found is not None and found.dn == entry.dn
        assert dict(found.attributes) == {"title": ("Engineer",), "manager": (CAROL_DN,)}
        assert found.linked == {CAROL_DN: {"mail": ("carol.chen@example.com",)}}
        assert found.groups == {}
        nested = dataclasses.replace(query, groups=frozenset({"nested"}))
        assert (await directory.find_user(nested, clock() + 1)).entry.groups == {  # type: ignore[union-attr]
            "nested": Groups(("all-staff", "engineering"))
        }
        assert (await directory.find_user(query.with_identifier("nobody@example.com"), clock() + 1)).entry is None

    clock.run(scenario())
    assert directory.calls == 3 and directory.queries[0] == query


def test_the_directory_fails_hangs_and_sheds_when_told() -> None:
    clock = FakeClock()
    directory = FakeDirectory({ROSARIO: person(ROSARIO)}, clock=clock)
    query = UserQuery.of(ROSARIO, frozenset({"mail"}), {})

    async def scenario() -> None:
        directory.fail(DirectoryError("connect", "down"))
        for _ in range(2):  # the same error again, each time raised afresh
            with pytest.raises(DirectoryError):
                await directory.find_user(query, clock() + 1)
        directory.fail(None)
        with pytest.raises(DeadlineExceeded) as shed:
            await directory.find_user(query, clock() + 1, start_by=clock() - 0.001)
        assert shed.value.stage == "queue"
        directory.hang()
        started = clock()
        with pytest.raises(DeadlineExceeded) as late:
            await directory.find_user(query, started + 2.5)
        assert late.value.stage == "search" and clock() == started + 2.5
        waiting = asyncio.create_task(directory.find_user(query, clock() + 2.5))
        await asyncio.sleep(0)
        assert directory.held == 1
        directory.release()
        assert (await waiting).entry is not None and directory.held == 0

    clock.run(scenario())


def test_the_directory_compares_the_local_part_with_strip_domains() -> None:
    people = {"alice": person("alice@corp.example")}
    directory = FakeDirectory(people, clock=FakeClock(), strip_domains=("corp.example",))
    assert directory.search_value("alice@corp.example") == "alice"
    assert directory.search_value("alice@elsewhere.example") is None
