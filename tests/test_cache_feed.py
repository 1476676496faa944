"""The caches and the directory's change feed, on the fakes (tests/support/fakes.py): what a change
evicts and why, the index that finds it bounded with the cache, the longer fresh time only while the
feed is current, a lookup overtaken by a change. No slapd, no sleeping: fake seconds.

The feed itself, against a real slapd and on recorded Active Directory answers, is in
tests/test_change_feed.py."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from support.config import service_config
from support.fakes import FakeClock, FakeDirectory, person, until

from service.cache import CachedDirectory, CachePolicy, FeedHealth
from service.directory import Changes, DirectoryEntry, DirectoryError, Groups, UserQuery
from service.directory.protocol import dn_key
from service.settings import ConfigError, parse_settings
from service.telemetry import Metrics, Telemetry

ANN, BEN, CAROL = "ann@example.com", "ben@example.com", "carol@example.com"
ANN_DN, BEN_DN, CAROL_DN = (f"uid={name},ou=people,dc=example,dc=com" for name in ("ann", "ben", "carol"))
ENGINEERING_DN = "cn=Engineering,ou=groups,dc=example,dc=com"
STAFF_DN = "cn=all-staff,ou=groups,dc=example,dc=com"

#: Ann: in Engineering (and, nested, all-staff), managed by Carol; Ben: all-staff only; Carol: nobody.
PEOPLE: dict[str, DirectoryEntry] = {
    ANN: dataclasses.replace(
        person(ANN, title="Engineer", manager=CAROL_DN, memberOf=(ENGINEERING_DN, STAFF_DN)),
        linked={CAROL_DN: {"mail": (CAROL,)}},
        groups={"direct": Groups(("Engineering",)), "nested": Groups(("Engineering", "all-staff"))},
    ),
    BEN: dataclasses.replace(
        person(BEN, title="Analyst", memberOf=(STAFF_DN,)),
        groups={"direct": Groups(("all-staff",)), "nested": Groups(("all-staff",))},
    ),
    CAROL: person(CAROL, title="VP"),
}
#: What a hook mapping title, the manager's mail, memberOf and nested group names asks for.
QUERY = UserQuery.of(
    "", frozenset({"title", "manager", "memberof"}), {"manager": frozenset({"mail"})}, frozenset({"nested"})
)
POLL = 10.0


class Recorder:
    def __init__(self) -> None:
        self.evictions: list[tuple[str, int]] = []

    def looked_up(self, result: str) -> None:
        pass

    def evicted(self, cause: str, count: int = 1) -> None:
        self.evictions.append((cause, count))

    def refreshed(self, error_kind: str | None) -> None:
        pass


class Feed:
    """Two hook types' caches (short ``fresh_seconds``, an hour while the feed is current) on one fake
    directory and clock, sharing one :class:`FeedHealth`, as the server wires them."""

    def __init__(self, **policy: Any) -> None:
        self.clock = FakeClock()
        self.directory = FakeDirectory(PEOPLE, clock=self.clock)
        self.health = FeedHealth(2 * POLL, self.clock)
        settings = {"fresh_seconds": 60, "feed_fresh_seconds": 3600, "refresh_ahead_seconds": 0, **policy}
        self.policy = CachePolicy(**settings)
        self.recorders = [Recorder(), Recorder()]
        self.caches = [
            CachedDirectory(self.directory, self.policy, recorder, self.clock, feed=self.health)
            for recorder in self.recorders
        ]

    def run(self, scenario: Any) -> Any:
        return self.clock.run(scenario)

    async def ask(self, mail: str, cache: int = 0) -> str | None:
        return (await self.caches[cache].find_user(QUERY.with_identifier(mail), self.clock() + 2.5)).cache

    async def title(self, mail: str, cache: int = 0) -> str:
        entry = (await self.caches[cache].find_user(QUERY.with_identifier(mail), self.clock() + 2.5)).entry
        assert entry is not None
        return entry.values("title")[0]

    def poll(self, changes: Changes | None = None) -> dict[str, int]:
        """A good poll, as the server's wiring reports it: every cache evicts, then the health hears."""
        changes = Changes() if changes is None else changes
        evictions: dict[str, int] = {}
        for cache in self.caches:
            for cause, count in cache.apply(changes).items():
                evictions[cause] = evictions.get(cause, 0) + count
        self.health.polled(self.clock(), self.clock(), changes.resync)
        return evictions

    def wait(self, seconds: float) -> None:
        """``seconds`` of good polls that find nothing."""
        for _ in range(int(seconds // POLL)):
            self.clock.advance(POLL)
            self.poll()

    def change(self, mail: str, **values: str) -> None:
        entry = self.directory._people[mail]
        attributes = {**entry.attributes, **{k.lower(): (v,) for k, v in values.items()}}
        self.directory.put(mail, dataclasses.replace(entry, attributes=attributes))


def changed(*dns: str, members: tuple[str, ...] = (), names: tuple[str, ...] = (), deleted: bool = False) -> Changes:
    keys = frozenset(dn_key(dn) for dn in dns)
    return Changes(
        keys,
        keys if deleted else frozenset(),
        frozenset(dn_key(dn) for dn in members),
        frozenset(name.lower() for name in names),
    )


def test_a_changed_person_is_evicted_from_every_hook_types_cache_and_read_again() -> None:
    feed = Feed()

    async def scenario() -> list[Any]:
        feed.poll(Changes(resync=True))  # the feed's first poll
        feed.clock.advance(1)
        for cache in (0, 1):
            for mail in (ANN, BEN):
                assert await feed.ask(mail, cache) == "miss"
        feed.change(ANN, title="Principal Engineer")
        feed.wait(600)  # past fresh_seconds: still served, the feed vouches for it
        before = [await feed.title(ANN, 0), await feed.title(ANN, 1)]
        evictions = feed.poll(changed(ANN_DN))
        return [before, evictions, [await feed.ask(ANN, c) for c in (0, 1)], [await feed.title(ANN, c) for c in (0, 1)]]

    before, evictions, asked, titles = feed.run(scenario())
    assert before == ["Engineer", "Engineer"]
    assert evictions == {"entry": 2}
    assert asked == ["miss", "miss"] and titles == ["Principal Engineer", "Principal Engineer"]
    assert [recorder.evictions for recorder in feed.recorders] == [[("entry", 1)], [("entry", 1)]]
    assert feed.directory.calls == 4 + 2  # Ben was never asked about again


@pytest.mark.parametrize(
    ("changes", "evicted", "cause"),
    [
        pytest.param(changed(ENGINEERING_DN, names=("engineering",)), {ANN}, "reference", id="a group, by DN and name"),
        pytest.param(changed("cn=x,ou=groups,dc=x", names=("ALL-STAFF",)), {ANN, BEN}, "group", id="by name"),
        pytest.param(changed(STAFF_DN.upper()), {ANN, BEN}, "reference", id="a memberOf DN, in another case"),
        pytest.param(changed(CAROL_DN), {ANN, CAROL}, "reference", id="the manager Ann's answer resolves"),
        pytest.param(changed(members=(CAROL_DN.replace(",", ", "),)), {CAROL}, "member", id="listed by a group"),
        pytest.param(changed(BEN_DN, deleted=True), {BEN}, "deleted", id="deleted"),
        pytest.param(
            Changes(frozenset({"uid=ben,ou=disabled,dc=example,dc=com"}), identifiers=frozenset({BEN})),
            {BEN},
            "entry",
            id="moved: a new DN, the same login",
        ),
        pytest.param(changed("uid=dave,ou=people,dc=example,dc=com", names=("sales",)), set(), None, id="unrelated"),
    ],
)
def test_a_change_evicts_exactly_the_entries_it_affects(changes: Changes, evicted: set[str], cause: str | None) -> None:
    feed = Feed()

    async def scenario() -> tuple[dict[str, int], dict[str, str | None]]:
        feed.poll(Changes(resync=True))
        feed.clock.advance(1)
        for mail in PEOPLE:
            await feed.ask(mail)
        evictions = feed.caches[0].apply(changes)
        return evictions, {mail: await feed.ask(mail) for mail in PEOPLE}

    evictions, asked = feed.run(scenario())
    assert {mail for mail, result in asked.items() if result == "miss"} == evicted
    assert sum(evictions.values()) == len(evicted)
    if cause is not None:
        assert cause in evictions


def test_an_entry_lives_feed_fresh_seconds_only_while_the_feed_is_current() -> None:
    feed = Feed()

    async def scenario() -> list[str | None]:
        seen = [await feed.ask(ANN)]  # before the first poll: read, never vouched for
        feed.clock.advance(61)
        seen.append(await feed.ask(ANN))  # fresh_seconds (60) passed, no feed yet: read again
        feed.poll(Changes(resync=True))
        feed.clock.advance(1)
        seen.append(await feed.ask(ANN))  # read before the feed started over: its short time still holds
        feed.clock.advance(60)
        seen.append(await feed.ask(ANN))  # now read after it: vouched for
        feed.wait(300)
        seen.append(await feed.ask(ANN))
        feed.clock.advance(2 * POLL + 0.001)  # no poll for two intervals: behind
        seen.append(await feed.ask(ANN))
        return seen

    assert feed.run(scenario()) == ["miss", "miss", "hit", "miss", "hit", "miss"]


def test_a_failed_poll_brings_the_short_fresh_time_back_at_once_and_a_good_one_ends_it() -> None:
    feed = Feed()

    async def scenario() -> list[Any]:
        feed.poll(Changes(resync=True))
        feed.clock.advance(1)
        await feed.ask(ANN)
        feed.wait(100)
        seen: list[Any] = [await feed.ask(ANN), feed.health.current()]
        feed.health.failed()
        seen += [feed.health.current(), await feed.ask(BEN), await feed.ask(BEN)]
        feed.clock.advance(61)  # Ann's entry, read 161 s ago, is past the short time
        seen.append(await feed.ask(ANN))
        feed.clock.advance(1)
        feed.poll()  # the feed answers again, from where it was: what changed meanwhile is evicted
        seen += [feed.health.current(), feed.health.lag()]
        feed.wait(300)
        seen += [await feed.ask(ANN), await feed.ask(BEN)]
        return seen

    assert feed.run(scenario()) == ["hit", True, False, "miss", "hit", "miss", True, 0.0, "hit", "hit"]


def test_what_was_read_before_the_feed_started_over_gets_the_short_fresh_time() -> None:
    """Another server, or a poll whose answer was cut: what changed before is unknown."""
    feed = Feed()

    async def scenario() -> list[str | None]:
        feed.poll(Changes(resync=True))
        feed.clock.advance(1)
        await feed.ask(ANN)
        feed.wait(100)
        feed.poll(Changes(resync=True))
        seen = [await feed.ask(ANN)]
        feed.clock.advance(1)
        seen.append(await feed.ask(ANN))
        feed.wait(100)
        seen.append(await feed.ask(ANN))
        return seen

    assert feed.run(scenario()) == ["miss", "hit", "hit"]


def test_a_lookup_overtaken_by_a_change_is_answered_but_not_kept() -> None:
    """The lookup read Ann before her change, the poll that reported it ran while the lookup was on
    its way: what it read is stale, and kept it would last an hour (the next polls do not report the
    change again)."""
    feed = Feed()

    async def scenario() -> list[Any]:
        feed.poll(Changes(resync=True))
        feed.clock.advance(1)
        feed.directory.hang()
        lookup = asyncio.create_task(feed.title(ANN))
        await until(lambda: feed.directory.held == 1)
        feed.poll(changed(ANN_DN))
        feed.change(ANN, title="Principal Engineer")
        feed.directory.release()
        first = await lookup  # what the directory said when asked (the fake answers at release)
        return [first, len(feed.caches[0]), await feed.ask(ANN), await feed.ask(ANN)]

    assert feed.run(scenario()) == ["Principal Engineer", 0, "miss", "hit"]


def test_a_change_to_someone_else_does_not_stop_a_lookup_from_being_kept() -> None:
    feed = Feed()

    async def scenario() -> list[Any]:
        feed.poll(Changes(resync=True))
        feed.clock.advance(1)
        feed.directory.hang()
        lookup = asyncio.create_task(feed.ask(ANN))
        await until(lambda: feed.directory.held == 1)
        feed.poll(changed(BEN_DN, names=("sales",)))
        feed.directory.release()
        return [await lookup, await feed.ask(ANN)]

    assert feed.run(scenario()) == ["miss", "hit"]


def test_entries_served_on_the_feeds_word_are_asked_about_once_per_fresh_time() -> None:
    """OpenLDAP says nothing of a deletion: the DNs of entries served past fresh_seconds (only on the
    feed's word) are handed to the feed to ask about, at most once per fresh_seconds; those it reports
    deleted go."""
    feed = Feed()

    async def scenario() -> list[Any]:
        feed.poll(Changes(resync=True))
        feed.clock.advance(1)
        await feed.ask(ANN)
        await feed.ask(BEN)
        seen: list[Any] = [feed.caches[0].unconfirmed()]  # young entries: nothing to ask
        feed.wait(60)
        await feed.ask(ANN)  # past fresh_seconds, on the feed's word
        seen.append(feed.caches[0].unconfirmed())
        await feed.ask(ANN)
        seen.append(feed.caches[0].unconfirmed())  # asked about less than fresh_seconds ago
        feed.wait(60)
        seen.append(feed.caches[0].unconfirmed())
        seen.append(feed.caches[0].apply(changed(ANN_DN, deleted=True)))
        seen.append([await feed.ask(ANN), await feed.ask(BEN)])
        return seen

    assert feed.run(scenario()) == [
        frozenset(),
        {ANN_DN},
        frozenset(),
        {ANN_DN},
        {"deleted": 1},
        ["miss", "hit"],
    ]


def test_a_new_persons_no_such_user_goes_when_the_feed_sees_them() -> None:
    """Someone asked about before they existed is remembered as nobody for negative_seconds; their
    creation (their login among the changed entries' identifiers) ends that at the next poll."""
    feed = Feed(negative_seconds=600)
    dana = "dana@example.com"

    async def scenario() -> list[Any]:
        feed.poll(Changes(resync=True))
        feed.clock.advance(1)
        seen: list[Any] = [await feed.ask(dana), await feed.ask(dana)]
        feed.directory.put(dana, person(dana, title="New"))
        seen.append(
            feed.caches[0].apply(
                Changes(frozenset({"uid=dana,ou=people,dc=example,dc=com"}), identifiers=frozenset({dana}))
            )
        )
        seen.append(await feed.title(dana))
        return seen

    assert feed.run(scenario()) == ["miss", "negative_hit", {"entry": 1}, "New"]


def test_the_index_stays_bounded_with_the_cache() -> None:
    """Stored, replaced, dropped at the bound, evicted by a change, ambiguous, cleared: the index holds
    the tags of the entries the cache holds, and none of those it dropped."""
    feed = Feed(max_entries=2, fresh_seconds=1, feed_fresh_seconds=0)

    def tags() -> int:
        index = feed.caches[0]._index
        assert index is not None
        return len(index)

    async def scenario() -> list[int]:
        seen = []
        await feed.ask(ANN)  # identifier, own DN, 3 references (manager, 2 memberOf), 2 names
        seen.append(tags())
        await feed.ask(BEN)  # identifier, own DN; all-staff's DN and name are Ann's too
        seen.append(tags())
        await feed.ask(CAROL)  # Ann, least recently used, goes with her five tags Ben does not share
        seen.append(tags())
        feed.clock.advance(2)
        feed.change(BEN, title="Lead")
        await feed.ask(BEN)  # read again: replaced
        seen.append(tags())
        feed.caches[0].apply(changed(BEN_DN))
        seen.append(tags())
        feed.directory.fail(DirectoryError("ambiguous", "two entries"))
        feed.clock.advance(2)
        with pytest.raises(DirectoryError):
            await feed.ask(CAROL)
        seen.append(tags())
        feed.directory.fail(None)
        await feed.ask(ANN)
        feed.caches[0].clear()
        seen.append(tags())
        return seen

    assert feed.run(scenario()) == [7, 9, 6, 6, 2, 0, 0]
    assert len(feed.caches[0]) == 0


def test_an_entry_vouched_for_is_refreshed_ahead_of_the_long_time_not_the_short_one() -> None:
    feed = Feed(fresh_seconds=60, refresh_ahead_seconds=30)

    async def scenario() -> list[int]:
        feed.poll(Changes(resync=True))
        feed.clock.advance(1)
        await feed.ask(ANN)
        calls = [feed.directory.calls]
        for _ in range(4):  # through the last 30 s of the short time and past it
            feed.clock.advance(POLL)
            feed.poll()
            await feed.ask(ANN)
            await asyncio.sleep(0)
        calls.append(feed.directory.calls)
        feed.wait(3550)  # to within 30 s of the hour
        await feed.ask(ANN)
        await until(lambda: feed.directory.calls == 2)
        calls.append(feed.directory.calls)
        return calls

    assert feed.run(scenario()) == [1, 1, 2]


def test_without_the_feed_nothing_is_indexed_and_changes_evict_nothing() -> None:
    clock = FakeClock()
    cache = CachedDirectory(FakeDirectory(PEOPLE, clock=clock), CachePolicy(), Recorder(), clock)

    async def scenario() -> dict[str, int]:
        await cache.find_user(QUERY.with_identifier(ANN), clock() + 2.5)
        return cache.apply(changed(ANN_DN))

    assert clock.run(scenario()) == {} and len(cache) == 1 and cache._index is None


def test_the_wiring_counts_evictions_by_cause_and_the_feed_lag() -> None:
    """The service's own telemetry: evictions by cause per hook type, the lag and the current flag read
    at scrape time, changes and polls counted."""
    clock = FakeClock()
    health = FeedHealth(20, clock)
    telemetry = Telemetry(Metrics())
    feed_telemetry = telemetry.change_feed("default", health.lag, health.current)
    directory = FakeDirectory(PEOPLE, clock=clock)
    cache = CachedDirectory(directory, CachePolicy(), telemetry.cache("token", "default"), clock, feed=health)

    def sample(name: str, **labels: str) -> float | None:
        return telemetry.metrics.registry.get_sample_value(name, {"directory": "default", **labels})

    async def scenario() -> None:
        await cache.find_user(QUERY.with_identifier(ANN), clock() + 2.5)
        changes = changed(ANN_DN, BEN_DN, deleted=True)
        feed_telemetry.polled(changes, cache.apply(changes), was_current=False)
        health.polled(clock(), clock(), resync=False)

    clock.run(scenario())
    assert sample("okta_hook_cache_evictions_total", hook_type="token", cause="deleted") == 1
    assert sample("okta_hook_cache_evictions_total", hook_type="token", cause="group") == 0
    assert sample("okta_hook_change_feed_changes_total", kind="deleted") == 2
    assert sample("okta_hook_change_feed_polls_total", result="ok") == 1
    assert sample("okta_hook_change_feed_current") == 1
    clock.advance(21)
    assert sample("okta_hook_change_feed_lag_seconds") == 21 and sample("okta_hook_change_feed_current") == 0
    feed_telemetry.failed("timeout", was_current=False)
    assert sample("okta_hook_change_feed_polls_total", result="timeout") == 1


@pytest.mark.parametrize(
    ("cache", "directory", "message"),
    [
        ({"feed_fresh_seconds": 3600}, {}, "registration.cache.feed_fresh_seconds: needs a directory.change_feed"),
        ({"fresh_seconds": 300, "feed_fresh_seconds": 60}, {"change_feed": {}}, "feed_fresh_seconds must be 0 (off)"),
        ({}, {"change_feed": {"poll_seconds": 0}}, "poll_seconds must be between"),
        ({}, {"change_feed": {"poll_seconds": "10"}}, "directory.change_feed.poll_seconds"),
        ({}, {"change_feed": {"every": 10}}, "directory.change_feed.every"),
    ],
)
def test_bad_feed_settings_name_the_key(cache: dict[str, Any], directory: dict[str, Any], message: str) -> None:
    config = service_config("ldap://127.0.0.1:389")
    config["directory"].update(directory)
    config["hooks"] = {"registration": {**config["hooks"]["registration"], "cache": cache}}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_settings(config)


def test_feed_settings_read_from_yaml() -> None:
    config = service_config("ldap://127.0.0.1:389")
    config["directory"]["change_feed"] = {"poll_seconds": 5, "overlap_seconds": 30}
    config["hooks"] = {"token": {**config["hooks"]["token"], "cache": {"feed_fresh_seconds": 3600}}}
    settings = parse_settings(config)
    assert settings.directory.change_feed is not None
    assert settings.directory.change_feed.max_lag_seconds == 10
    assert settings.hooks.token is not None and settings.hooks.token.cache.feed_fresh_seconds == 3600
