"""Answering from memory. The cache's logic (fresh, negative and stale times, single-flight,
refresh-ahead, Okta's retry) runs on a fake directory and a fake clock (tests/support/fakes.py): no
sleep, microseconds per scenario. Against a real slapd: stale answers while slapd is frozen (SIGSTOP),
the concurrent burst, the LRU bound, `0` to turn it off, the key a real directory compares, the groups
in the key, and SIGHUP emptying the cache of a real service process.

The slapd scenarios drive the in-process app (``create_apps`` + Sanic's ASGI client) inside one event
loop and count LDAP searches with the service's own metrics; the fake ones drive the registration
``Hook`` in front of a ``CachedDirectory``, with the cache's metrics also the service's own.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import itertools
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from groups_support import ADA_DIRECT, ADA_MAILS, ADA_NESTED, groups_ldif
from okta_spec import example, registration_for
from sanic import Sanic
from support.answers import unchanged
from support.config import SECRET, directory_config, service_config
from support.fakes import FakeClock, FakeDirectory, person, until

from service.cache import _MAX_SHAPES, CachedDirectory, CachePolicy, RecentAnswers, _Packer
from service.demo.slapd import SERVICE_BIND_DN, SERVICE_BIND_PASSWORD, Slapd, demo_ldif, free_port
from service.directory import (
    DeadlineExceeded,
    Directory,
    DirectoryConfig,
    DirectoryEntry,
    DirectoryError,
    Groups,
    LookupResult,
    Membership,
    UserQuery,
    UserSearch,
)
from service.hooks.base import EnrichingHook
from service.hooks.registry import HookType
from service.okta import parse_event
from service.server import create_apps
from service.settings import ConfigError, Secrets, parse_settings
from service.telemetry import Metrics, Telemetry

T = TypeVar("T")
ROSARIO = "rosario.jones@example.com"
KNOWN = [
    "carol.chen@example.com",
    "alice.wong@example.com",
    "john.smith@example.com",
    "jose.muller@example.com",
    "zoe.angstrom@example.com",
]


class App:
    """The service in this process, on ``ldap_url``, with ``cache`` settings for the registration hook.

    Sanic's ASGI test client starts and stops the app around every request (which would close the
    directory each time); :meth:`running` starts it once for a whole scenario, the same way."""

    def __init__(self, ldap_url: str, cache: dict[str, Any], deadline: float = 2.5, **directory: Any) -> None:
        Sanic.test_mode = True
        config = service_config(ldap_url)
        config["directory"].update(directory)
        registration = copy.deepcopy(config["hooks"]["registration"])
        registration.update(cache=cache, deadline_seconds=deadline)
        config["hooks"] = {"registration": registration}
        self.deadline = deadline
        self.telemetry = Telemetry(Metrics())
        self.app, _ = create_apps(
            parse_settings(config),
            Secrets((SECRET,), SERVICE_BIND_PASSWORD),
            self.telemetry,
            name=f"cache{free_port()}",
        )
        self.app.asgi = True
        self._client: httpx.AsyncClient | None = None

    async def run(self, scenario: Callable[[], Awaitable[T]]) -> T:
        """Start the app (listeners included), run ``scenario``, stop the app."""
        app = self.app
        app.router.reset()
        app.signal_router.reset()
        await app._startup()
        await app._server_event("init", "before")
        await app._server_event("init", "after")
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=10) as client:
                self._client = client
                return await scenario()
        finally:
            self._client = None
            await app._server_event("shutdown", "before")
            await app._server_event("shutdown", "after")

    async def register(self, email: str, event_id: str | None = None) -> tuple[dict[str, Any], float]:
        """The registration hook's answer for ``email`` and how long it took."""
        event = registration_for(email)
        event["eventId"] = event_id or f"evt-{time.monotonic_ns()}"
        assert self._client is not None, "call from within App.run"
        started = time.monotonic()
        response = await self._client.post("/hooks/registration", json=event, headers={"Authorization": SECRET})
        assert response.status_code == 200
        return response.json(), time.monotonic() - started

    def metric(self, name: str, **labels: str) -> float:
        value = self.telemetry.metrics.registry.get_sample_value(name, labels)
        return value or 0.0

    def searches(self) -> float:
        return self.metric("okta_hook_ldap_operation_duration_seconds_count", directory="default", operation="search")

    def lookups(self, result: str) -> float:
        return self.metric(
            "okta_hook_cache_lookups_total", directory="default", hook_type="registration", result=result
        )


def run(service: App, scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(service.run(scenario))


def outcome(body: dict[str, Any]) -> str:
    return body["debugContext"]["outcome"]


def title(body: dict[str, Any]) -> str:
    return body["commands"][0]["value"]["title"]


def freeze(pid: int) -> None:
    """SIGSTOP ``pid`` and wait until every one of its threads has stopped: kill() returns before a
    thread running on the other core is interrupted, and such a thread could still answer a request."""
    os.kill(pid, signal.SIGSTOP)
    tasks = Path(f"/proc/{pid}/task")
    for _ in range(500):
        states = [(task / "stat").read_text().rpartition(")")[2].split()[0] for task in tasks.iterdir()]
        if all(state in ("T", "t") for state in states):
            return
        time.sleep(0.002)
    raise AssertionError(f"process {pid} did not stop")


@pytest.fixture
def own_slapd(tmp_path: Path) -> Iterator[Slapd]:
    """A directory of this test's own, to freeze or modify."""
    with Slapd(tmp_path / "ldap", demo_ldif()) as server:
        yield server


# -- on fakes: the registration hook, a CachedDirectory, a FakeDirectory, a FakeClock ------------------

CAROL_DN = "uid=carol.chen,ou=people,dc=example,dc=com"
#: The people of the demo directory these tests ask about, with the values the demo configuration's
#: registration mapping reads.
PEOPLE: dict[str, DirectoryEntry] = {
    ROSARIO: dataclasses.replace(
        person(
            ROSARIO,
            departmentNumber="Engineering",
            title="Senior Software Engineer",
            employeeNumber="1002",
            manager=CAROL_DN,
            memberOf=("cn=all-staff,ou=groups,dc=example,dc=com", "cn=engineering,ou=groups,dc=example,dc=com"),
        ),
        linked={CAROL_DN: {"mail": (KNOWN[0],)}},
    ),
    KNOWN[0]: person(KNOWN[0], departmentNumber="Engineering", title="VP Engineering", employeeNumber="1001"),
    KNOWN[1]: person(KNOWN[1], departmentNumber="Engineering", title="Software Engineer", employeeNumber="1003"),
}
NEW_HIRE = "nina.new@example.com"


def replace_values(entry: DirectoryEntry, **values: str) -> DirectoryEntry:
    return dataclasses.replace(entry, attributes={**entry.attributes, **{k.lower(): (v,) for k, v in values.items()}})


class OnFakes:
    """What :class:`App` is, on fakes: the demo configuration's registration hook with ``cache``
    settings, in front of a :class:`CachedDirectory` (when those settings enable it, as the server
    does) on a :class:`FakeDirectory` holding :data:`PEOPLE`, all on one :class:`FakeClock`. The
    cache reports to the service's own telemetry."""

    def __init__(self, cache: dict[str, Any], deadline: float = 2.5) -> None:
        config = service_config("ldap://127.0.0.1:389")
        registration = {**config["hooks"]["registration"], "cache": cache, "deadline_seconds": deadline}
        settings = parse_settings({**config, "hooks": {"registration": registration}}).hooks.registration
        assert settings is not None
        self.deadline = deadline
        self.clock = FakeClock()
        self.directory = FakeDirectory(PEOPLE, clock=self.clock)
        self.telemetry = Telemetry(Metrics())
        self.policy = settings.cache
        observer = self.telemetry.cache("registration", "default")
        self.cache = CachedDirectory(self.directory, self.policy, observer, self.clock, refresh_budget_seconds=deadline)
        source = self.cache if self.policy.enabled else self.directory
        self.hook = EnrichingHook(HookType.REGISTRATION, settings, source)
        self._events = itertools.count()

    def run(self, scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return self.clock.run(scenario())

    async def register(self, email: str, event_id: str | None = None) -> dict[str, Any]:
        """The registration hook's answer for ``email``, the request arriving now (fake time)."""
        document = {**registration_for(email), "eventId": event_id or f"evt-{next(self._events)}"}
        event = parse_event(json.dumps(document).encode(), HookType.REGISTRATION)
        return (await self.hook.answer(event, self.clock())).body

    def metric(self, name: str, **labels: str) -> float:
        return self.telemetry.metrics.registry.get_sample_value(name, labels) or 0.0

    def lookups(self, result: str) -> float:
        return self.metric(
            "okta_hook_cache_lookups_total", directory="default", hook_type="registration", result=result
        )


def cache_of(body: dict[str, Any]) -> str:
    return body["debugContext"]["cache"]


def test_frozen_directory_cached_users_stay_enriched_uncached_fall_back(own_slapd: Slapd) -> None:
    # fresh_seconds 0: every lookup asks the directory (no waiting out a fresh time), and the answers
    # read stay in memory for the stale time
    service = App(own_slapd.url, {"fresh_seconds": 0, "stale_seconds": 3600}, deadline=1.0)
    assert own_slapd.pid is not None

    async def scenario() -> tuple[list[tuple[dict[str, Any], float]], list[tuple[dict[str, Any], float]]]:
        for email in (ROSARIO, *KNOWN[:2]):
            body, _ = await service.register(email)
            assert outcome(body) == "enriched" and body["debugContext"]["cache"] == "miss"
        freeze(own_slapd.pid)
        try:
            cached = await asyncio.gather(*(service.register(e) for e in (ROSARIO, *KNOWN[:2])))
            uncached = await asyncio.gather(*(service.register(e) for e in KNOWN[2:]))
        finally:
            os.kill(own_slapd.pid, signal.SIGCONT)
        return cached, uncached

    cached, uncached = run(service, scenario)

    for body, elapsed in cached:
        assert outcome(body) == "enriched_stale"
        assert body["debugContext"]["cache"] == "stale" and body["debugContext"]["error"] == "deadline"
        assert body["commands"][0]["value"]["department"]  # the claims applications authorize on
        assert elapsed < service.deadline + 0.5  # within the deadline (plus the test client's own time)
    assert title(cached[0][0]) == "Senior Software Engineer"
    for body, elapsed in uncached:
        # the deadline, or the cooldown the frozen server earned meanwhile: a fallback, in time, either way
        assert unchanged(body)["outcome"] in ("fallback_deadline", "fallback_ldap_error")
        assert elapsed < service.deadline + 0.5
    assert service.lookups("stale") == 3
    assert service.metric("okta_hook_requests_total", hook_type="registration", outcome="enriched_stale") == 3


def test_a_change_in_the_directory_shows_after_the_fresh_time() -> None:
    fresh = 1.0
    service = OnFakes({"fresh_seconds": fresh, "refresh_ahead_seconds": 0})

    async def scenario() -> list[str]:
        seen = [title(await service.register(ROSARIO))]
        service.directory.put(ROSARIO, replace_values(PEOPLE[ROSARIO], title="Chief Cartographer"))
        service.clock.advance(fresh - 0.001)
        seen.append(title(await service.register(ROSARIO)))  # still fresh: from memory
        service.clock.advance(0.001)  # fresh_seconds after the read: no longer fresh
        seen.append(title(await service.register(ROSARIO)))
        return seen

    seen = service.run(scenario)
    assert seen == ["Senior Software Engineer", "Senior Software Engineer", "Chief Cartographer"]
    assert service.lookups("hit") == 1 and service.lookups("miss") == 2


def test_fifty_concurrent_calls_for_a_new_user_make_one_search(slapd: Slapd) -> None:
    service = App(slapd.url, {})

    async def burst() -> list[tuple[dict[str, Any], float]]:
        return await asyncio.gather(*(service.register(ROSARIO) for _ in range(50)))

    answers = run(service, burst)

    assert [outcome(body) for body, _ in answers] == ["enriched"] * 50
    assert service.searches() == 1
    assert (
        service.metric("okta_hook_ldap_operation_duration_seconds_count", directory="default", operation="resolve") == 1
    )  # manager


def test_refresh_ahead_rereads_a_hot_entry_in_the_background() -> None:
    service = OnFakes({"fresh_seconds": 1.0, "refresh_ahead_seconds": 0.5})

    async def scenario() -> list[str]:
        caches = [cache_of(await service.register(ROSARIO))]
        service.clock.advance(0.6)  # within refresh_ahead of going stale
        service.directory.hang()  # the refresh waits in the directory; the answer must not wait for it
        caches.append(cache_of(await service.register(ROSARIO)))
        await until(lambda: service.directory.held == 1)
        service.directory.release()
        await until(
            lambda: service.metric(
                "okta_hook_cache_refreshes_total", directory="default", hook_type="registration", result="ok"
            )
        )
        service.clock.advance(0.45)  # past the first read's fresh time, not the refreshed one's (nor its refresh)
        caches.append(cache_of(await service.register(ROSARIO)))
        return caches

    assert service.run(scenario) == ["miss", "hit", "hit"]
    assert (
        service.metric("okta_hook_cache_refreshes_total", directory="default", hook_type="registration", result="ok")
        == 1
    )
    assert service.directory.calls == 2


def test_the_least_recently_used_entry_goes_at_the_bound(slapd: Slapd) -> None:
    service = App(slapd.url, {"max_entries": 3})
    users = [ROSARIO, *KNOWN[:3]]

    async def scenario() -> list[str]:
        for email in users:  # four users into three places: the first one is dropped
            await service.register(email)
        again = [(await service.register(email))[0]["debugContext"]["cache"] for email in users[1:]]
        again.append((await service.register(ROSARIO))[0]["debugContext"]["cache"])
        return again

    assert run(service, scenario) == ["hit", "hit", "hit", "miss"]
    assert (
        service.metric("okta_hook_cache_evictions_total", directory="default", hook_type="registration", cause="lru")
        == 2
    )
    assert service.metric("okta_hook_cache_entries", directory="default", hook_type="registration") == 3


def test_unknown_users_are_remembered_for_the_negative_time(slapd: Slapd) -> None:
    service = App(slapd.url, {"negative_seconds": 60})

    async def scenario() -> list[str]:
        return [unchanged((await service.register("nobody.here@example.com"))[0])["cache"] for _ in range(3)]

    assert run(service, scenario) == ["miss", "negative_hit", "negative_hit"]
    assert service.searches() == 1


def test_zero_turns_caching_off(slapd: Slapd) -> None:
    service = App(slapd.url, {"fresh_seconds": 0, "stale_seconds": 0, "negative_seconds": 0, "replay_seconds": 0})

    async def scenario() -> list[dict[str, Any]]:
        return [(await service.register(ROSARIO, event_id="same-event"))[0] for _ in range(3)]

    answers = run(service, scenario)
    assert [a["debugContext"] for a in answers] == [{"outcome": "enriched", "directoryMs": d} for d in _ms(answers)]
    assert service.searches() == 3
    assert service.metric("okta_hook_cache_entries", directory="default", hook_type="registration") == 0


def test_okta_retry_of_an_event_gets_the_same_answer(slapd: Slapd) -> None:
    # no cache of directory answers: only the memory of answers given, so the count of searches shows it
    service = App(slapd.url, {"fresh_seconds": 0, "stale_seconds": 0, "negative_seconds": 0, "replay_seconds": 10})

    async def scenario() -> list[dict[str, Any]]:
        first = (await service.register(ROSARIO, event_id="evt-1"))[0]
        retry = (await service.register(ROSARIO, event_id="evt-1"))[0]
        other_user = (await service.register(KNOWN[0], event_id="evt-1"))[0]  # not a retry: someone else
        other_event = (await service.register(ROSARIO, event_id="evt-2"))[0]
        return [first, retry, other_user, other_event]

    first, retry, other_user, other_event = run(service, scenario)
    assert retry == first  # byte for byte, debugContext included
    assert title(other_user) == "VP Engineering"
    assert other_event["debugContext"]["directoryMs"] >= 0 and title(other_event) == title(first)
    assert service.searches() == 3
    assert service.metric("okta_hook_replayed_answers_total", hook_type="registration") == 1


def test_a_fallback_is_not_replayed() -> None:
    """Okta's retry after a failed lookup is a second chance to enrich, not a copy of the failure."""
    service = OnFakes({"fresh_seconds": 0, "stale_seconds": 0, "negative_seconds": 0}, deadline=0.5)

    async def scenario() -> list[str]:
        await service.register(KNOWN[0])
        service.directory.hang()  # the lookup waits out the hook's deadline (0.5 fake seconds)
        first = outcome(await service.register(ROSARIO, event_id="evt-r"))
        service.directory.release()
        retry = outcome(await service.register(ROSARIO, event_id="evt-r"))
        return [first, retry]

    assert service.run(scenario) == ["fallback_deadline", "enriched"]


def test_sighup_empties_the_cache_of_a_running_service(slapd: Slapd, start_service) -> None:
    service = start_service(service_config(slapd.url))

    def cache_of(email: str) -> str:
        return service.post("registration", registration_for(email)).json()["debugContext"]["cache"]

    assert cache_of(ROSARIO) == "miss"
    assert cache_of(ROSARIO) == "miss"  # the same event again: Okta's retry, the very same answer
    assert 'okta_hook_replayed_answers_total{hook_type="registration"} 1.0' in service.metrics()
    token = example("token")
    assert service.post("token", token).json()["debugContext"]["cache"] == "miss"
    assert 'okta_hook_cache_entries{directory="default",hook_type="registration"} 1.0' in service.metrics()

    service.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "okta_hook_cache_flushes_total 1.0" not in service.metrics():
        assert time.monotonic() < deadline, service.log()[-2000:]
        time.sleep(0.05)

    metrics = service.metrics()
    assert 'okta_hook_cache_entries{directory="default",hook_type="registration"} 0.0' in metrics
    assert 'okta_hook_cache_entries{directory="default",hook_type="token"} 0.0' in metrics
    assert cache_of(ROSARIO) == "miss" and service.post("token", token).json()["debugContext"]["cache"] == "miss"
    assert service.process.poll() is None  # still serving: SIGHUP does not stop it
    assert '"event": "cache_flushed"' in service.log() and '"entries": 2' in service.log()
    hook_lines = [json.loads(line) for line in service.log().splitlines() if '"hook_request"' in line]
    assert [line["cache"] for line in hook_lines if line["hook_type"] == "registration"] == [
        "miss",
        "replay",
        "miss",
    ]


def _ms(answers: list[dict[str, Any]]) -> list[int]:
    return [answer["debugContext"]["directoryMs"] for answer in answers]


@pytest.mark.parametrize(
    "cache, message",
    [
        ({"fresh_seconds": 600, "stale_seconds": 60}, "hooks.registration.cache: stale_seconds must be 0 (off)"),
        ({"max_entries": -1}, "hooks.registration.cache.max_entries"),
        ({"fresh_secs": 5}, "hooks.registration.cache.fresh_secs: unknown key"),
    ],
)
def test_bad_cache_settings_name_the_key(cache: dict[str, Any], message: str) -> None:
    config = service_config("ldap://127.0.0.1:389")
    config["hooks"]["registration"]["cache"] = cache
    with pytest.raises(ConfigError) as error:
        parse_settings(config)
    assert message in str(error.value)


def test_stale_up_to_zero_fresh_still_serves_stale_on_errors(own_slapd: Slapd) -> None:
    """fresh_seconds: 0 asks the directory every time, and still has the last answer for an outage."""
    service = App(own_slapd.url, {"fresh_seconds": 0, "stale_seconds": 60}, deadline=0.8)
    assert own_slapd.pid is not None

    async def scenario() -> list[str]:
        seen = [(await service.register(ROSARIO))[0]["debugContext"]["cache"] for _ in range(2)]
        freeze(own_slapd.pid)
        try:
            seen.append((await service.register(ROSARIO))[0]["debugContext"]["cache"])
        finally:
            os.kill(own_slapd.pid, signal.SIGCONT)
        return seen

    assert run(service, scenario) == ["miss", "miss", "stale"]
    assert service.searches() >= 2


def test_several_matching_entries_are_never_answered_from_memory() -> None:
    """Once a second entry carries the user's mail, the old answer could be someone else's: it is
    dropped, not served stale, even when the directory fails afterwards. (That slapd reports two
    entries with one mail as ``ambiguous``: test_hooks.py.)"""
    service = OnFakes({"fresh_seconds": 0.2, "stale_seconds": 3600}, deadline=0.8)

    async def scenario() -> list[str]:
        seen = [outcome(await service.register(ROSARIO))]
        service.directory.fail(DirectoryError("ambiguous", "2 entries match"))  # a twin now holds the mail
        service.clock.advance(0.3)
        seen.append(outcome(await service.register(ROSARIO)))
        service.directory.fail(None)
        service.directory.hang()  # then the directory stops answering
        seen.append(outcome(await service.register(ROSARIO)))
        return seen

    seen = service.run(scenario)
    assert seen == ["enriched", "fallback_ldap_error", "fallback_deadline"]
    assert service.lookups("stale") == 0


def test_entries_come_back_whole_whatever_their_layout() -> None:
    """Entries are stored packed (attribute names by layout number, up to a bound of layouts); an entry
    read back must equal the one stored, for the common layouts and the rare ones past the bound."""
    packer = _Packer()
    entries = [
        DirectoryEntry(
            f"uid=user{i},ou=people,dc=example,dc=com",
            {f"attribute{i}": (f"value {i}", "é ünïcode"), "title": ()},
            {f"cn=group{i},ou=groups,dc=example,dc=com": {"cn": (f"group{i}",)}} if i % 2 else {},
            _groups(i),
        )
        for i in range(_MAX_SHAPES + 50)  # a layout each: the last 50 carry their names themselves
    ]
    records = [packer.pack(entry, float(i)) for i, entry in enumerate(entries)]
    unpacked = [packer.unpack(record) for record in records]
    assert unpacked == entries
    # the groups too: names (order, case, commas), the complete flag, which memberships were read
    assert unpacked[3].groups == {"nested": Groups(("R&D, Europe", "app-All Staff", "group3"), complete=False)}
    assert unpacked[5].groups == {
        "direct": Groups(("R&D, Europe", "group5")),
        "nested": Groups(("R&D, Europe", "app-All Staff", "group5")),
    }
    assert unpacked[6].groups == {"direct": Groups()}  # read, and in no group: not the same as not read
    assert len(packer.pack(None, 1.0)) == 8  # "no such user": the read time only


def _groups(i: int) -> dict[Membership, Groups]:
    """Every combination of memberships read, with and without names, complete or cut by a walk bound."""
    kind = i % 4
    if kind == 0:
        return {}
    if kind == 1:
        return {
            "direct": Groups(("R&D, Europe", f"group{i}")),
            "nested": Groups(("R&D, Europe", "app-All Staff", f"group{i}")),
        }
    if kind == 2:
        return {"direct": Groups()}
    return {"nested": Groups(("R&D, Europe", "app-All Staff", f"group{i}"), complete=False)}


def test_the_groups_a_hook_needs_are_part_of_the_key(tmp_path: Path) -> None:
    """A token hook needing nested groups, after a registration hook that read only the direct groups of
    the same person through the same cache, gets the nested groups: the direct-only entry is another
    key, never its answer. (Each hook type has a cache of its own in the service; one shared cache is
    the strictest case.)"""
    ada = ADA_MAILS[1]  # the login of Okta's token example
    hooks = {
        "registration": {"subject": "email", "profile": {"groups": {"source": "groups"}}},
        "token": {"subject": "login", "access_token": {"roles": {"source": "groups", "nested": True}}},
    }
    groups = {"base_dn": "ou=groups,dc=example,dc=com", "filter": "(objectClass=groupOfNames)"}
    with Slapd(tmp_path / "ldap", groups_ldif()) as server:
        config = service_config(server.url, directory=directory_config(server.url, groups=groups), hooks=hooks)
        settings = parse_settings(config)
        assert settings.hooks.registration is not None and settings.hooks.token is not None
        directory = Directory(settings.directory, SERVICE_BIND_PASSWORD)
        cache = CachedDirectory(directory, settings.hooks.token.cache)
        registration = EnrichingHook(HookType.REGISTRATION, settings.hooks.registration, cache)
        token = EnrichingHook(HookType.TOKEN, settings.hooks.token, cache)

        def event(hook_type: HookType, document: dict[str, Any], event_id: str) -> Any:
            return parse_event(json.dumps({**document, "eventId": event_id}).encode(), hook_type)

        async def scenario() -> list[Any]:
            return [
                await registration.answer(
                    event(HookType.REGISTRATION, registration_for(ada), "evt-1"), time.monotonic()
                ),
                await token.answer(event(HookType.TOKEN, example("token"), "evt-2"), time.monotonic()),
                await token.answer(event(HookType.TOKEN, example("token"), "evt-3"), time.monotonic()),
                await registration.answer(
                    event(HookType.REGISTRATION, registration_for(ada), "evt-4"), time.monotonic()
                ),
            ]

        try:
            first, nested, again, direct_again = asyncio.run(scenario())
        finally:
            directory.close()

    assert first.cache == "miss" and first.body["commands"][0]["value"]["groups"] == ADA_DIRECT
    assert nested.cache == "miss"  # not a hit on the entry read without the nested walk
    assert _claims(nested.body)["roles"] == ADA_NESTED
    assert again.cache == "hit" and _claims(again.body)["roles"] == ADA_NESTED
    assert direct_again.cache == "hit" and direct_again.body["commands"][0]["value"]["groups"] == ADA_DIRECT
    assert len(cache) == 2


def _claims(body: dict[str, Any]) -> dict[str, Any]:
    return {op["path"].rsplit("/", 1)[1]: op["value"] for command in body["commands"] for op in command["value"]}


def test_the_key_is_the_value_the_directory_compares(slapd: Slapd) -> None:
    """With strip_domains, two logins in the company's domains that the directory searches as one uid
    share one entry; a login the directory cannot match (outside the domains, or without one) is
    passed through and never stored, so it can never answer for, or be answered by, the local part."""
    search = UserSearch(
        "ou=people,dc=example,dc=com", match_attribute="uid", strip_domains=("corp.example.org", "example.org")
    )
    config = DirectoryConfig(urls=(slapd.url,), user_search=search, bind_dn=SERVICE_BIND_DN, bind_password_env="X")
    directory = Directory(config, SERVICE_BIND_PASSWORD)
    cache = CachedDirectory(directory, CachePolicy())
    template = UserQuery.of("", frozenset({"title"}), {})

    async def scenario() -> list[LookupResult]:
        logins = ["Alice.Wong@corp.example.org", "alice.wong@EXAMPLE.org", "alice.wong@evil.example", "alice.wong"]
        return [await cache.find_user(template.with_identifier(login), time.monotonic() + 2.5) for login in logins]

    try:
        corp, other_domain, foreign, bare = asyncio.run(scenario())
    finally:
        directory.close()
    assert corp.cache == "miss" and corp.entry is not None and corp.entry.values("title") == ("Software Engineer",)
    assert other_domain.cache == "hit" and other_domain.entry == corp.entry
    assert foreign == LookupResult(None) and bare == LookupResult(None)  # nobody, and not from memory
    assert len(cache) == 1


# -- on fakes: the times an entry lives, single-flight, refresh-ahead, Okta's retries ---------------------


def answered(body: dict[str, Any]) -> tuple[str, str | None]:
    """The outcome and how the cache answered (None: no cache result, e.g. a directory failure)."""
    return body["debugContext"]["outcome"], body["debugContext"].get("cache")


def test_a_person_deleted_from_the_directory_is_no_match_once_the_entry_is_not_fresh() -> None:
    """Someone removed from the directory (they left): within the fresh time their entry still answers;
    from fresh_seconds after it was read, the directory is asked and says nobody, that answer is what is
    remembered, and the deleted entry is never served again, not even stale when the directory fails."""
    service = OnFakes({"fresh_seconds": 300, "stale_seconds": 3600, "negative_seconds": 60})

    async def scenario() -> list[tuple[str, str | None]]:
        seen = [answered(await service.register(ROSARIO))]
        service.directory.delete(ROSARIO)
        service.clock.advance(299.999)
        seen.append(answered(await service.register(ROSARIO)))
        service.clock.advance(0.001)
        seen.append(answered(await service.register(ROSARIO)))
        seen.append(answered(await service.register(ROSARIO)))
        service.clock.advance(60)  # the "nobody" answer is over too; now the directory fails
        service.directory.fail(DirectoryError("timeout", "no answer in time"))
        seen.append(answered(await service.register(ROSARIO)))
        return seen

    assert service.run(scenario) == [
        ("enriched", "miss"),
        ("enriched", "hit"),
        ("no_match", "miss"),
        ("no_match", "negative_hit"),
        ("fallback_ldap_error", None),  # not enriched_stale with the deleted person's entry
    ]
    assert service.directory.calls == 3


def test_a_deleted_person_is_not_served_stale_with_negative_caching_off() -> None:
    """negative_seconds 0 keeps no "nobody" answer: the deleted person's entry must go all the same."""
    service = OnFakes({"fresh_seconds": 1, "stale_seconds": 3600, "negative_seconds": 0})

    async def scenario() -> list[tuple[str, str | None]]:
        seen = [answered(await service.register(ROSARIO))]
        service.directory.delete(ROSARIO)
        service.clock.advance(1)
        seen.append(answered(await service.register(ROSARIO)))
        service.directory.fail(DirectoryError("timeout", "no answer in time"))
        seen.append(answered(await service.register(ROSARIO)))
        return seen

    assert service.run(scenario) == [("enriched", "miss"), ("no_match", "miss"), ("fallback_ldap_error", None)]


def test_an_unknown_person_is_asked_about_again_after_the_negative_time_not_the_fresh_time() -> None:
    """A new hire whose first call came before their entry existed: "nobody" is remembered for
    negative_seconds (60 s), not fresh_seconds (300 s), then the directory is asked again."""
    service = OnFakes({"fresh_seconds": 300, "negative_seconds": 60})

    async def scenario() -> list[tuple[str, str | None]]:
        seen = [answered(await service.register(NEW_HIRE))]
        service.directory.put(NEW_HIRE, person(NEW_HIRE, title="Cartographer"))
        service.clock.advance(59.999)
        seen.append(answered(await service.register(NEW_HIRE)))
        service.clock.advance(0.001)
        body = await service.register(NEW_HIRE)
        seen.append(answered(body))
        assert title(body) == "Cartographer"
        return seen

    assert service.run(scenario) == [("no_match", "miss"), ("no_match", "negative_hit"), ("enriched", "miss")]
    assert service.directory.calls == 2


def test_an_entry_is_served_stale_on_failures_until_stale_seconds_after_it_was_read() -> None:
    service = OnFakes({"fresh_seconds": 10, "stale_seconds": 100, "refresh_ahead_seconds": 0})

    async def scenario() -> list[tuple[str, str | None]]:
        seen = [answered(await service.register(ROSARIO))]
        service.directory.fail(DirectoryError("connect", "server down"))
        service.clock.advance(10)
        seen.append(answered(await service.register(ROSARIO)))
        service.clock.advance(89.999)
        body = await service.register(ROSARIO)
        seen.append(answered(body))
        assert body["debugContext"]["error"] == "connect" and title(body) == "Senior Software Engineer"
        service.clock.advance(0.001)
        seen.append(answered(await service.register(ROSARIO)))
        return seen

    assert service.run(scenario) == [
        ("enriched", "miss"),
        ("enriched_stale", "stale"),
        ("enriched_stale", "stale"),
        ("fallback_ldap_error", None),
    ]
    assert service.lookups("stale") == 2


def test_concurrent_calls_for_one_user_wait_on_one_lookup() -> None:
    service = OnFakes({})

    async def scenario() -> list[tuple[str, str | None]]:
        service.directory.hang()
        calls = [asyncio.create_task(service.register(ROSARIO)) for _ in range(50)]
        await until(lambda: service.directory.held == 1)
        service.directory.release()
        return [answered(body) for body in await asyncio.gather(*calls)]

    assert service.run(scenario) == [("enriched", "miss")] * 50
    assert service.directory.calls == 1
    assert service.lookups("miss") == 50


class Recorder:
    """A CacheObserver that writes down what it is told."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def looked_up(self, result: str) -> None:
        self.seen.append(result)

    def evicted(self, cause: str, count: int = 1) -> None:
        self.seen += [f"evicted:{cause}"] * count

    def refreshed(self, error_kind: str | None) -> None:
        self.seen.append(f"refreshed:{error_kind or 'ok'}")


QUERY = UserQuery.of("", frozenset({"title"}), {})


def test_a_caller_joining_a_longer_lookup_waits_only_until_its_own_deadline() -> None:
    """A request that waited in a queue before it reached the cache has less time left than the
    lookup in flight for the same person: it gives up at its own deadline (fake seconds, through the
    cache's wait_for), and the lookup carries on for the others."""
    clock = FakeClock()
    directory = FakeDirectory(PEOPLE, clock=clock)
    recorder = Recorder()
    cache = CachedDirectory(directory, CachePolicy(stale_seconds=0), recorder, clock)
    query = QUERY.with_identifier(ROSARIO)

    async def scenario() -> tuple[float, float, LookupResult]:
        start = clock()
        directory.hang()
        first = asyncio.create_task(cache.find_user(query, start + 2.5))
        await until(lambda: directory.held == 1)
        with pytest.raises(DeadlineExceeded) as late:
            await cache.find_user(query, start + 0.2)
        gave_up = clock() - start
        assert late.value.stage == "search"
        directory.release()
        result = await first
        return gave_up, clock() - start, result

    gave_up, finished, result = clock.run(scenario())
    assert gave_up == pytest.approx(0.2)
    assert finished == pytest.approx(0.2)  # released at once after: the first lookup did not wait more
    assert result.cache == "miss" and result.entry is not None
    assert result.entry.values("title") == ("Senior Software Engineer",)
    assert directory.calls == 1 and recorder.seen == ["miss", "miss"]


def test_a_failed_refresh_is_reported_and_the_entry_still_served() -> None:
    clock = FakeClock()
    directory = FakeDirectory(PEOPLE, clock=clock)
    recorder = Recorder()
    cache = CachedDirectory(directory, CachePolicy(fresh_seconds=10, refresh_ahead_seconds=2), recorder, clock)
    query = QUERY.with_identifier(ROSARIO)

    async def scenario() -> list[str | None]:
        seen = [(await cache.find_user(query, clock() + 2.5)).cache]
        directory.fail(DirectoryError("timeout", "no answer in time"))
        clock.advance(7.999)  # not yet within refresh_ahead of going stale: no refresh
        seen.append((await cache.find_user(query, clock() + 2.5)).cache)
        calls_before = directory.calls
        clock.advance(0.001)  # within it: a refresh, which fails
        seen.append((await cache.find_user(query, clock() + 2.5)).cache)
        await until(lambda: "refreshed:timeout" in recorder.seen)
        assert calls_before == 1 and directory.calls == 2
        clock.advance(1.999)  # still fresh
        seen.append((await cache.find_user(query, clock() + 2.5)).cache)
        return seen

    assert clock.run(scenario()) == ["miss", "hit", "hit", "hit"]
    assert recorder.seen.count("refreshed:timeout") >= 1 and "refreshed:ok" not in recorder.seen


def test_background_refreshes_are_bounded() -> None:
    """At most MAX_CONCURRENT_REFRESHES (4) refreshes at once: they must never take the whole LDAP pool
    from the requests waiting on it."""
    clock = FakeClock()
    mails = [f"person{i}@example.com" for i in range(6)]
    directory = FakeDirectory({mail: person(mail, title=f"T{i}") for i, mail in enumerate(mails)}, clock=clock)
    cache = CachedDirectory(directory, CachePolicy(fresh_seconds=10, refresh_ahead_seconds=5), Recorder(), clock)

    async def scenario() -> int:
        for mail in mails:
            await cache.find_user(QUERY.with_identifier(mail), clock() + 2.5)
        clock.advance(6)
        directory.hang()
        for mail in mails:
            assert (await cache.find_user(QUERY.with_identifier(mail), clock() + 2.5)).cache == "hit"
        await until(lambda: directory.held == 4)
        for _ in range(10):  # and no fifth one turns up
            await asyncio.sleep(0)
        held = directory.held
        directory.release()
        return held

    assert clock.run(scenario()) == 4
    assert directory.calls == 6 + 4


def test_clear_forgets_every_entry() -> None:
    clock = FakeClock()
    cache = CachedDirectory(FakeDirectory(PEOPLE, clock=clock), CachePolicy(), Recorder(), clock)

    async def scenario() -> list[str | None]:
        for mail in (ROSARIO, KNOWN[0], NEW_HIRE):
            await cache.find_user(QUERY.with_identifier(mail), clock() + 2.5)
        assert len(cache) == 3 and cache.clear() == 3 and len(cache) == 0
        return [(await cache.find_user(QUERY.with_identifier(ROSARIO), clock() + 2.5)).cache]

    assert clock.run(scenario()) == ["miss"]


def test_recent_answers_last_their_window_and_keep_their_bound() -> None:
    clock = FakeClock()
    answers: RecentAnswers[str, str] = RecentAnswers(10, max_entries=2, clock=clock)
    answers.put("evt-1", "first")
    clock.advance(9.999)
    assert answers.get("evt-1") == "first"
    clock.advance(0.001)
    assert answers.get("evt-1") is None  # Okta retries within seconds; later, the event is new again
    for event in ("evt-2", "evt-3", "evt-4"):
        answers.put(event, event)
    assert [answers.get(event) for event in ("evt-2", "evt-3", "evt-4")] == [None, "evt-3", "evt-4"]
    answers.clear()
    assert answers.get("evt-4") is None
    off: RecentAnswers[str, str] = RecentAnswers(0, clock=clock)
    off.put("evt-1", "first")
    assert off.get("evt-1") is None


def test_refresh_ahead_starts_at_half_the_fresh_time_at_most() -> None:
    """refresh_ahead_seconds (30 by default) longer than half the fresh time: the refresh starts at half
    of it, not at every hit."""
    clock = FakeClock()
    directory = FakeDirectory(PEOPLE, clock=clock)
    cache = CachedDirectory(directory, CachePolicy(fresh_seconds=10, refresh_ahead_seconds=30), Recorder(), clock)
    query = QUERY.with_identifier(ROSARIO)

    async def scenario() -> list[int]:
        calls = []
        for step in (0, 4.999, 0.001):
            clock.advance(step)
            await cache.find_user(query, clock() + 2.5)
            await until(lambda: not cache._in_flight)
            calls.append(directory.calls)
        return calls

    assert clock.run(scenario()) == [1, 1, 2]


def test_a_lookup_that_cannot_start_in_time_is_shed_and_a_fresh_entry_still_answered() -> None:
    """start_by reaches the directory, which sheds the lookup (DeadlineExceeded "queue") for a miss; an
    entry in memory needs no lookup and is answered however late; an identifier that can match nobody
    (outside strip_domains) is nobody at once, asking no one."""
    clock = FakeClock()
    people = {"rosario.jones": PEOPLE[ROSARIO], "nina.new": person(NEW_HIRE, title="Cartographer")}
    directory = FakeDirectory(people, clock=clock, strip_domains=("example.com",))
    cache = CachedDirectory(directory, CachePolicy(), Recorder(), clock)

    async def scenario() -> list[str]:
        await cache.find_user(QUERY.with_identifier(ROSARIO), clock() + 2.5)
        late = clock() - 0.001
        stages = []
        with pytest.raises(DeadlineExceeded) as shed:
            await cache.find_user(QUERY.with_identifier(NEW_HIRE), clock() + 2.5, start_by=late)
        stages.append(shed.value.stage)
        asked = len(directory.queries)
        nobody = await cache.find_user(QUERY.with_identifier("rosario.jones@elsewhere.example"), clock() + 2.5, late)
        stages.append("nobody" if nobody.entry is None and len(directory.queries) == asked else "asked")
        hit = await cache.find_user(QUERY.with_identifier(ROSARIO), clock() + 2.5, start_by=late)
        stages.append(str(hit.cache))
        return stages

    assert clock.run(scenario()) == ["queue", "nobody", "hit"]


def test_with_strip_domains_each_person_has_an_entry_of_their_own() -> None:
    clock = FakeClock()
    people = {"rosario.jones": PEOPLE[ROSARIO], "carol.chen": PEOPLE[KNOWN[0]]}
    directory = FakeDirectory(people, clock=clock, strip_domains=("example.com", "corp.example.com"))
    cache = CachedDirectory(directory, CachePolicy(), Recorder(), clock)

    async def scenario() -> list[tuple[str | None, str]]:
        found = []
        for login in (ROSARIO, KNOWN[0], "rosario.jones@corp.example.com", "carol.chen@corp.example.com"):
            result = await cache.find_user(QUERY.with_identifier(login), clock() + 2.5)
            assert result.entry is not None
            found.append((result.cache, result.entry.values("title")[0]))
        return found

    assert clock.run(scenario()) == [
        ("miss", "Senior Software Engineer"),
        ("miss", "VP Engineering"),
        ("hit", "Senior Software Engineer"),
        ("hit", "VP Engineering"),
    ]
    assert len(cache) == 2


def test_an_ambiguous_answer_for_someone_never_cached_is_the_directory_error() -> None:
    clock = FakeClock()
    directory = FakeDirectory(PEOPLE, clock=clock)
    directory.fail(DirectoryError("ambiguous", "2 entries match"))
    cache = CachedDirectory(directory, CachePolicy(), Recorder(), clock)

    async def scenario() -> str:
        with pytest.raises(DirectoryError) as error:
            await cache.find_user(QUERY.with_identifier(ROSARIO), clock() + 2.5)
        return error.value.kind

    assert clock.run(scenario()) == "ambiguous"


@pytest.mark.parametrize(
    ("policy", "known", "unknown", "kept"),
    [
        pytest.param(CachePolicy(negative_seconds=0), "hit", "miss", 1, id="negative caching off"),
        pytest.param(
            CachePolicy(fresh_seconds=0.5, stale_seconds=0, negative_seconds=0.5),
            "hit",
            "negative_hit",
            2,
            id="under a second each",
        ),
        pytest.param(CachePolicy(max_entries=1), "hit", "miss", 1, id="one entry"),
    ],
)
def test_what_is_kept_follows_each_time_and_the_bound(policy: CachePolicy, known: str, unknown: str, kept: int) -> None:
    clock = FakeClock()
    cache = CachedDirectory(FakeDirectory(PEOPLE, clock=clock), policy, Recorder(), clock)

    async def scenario() -> list[str | None]:
        seen = []
        for login in (ROSARIO, ROSARIO, NEW_HIRE, NEW_HIRE):
            clock.advance(0.1)
            seen.append((await cache.find_user(QUERY.with_identifier(login), clock() + 2.5)).cache)
        return seen

    if policy.max_entries == 1:  # the unknown person took the only place
        assert clock.run(scenario()) == ["miss", known, "miss", "negative_hit"]
    else:
        assert clock.run(scenario()) == ["miss", known, "miss", unknown]
    assert len(cache) == kept


def test_callers_with_one_deadline_get_the_stage_the_directory_reached() -> None:
    """Okta's calls for one person arriving together: they share the lookup and its deadline, and each
    gets the directory's own DeadlineExceeded, which knows where it was (here: waiting for a connection)."""
    clock = FakeClock()
    directory = FakeDirectory(PEOPLE, clock=clock)
    cache = CachedDirectory(directory, CachePolicy(), Recorder(), clock)
    directory.hang("pool_wait")

    async def scenario() -> list[str]:
        deadline = clock() + 2.5
        calls = [cache.find_user(QUERY.with_identifier(ROSARIO), deadline) for _ in range(3)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        return [result.stage if isinstance(result, DeadlineExceeded) else repr(result) for result in results]

    assert clock.run(scenario()) == ["pool_wait"] * 3
    assert directory.calls == 1


def test_the_refresh_bound_holds_after_refreshes_have_finished() -> None:
    clock = FakeClock()
    mails = [f"person{i}@example.com" for i in range(6)]
    directory = FakeDirectory({mail: person(mail, title=f"T{i}") for i, mail in enumerate(mails)}, clock=clock)
    recorder = Recorder()
    cache = CachedDirectory(directory, CachePolicy(fresh_seconds=10, refresh_ahead_seconds=5), recorder, clock)

    async def scenario() -> int:
        for mail in mails:
            await cache.find_user(QUERY.with_identifier(mail), clock() + 2.5)
        clock.advance(6)
        await cache.find_user(QUERY.with_identifier(mails[0]), clock() + 2.5)  # one refresh, to its end
        await until(lambda: recorder.seen.count("refreshed:ok") == 1)
        directory.hang()
        for mail in mails[1:]:
            await cache.find_user(QUERY.with_identifier(mail), clock() + 2.5)
        await until(lambda: directory.held == 4)
        for _ in range(10):
            await asyncio.sleep(0)
        held = directory.held
        directory.release()
        await until(lambda: recorder.seen.count("refreshed:ok") == 5)
        return held

    assert clock.run(scenario()) == 4


def test_refresh_failures_are_reported_by_kind_and_a_refresh_cut_short_as_cancelled() -> None:
    clock = FakeClock()
    directory = FakeDirectory(PEOPLE, clock=clock)
    recorder = Recorder()
    cache = CachedDirectory(directory, CachePolicy(fresh_seconds=100, refresh_ahead_seconds=50), recorder, clock)
    query = QUERY.with_identifier(ROSARIO)

    async def scenario() -> None:
        await cache.find_user(query, clock() + 2.5)
        clock.advance(50)  # within refresh_ahead of going stale: each hit from now on starts a refresh
        for failure in (RuntimeError("a bug"), DirectoryError("connect", "down")):
            directory.fail(failure)
            assert (await cache.find_user(query, clock() + 2.5)).cache == "hit"
            await until(lambda: not cache._in_flight)
            clock.advance(1)
        directory.fail(None)
        directory.hang()
        await cache.find_user(query, clock() + 2.5)  # a refresh still waiting when the service stops
        await until(lambda: directory.held == 1)

    clock.run(scenario())
    refreshes = [seen for seen in recorder.seen if seen.startswith("refreshed")]
    assert refreshes == ["refreshed:RuntimeError", "refreshed:connect", "refreshed:cancelled"]


def test_an_entry_served_stale_after_a_deadline_says_so() -> None:
    service = OnFakes({"fresh_seconds": 1, "refresh_ahead_seconds": 0}, deadline=0.5)

    async def scenario() -> dict[str, Any]:
        await service.register(ROSARIO)
        service.clock.advance(1)
        service.directory.hang()
        return await service.register(ROSARIO)

    diagnostics = service.run(scenario)["debugContext"]
    assert diagnostics["outcome"] == "enriched_stale" and diagnostics["error"] == "deadline"


def _layout(i: int) -> DirectoryEntry:
    return DirectoryEntry(f"uid=u{i},ou=people", {f"attribute{i}": ("x",)})


def test_a_layout_is_stored_once_and_the_table_of_layouts_is_bounded() -> None:
    """The attribute names of a layout seen before are not in an entry's record (its number is); past
    _MAX_SHAPES layouts, a new one carries its names itself, and the known ones keep their numbers."""
    packer = _Packer()
    common = PEOPLE[KNOWN[0]]
    for _ in range(_MAX_SHAPES + 100):
        record = packer.pack(common, 1.0)
    assert b"departmentnumber" not in record and packer.unpack(record) == common
    assert b"attribute0" not in packer.pack(_layout(0), 1.0)  # the second layout: numbered, no names
    for i in range(1, _MAX_SHAPES - 2):
        packer.pack(_layout(i), 1.0)
    last, beyond = packer.pack(_layout(_MAX_SHAPES - 2), 1.0), packer.pack(_layout(_MAX_SHAPES - 1), 1.0)
    assert f"attribute{_MAX_SHAPES - 2}".encode() not in last  # the last of the table
    assert f"attribute{_MAX_SHAPES - 1}".encode() in beyond  # past it: the names travel with the entry
    assert packer.unpack(beyond) == _layout(_MAX_SHAPES - 1)
    assert b"departmentnumber" not in packer.pack(common, 2.0)


def test_recent_answers_keep_short_windows_single_places_and_ten_thousand_by_default() -> None:
    clock = FakeClock()
    short: RecentAnswers[str, str] = RecentAnswers(0.5, clock=clock)
    short.put("evt-1", "first")
    clock.advance(0.499)
    assert short.get("evt-1") == "first"
    single: RecentAnswers[str, str] = RecentAnswers(10, max_entries=1, clock=clock)
    single.put("evt-1", "first")
    assert single.get("evt-1") == "first"
    default: RecentAnswers[int, int] = RecentAnswers(10, clock=clock)
    for event in range(10_001):
        default.put(event, event)
    assert default.get(0) is None and default.get(1) == 1 and default.get(10_000) == 10_000
