"""Resident memory of the whole service process with 100,000 users in the cache.

    .venv/bin/python bench/cache_memory.py [--users 100000] [--feed] [--groups 20]

In one process, as in production: the service's modules imported and its apps built from the demo
configuration (the registration hook: department, title, employee number, manager's mail, groups),
then the registration hook's cache filled through its real code path (CachedDirectory.find_user) with
the entries the directory returns for the benchmark's generated users (service.demo.directory_data:
manager DN resolved to a mail, the first 200 users in a group). Reading 100,000 users from slapd
would take minutes, and the cache stores what the directory returns, so the entries are built the
way ``Directory`` builds them. Prints RSS (VmRSS) before and after, and per entry, the time to fill
the cache (each a miss: the store path) and to answer every user again (each a hit).

``--feed``: as with ``directory.change_feed``, the cache keeps its change index (own DNs, the DNs entries
refer to, group names). ``--groups N``: every user in N of 500 groups (``memberOf`` DNs), the index's
heavy case; by default only the first 200 users are in one group.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from service import mapping  # noqa: E402
from service.cache import CachedDirectory, FeedHealth  # noqa: E402
from service.demo.directory_data import DEPARTMENTS, group_cn, user_dn, user_mail  # noqa: E402
from service.demo.slapd import free_port  # noqa: E402
from service.directory import DirectoryEntry, LookupResult, UserQuery  # noqa: E402
from service.server import create_apps  # noqa: E402
from service.settings import Secrets, parse_settings  # noqa: E402
from service.telemetry import Metrics, Telemetry  # noqa: E402

SUFFIX = "dc=example,dc=com"


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class GeneratedDirectory:
    """What ``Directory.find_user`` returns for user<i>, built without the round trip."""

    def __init__(self, groups: int = 0) -> None:
        self._groups = groups

    def search_value(self, identifier: str) -> str | None:
        return identifier  # no strip_domains

    async def find_user(self, query: UserQuery, deadline: float, start_by: float | None = None) -> LookupResult:
        i = int(query.identifier[4:9])
        attributes = {
            "departmentnumber": (DEPARTMENTS[i % len(DEPARTMENTS)],),
            "title": (("Engineer", "Analyst", "Specialist", "Consultant", "Coordinator")[i % 5],),
            "employeenumber": (str(100000 + i),),
            "manager": (user_dn((i - 1) // 10),),
        }
        if self._groups:
            teams = ((i + 37 * g) % 500 for g in range(self._groups))
            attributes["memberof"] = tuple(f"cn=team-{team},ou=groups,{SUFFIX}" for team in teams)
        elif i < 200:
            attributes["memberof"] = (f"cn={group_cn(i % 8)},ou=groups,{SUFFIX}",)
        linked = {user_dn((i - 1) // 10): {"mail": (user_mail((i - 1) // 10),)}}
        return LookupResult(DirectoryEntry(user_dn(i), attributes, linked))


async def fill(cache: CachedDirectory, template: UserQuery, users: int) -> float:
    started = time.perf_counter()
    for i in range(users):
        await cache.find_user(template.with_identifier(user_mail(i)), time.monotonic() + 2.5)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--feed", action="store_true", help="keep the change feed's index")
    parser.add_argument("--groups", type=int, default=0, help="memberOf DNs per user (0: the first 200 in one)")
    args = parser.parse_args()

    config = yaml.safe_load((REPO / "service/demo/data/demo-config.yaml").read_text())
    config["directory"]["urls"] = [f"ldap://127.0.0.1:{free_port()}"]  # never contacted
    config["hooks"]["registration"]["cache"]["max_entries"] = args.users
    settings = parse_settings(config)
    create_apps(settings, Secrets(("x",), "x"), Telemetry(Metrics()), name="memory")
    registration = settings.hooks.registration
    assert registration is not None
    rules = registration.rules()
    template = UserQuery.of(
        "", mapping.required_attributes(rules), mapping.resolutions(rules), mapping.memberships(rules)
    )
    feed = FeedHealth(20) if args.feed else None
    cache = CachedDirectory(GeneratedDirectory(args.groups), registration.cache, feed=feed)

    gc.collect()
    before = rss_bytes()
    seconds = asyncio.run(fill(cache, template, args.users))
    gc.collect()
    after = rss_bytes()
    assert len(cache) == args.users
    hits = asyncio.run(fill(cache, template, args.users))

    result = {
        "feed_index": args.feed,
        "groups_per_user": args.groups,
        "entries": len(cache),
        "rss_before_mib": round(before / 2**20, 1),
        "rss_after_mib": round(after / 2**20, 1),
        "bytes_per_entry": round((after - before) / args.users),
        "fill_seconds": round(seconds, 2),
        "store_us_per_entry": round(seconds / args.users * 1e6, 1),
        "hit_us_per_lookup": round(hits / args.users * 1e6, 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
