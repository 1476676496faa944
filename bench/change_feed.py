"""The directory's change feed: what it saves and what it costs.

    .venv/bin/python bench/change_feed.py [--users 50000] [--active 1000] [--hours 3]

1. Against a slapd holding ``--users`` people (service.demo.directory_data, as bench/benchmark.py seeds
   them, plus one group listing everybody): the directory operations of one lookup (the demo
   registration mapping: attributes, the manager's mail, direct groups), and the cost of one poll of the
   change feed: nothing changed, ten people changed, the group of everybody changed (its 50,000 member
   DNs read), each with and without ``index modifyTimestamp eq``.
2. Steady state, on the real cache code (CachedDirectory, FeedHealth) in fake time: ``--active`` people
   each asking about every minute, people and groups changing in the directory all along, for
   ``--hours``; TTL-only (fresh_seconds 300, the default; and 10, as fresh as the feed) against the feed
   (fresh_seconds 300, feed_fresh_seconds 3600, poll_seconds 10). Directory searches per minute = lookups
   x the operations of one lookup (measured in 1) + polls (a quiet poll is one search) + the searches
   asking whether entries served past fresh_seconds still exist (OpenLDAP, 100 DNs a search);
   staleness = how long after a change an answer still carried the old data.

Results go to stdout (Markdown) and bench-results/change-feed-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import heapq
import json
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import ldap3  # noqa: E402
from support.fakes import FakeClock, FakeDirectory  # noqa: E402

from service.cache import CachedDirectory, CachePolicy, FeedHealth  # noqa: E402
from service.demo.directory_data import generate_users, ldif_entry, user_dn  # noqa: E402
from service.demo.slapd import SERVICE_BIND_DN, SERVICE_BIND_PASSWORD, Slapd  # noqa: E402
from service.directory import (  # noqa: E402
    ChangeFeed,
    Changes,
    Directory,
    DirectoryConfig,
    DirectoryEntry,
    Groups,
    GroupSearch,
    NullObserver,
    UserQuery,
    UserSearch,
)
from service.directory.changes import ChangeFeed as Feed  # noqa: E402
from service.directory.connections import ConnectionPool  # noqa: E402
from service.directory.protocol import dn_key  # noqa: E402

SUFFIX = "dc=example,dc=com"
EVERYBODY = f"cn=everybody,ou=groups,{SUFFIX}"
QUERY = UserQuery.of(
    "", frozenset({"departmentnumber", "title", "manager"}), {"manager": frozenset({"mail"})}, frozenset({"direct"})
)


class Counting(NullObserver):
    def __init__(self) -> None:
        self.operations: Counter[str] = Counter()

    @contextmanager
    def _counted(self, name: str) -> Iterator[None]:
        self.operations[name] += 1
        yield

    def operation(self, name: str, server: str) -> Any:
        return self._counted(name)


class IndexedSlapd(Slapd):
    """The demo slapd with ``index modifyTimestamp eq``, as a directory polled for changes should have."""

    def _config(self, cert_file: Path, key_file: Path) -> str:
        return super()._config(cert_file, key_file).replace(
            "index objectClass eq\n", "index objectClass eq\nindex modifyTimestamp eq\n"
        )


def config(url: str) -> DirectoryConfig:
    return DirectoryConfig(
        urls=(url,),
        user_search=UserSearch(f"ou=people,{SUFFIX}", filter="(objectClass=inetOrgPerson)"),
        bind_dn=SERVICE_BIND_DN,
        bind_password_env="X",
        groups=GroupSearch(f"ou=groups,{SUFFIX}"),
        change_feed=ChangeFeed(poll_seconds=10),
    )


def measure_lookup(url: str, users: int) -> dict[str, Any]:
    observer = Counting()
    directory = Directory(config(url), SERVICE_BIND_PASSWORD, observer)
    rng = random.Random(3)
    started = time.perf_counter()
    lookups = 300
    try:
        for _ in range(lookups):
            i = rng.randrange(users)
            entry = directory.lookup(f"user{i:05d}@example.com", QUERY.attributes, dict(QUERY.resolve), QUERY.groups)
            assert entry is not None
    finally:
        directory.close()
    elapsed = time.perf_counter() - started
    return {
        "operations_per_lookup": sum(observer.operations.values()) / lookups,
        "by_operation": {name: count / lookups for name, count in observer.operations.items()},
        "ms_per_lookup": elapsed / lookups * 1000,
    }


def measure_polls(slapd: Slapd, users: int) -> dict[str, Any]:
    observer = Counting()
    directory_config = config(slapd.url)
    pool = ConnectionPool(directory_config, SERVICE_BIND_PASSWORD, observer)
    feed = Feed(directory_config, pool, observer)
    loop = asyncio.new_event_loop()
    admin = ldap3.Connection(ldap3.Server(slapd.url, get_info=ldap3.NONE), slapd.admin_dn, slapd.admin_password)
    admin.bind()

    def poll() -> tuple[float, Changes, int]:
        before = sum(observer.operations.values())
        started = time.perf_counter()
        changes = loop.run_until_complete(feed.poll())
        return time.perf_counter() - started, changes, sum(observer.operations.values()) - before

    try:
        # Loaded a year ago (see directory_with_everybody); one change now, as in a directory in use.
        admin.modify(user_dn(0), {"title": [(ldap3.MODIFY_REPLACE, ["Touched"])]})
        baseline, _, baseline_searches = poll()
        quiet = [poll() for _ in range(10)]
        rng = random.Random(5)
        changed = [rng.randrange(users) for _ in range(10)]
        for i in changed:
            admin.modify(user_dn(i), {"title": [(ldap3.MODIFY_REPLACE, [f"Title {time.time_ns()}"])]})
        ten = poll()
        assert len(ten[1].entries) == 10, ten[1].entries
        admin.modify(EVERYBODY, {"description": [(ldap3.MODIFY_REPLACE, [f"touched {time.time_ns()}"])]})
        group = poll()
        assert len(group[1].members) >= users, len(group[1].members)
        within = [poll() for _ in range(5)]  # the group is still in the overlap window: read again, not reported
        time.sleep(directory_config.change_feed.overlap_seconds + 1)  # type: ignore[union-attr]
        after = [poll() for _ in range(5)]
    finally:
        admin.unbind()
        feed.close()
        pool.close()
        loop.close()
    return {
        "baseline_ms": baseline * 1000,
        "baseline_searches": baseline_searches,
        "quiet_ms_median": statistics.median(seconds for seconds, _, _ in quiet) * 1000,
        "quiet_searches": quiet[0][2],
        "ten_people_ms": ten[0] * 1000,
        "group_of_everybody_ms": group[0] * 1000,
        "group_in_window_ms_median": statistics.median(seconds for seconds, _, _ in within) * 1000,
        "quiet_after_ms_median": statistics.median(seconds for seconds, _, _ in after) * 1000,
    }


def directory_with_everybody(users: int) -> str:
    """The benchmark's people and a group of all of them, every entry last modified a year ago (slapadd
    keeps the operational attributes it is given): a directory in use, not one loaded a second ago whose
    every entry is in the feed's overlap window."""
    members = [("member", user_dn(i)) for i in range(users)]
    everybody = ldif_entry(EVERYBODY, [("objectClass", "groupOfNames"), ("cn", "everybody"), *members])
    ldif = generate_users(users) + everybody
    year_ago = time.strftime("%Y%m%d%H%M%SZ", time.gmtime(time.time() - 365 * 86400))
    stamped = (f"{record}\nmodifyTimestamp: {year_ago}" for record in ldif.strip("\n").split("\n\n"))
    return "\n\n".join(stamped) + "\n"


# -- steady state, in fake time -----------------------------------------------------------------------


@dataclasses.dataclass
class Variant:
    name: str
    fresh: float
    feed_fresh: float = 0.0
    poll: float = 0.0


def simulate(
    variant: Variant, active: int, hours: float, changes_per_hour: float, group_changes_per_hour: float
) -> dict[str, Any]:
    """``active`` people, each asking every 60 s (+-10 %); people changing at ``changes_per_hour`` and one
    of 8 team groups at ``group_changes_per_hour``. Counts lookups (directory reads) and polls, and how
    stale answers were: the time since the change an answer did not show yet."""
    clock = FakeClock(0.0)
    teams = [f"team-{t}" for t in range(8)]
    people = {
        f"user{i:05d}@example.com": DirectoryEntry(
            user_dn(i), {"title": ("v0",)}, {}, {"direct": Groups((teams[i % 8],))}
        )
        for i in range(active)
    }
    directory = FakeDirectory(people, clock=clock)
    health = FeedHealth(2 * variant.poll, clock) if variant.poll else None
    policy = CachePolicy(fresh_seconds=variant.fresh, feed_fresh_seconds=variant.feed_fresh, stale_seconds=3600)
    cache = CachedDirectory(directory, policy, clock=clock, feed=health)
    rng = random.Random(11)
    mails = list(people)
    version = dict.fromkeys(mails, 0)
    changed_at: dict[tuple[str, int], float] = {}
    pending: set[str] = set()
    pending_groups: set[str] = set()
    events: list[tuple[float, int, str, str]] = []
    order = iter(range(10**9))
    for mail in mails:
        heapq.heappush(events, (rng.uniform(0, 60), next(order), "ask", mail))
    heapq.heappush(events, (rng.expovariate(changes_per_hour / 3600), next(order), "change", ""))
    heapq.heappush(events, (rng.expovariate(group_changes_per_hour / 3600), next(order), "group", ""))
    if variant.poll:
        heapq.heappush(events, (0.0, next(order), "poll", ""))
    end, measured_from = hours * 3600, 3600.0
    polls = existence_searches = 0
    stale: list[float] = []
    answers = 0
    lookups_before = 0

    def change(mail: str) -> None:
        version[mail] += 1
        changed_at[(mail, version[mail])] = clock()
        entry = directory._people[mail]
        directory.put(mail, dataclasses.replace(entry, attributes={"title": (f"v{version[mail]}",)}))
        pending.add(dn_key(entry.dn))

    async def run() -> None:
        nonlocal polls, answers, lookups_before, existence_searches
        while events:
            at, _, kind, mail = heapq.heappop(events)
            if at > end:
                break
            if at >= measured_from and not lookups_before:
                lookups_before = directory.calls
            clock.advance(at - clock())
            if kind == "ask":
                entry = (await cache.find_user(QUERY.with_identifier(mail), clock() + 2.5)).entry
                assert entry is not None
                seen = int(entry.attributes["title"][0][1:])
                if clock() >= measured_from:
                    answers += 1
                    if seen < version[mail]:
                        stale.append(clock() - changed_at[(mail, seen + 1)])
                heapq.heappush(events, (at + rng.uniform(54, 66), next(order), "ask", mail))
            elif kind == "change":
                change(rng.choice(mails))
                heapq.heappush(events, (at + rng.expovariate(changes_per_hour / 3600), next(order), "change", ""))
            elif kind == "group":  # a team's membership changed: its members' group claims may have
                team = rng.randrange(8)
                pending_groups.add(teams[team])
                for mail in mails[team::8]:
                    change(mail)
                pending.difference_update(dn_key(people[m].dn) for m in mails[team::8])  # reported as the group
                heapq.heappush(events, (at + rng.expovariate(group_changes_per_hour / 3600), next(order), "group", ""))
            else:
                assert health is not None
                changes = Changes(frozenset(pending), names=frozenset(pending_groups), resync=polls == 0)
                pending.clear()
                pending_groups.clear()
                cache.apply(changes)
                health.polled(clock(), clock(), changes.resync)
                asked = len(cache.unconfirmed())  # do they still exist? 100 DNs a search (OpenLDAP)
                if clock() >= measured_from:
                    polls += 1
                    existence_searches += -(-asked // 100)
                heapq.heappush(events, (at + variant.poll, next(order), "poll", ""))

    clock.run(run())
    minutes = (end - measured_from) / 60
    stale.sort()
    return {
        "lookups_per_minute": (directory.calls - lookups_before) / minutes,
        "polls_per_minute": polls / minutes,
        "existence_searches_per_minute": existence_searches / minutes,
        "answers": answers,
        "stale_answers": len(stale),
        "staleness_p50_s": stale[len(stale) // 2] if stale else 0.0,
        "staleness_max_s": stale[-1] if stale else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--active", type=int, default=1000)
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--changes-per-hour", type=float, default=60.0)
    parser.add_argument("--group-changes-per-hour", type=float, default=4.0)
    args = parser.parse_args()
    results: dict[str, Any] = {"args": vars(args)}

    workdir = REPO / "bench-results" / f"change-feed-{time.strftime('%Y%m%d-%H%M%S')}"
    ldif = directory_with_everybody(args.users)
    for name, server_class in (("no modifyTimestamp index", Slapd), ("index modifyTimestamp eq", IndexedSlapd)):
        # dynlist: every entry slapadd-ed, old timestamps kept (the memberof overlay adds groups online)
        with server_class(workdir / name.replace(" ", "-"), ldif, memberof="dynlist") as slapd:
            if "lookup" not in results:
                results["lookup"] = measure_lookup(slapd.url, args.users)
            results[f"poll, {name}"] = measure_polls(slapd, args.users)
    per_lookup = results["lookup"]["operations_per_lookup"]

    variants = [
        Variant("TTL only, fresh_seconds 300 (default)", 300),
        Variant("TTL only, fresh_seconds 10 (as fresh as the feed)", 10),
        Variant("change feed, poll 10 s, feed_fresh_seconds 3600", 300, 3600, 10),
        Variant("change feed, poll 10 s, feed_fresh_seconds 14400", 300, 14400, 10),
    ]
    rows = []
    for variant in variants:
        simulated = simulate(variant, args.active, args.hours, args.changes_per_hour, args.group_changes_per_hour)
        # a quiet poll is one search; OpenLDAP asks whether entries served past fresh_seconds still exist
        searches = (
            simulated["lookups_per_minute"] * per_lookup
            + simulated["polls_per_minute"]
            + simulated["existence_searches_per_minute"]
        )
        rows.append({"variant": variant.name, "searches_per_minute": searches, **simulated})
    results["steady_state"] = rows

    print(f"\n## Change feed, {args.users} people in slapd, {args.active} active\n")
    lookup = results["lookup"]
    operations = {name: round(count, 3) for name, count in lookup["by_operation"].items()}
    print(f"One lookup: {per_lookup:.2f} directory operations {operations}, {lookup['ms_per_lookup']:.2f} ms\n")
    print("| poll | no modifyTimestamp index | index modifyTimestamp eq |\n|---|---|---|")
    plain, indexed = results["poll, no modifyTimestamp index"], results["poll, index modifyTimestamp eq"]
    for key, label in (
        ("baseline_ms", "start (newest timestamp + overlap window), ms"),
        ("baseline_searches", "start, searches"),
        ("quiet_ms_median", "nothing changed, ms (median)"),
        ("ten_people_ms", "10 people changed, ms"),
        ("group_of_everybody_ms", f"the group of all {args.users} changed, ms"),
        ("group_in_window_ms_median", "nothing new, that group still in the overlap window, ms (median)"),
        ("quiet_after_ms_median", "nothing changed, the window past, ms (median)"),
    ):
        print(f"| {label} | {plain[key]:.1f} | {indexed[key]:.1f} |")
    print(
        f"\nSteady state, {args.hours:g} h simulated (the first hour not counted), {args.changes_per_hour:g} people "
        f"changed and {args.group_changes_per_hour:g} team groups (~{args.active // 8} active members each) changed "
        "per hour:\n"
    )
    columns = "directory searches/min | lookups/min | polls/min | existence checks/min | stale answers"
    print(f"| variant | {columns} | staleness p50 / max |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['variant']} | {row['searches_per_minute']:.0f} | {row['lookups_per_minute']:.1f} | "
            f"{row['polls_per_minute']:.0f} | {row['existence_searches_per_minute']:.1f} | "
            f"{row['stale_answers']} of {row['answers']} | "
            f"{row['staleness_p50_s']:.0f} s / {row['staleness_max_s']:.0f} s |"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir.parent / f"{workdir.name}.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
