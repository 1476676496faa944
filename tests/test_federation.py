"""Several directories as one person (service/federation.py), on fakes and a fake clock: which
directories are asked, in parallel or after the person is found, what an answer carries when one of
them fails or is late, and what the configuration refuses. The same against real slapds and the Samba
DC is in tests/test_several_directories.py."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Mapping
from typing import Any

import pytest
from okta_spec import registration_for
from support.config import directory_config, service_config
from support.fakes import FakeClock, FakeDirectory, person, until

from service.cache import CachedDirectory, CachePolicy
from service.directory import (
    DeadlineExceeded,
    DirectoryEntry,
    DirectoryError,
    Groups,
    LookupResult,
    UserDirectory,
    UserQuery,
    UserSearch,
)
from service.federation import Federation, PasswordHolders
from service.hooks.base import EnrichingHook, LiveDirectory, build_enriching, reads
from service.hooks.password_import import PasswordImportHook
from service.hooks.registry import HookType
from service.okta import HookEvent, parse_event
from service.settings import ConfigError, Settings, load_secrets, parse_settings

ANN = "ann@corp.example.com"  # corp, employee 1001, in HR
BOB = "bob@corp.example.com"  # corp, employee 1002, not in HR
EVA = "eva@emea.example.com"  # emea, employee 2001, in HR

PROFILE = {
    "title": "title",
    "department": {"attribute": "departmentNumber", "directory": "hr"},
    "costCenter": {"attribute": "businessCategory", "directory": "hr", "default": "unassigned"},
}


def directories(**changes: dict[str, Any]) -> dict[str, Any]:
    """corp and emea hold people (routed by domain), hr is joined by employeeNumber; ``changes`` merge
    into each named directory (None removes it)."""
    named: dict[str, Any] = {
        "corp": directory_config("ldap://127.0.0.1:389", user_search=search("corp.example.com")),
        "emea": directory_config("ldap://127.0.0.1:389", user_search=search("emea.example.com")),
        "hr": directory_config(
            "ldap://127.0.0.1:389",
            user_search={"base_dn": "ou=people,dc=hr,dc=example,dc=com", "match_attribute": "employeeNumber"},
            join={"attribute": "employeeNumber"},
        ),
    }
    for name, change in changes.items():
        if change is None:
            del named[name]
        else:
            named[name] = {**named.get(name, {}), **change}
    return named


def search(*domains: str) -> dict[str, Any]:
    found: dict[str, Any] = {"base_dn": "ou=people,dc=example,dc=com", "match_attribute": "mail"}
    if domains:
        found["domains"] = list(domains)
    return found


#: HR joined by Okta's identifier (its ``mail``), with no domains: it would compare every login.
BY_IDENTIFIER = {
    "join": {"identifier": True},
    "user_search": {"base_dn": "ou=people,dc=hr,dc=example,dc=com", "match_attribute": "mail"},
}


def settings_with(named: dict[str, Any] | None = None, **registration: Any) -> Settings:
    config = service_config("ldap://127.0.0.1:389")
    del config["directory"]
    config["directories"] = named if named is not None else directories()
    section = {
        "subject": "email",
        "profile": PROFILE,
        "cache": {"fresh_seconds": 0, "stale_seconds": 0},
        **registration,
    }
    config["hooks"] = {"registration": section}
    return parse_settings(config)


class World:
    """The three fake directories of :func:`directories`, and a registration hook over them."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        cached: bool = False,
        people: Mapping[str, Mapping[str, DirectoryEntry]] | None = None,
        overrunning: tuple[str, ...] = (),
    ) -> None:
        """``cached``: each directory behind a cache of its own, with the section's cache policy;
        ``people``: the people of more directories (name -> search value -> entry); ``overrunning``:
        directories whose held lookups run past their deadline (:class:`Overrunning`)."""
        self.clock = FakeClock()
        self.settings = settings or settings_with()
        named = self.settings.directory_set().named
        everyone: dict[str, Mapping[str, DirectoryEntry]] = {
            "corp": {
                ANN: person(ANN, title="Engineer", employeeNumber="1001"),
                BOB: person(BOB, title="Intern", employeeNumber="1002"),
            },
            "emea": {EVA: person(EVA, title="Analyst", employeeNumber="2001")},
            "hr": {
                "1001": hr_entry("1001", "Engineering", "CC-10"),
                "2001": hr_entry("2001", "Sales", "CC-20"),
            },
            **(people or {}),
        }
        self.fakes = {
            name: FakeDirectory(everyone.get(name, {}), clock=self.clock, search=config.user_search)
            for name, config in named.items()
        }
        section = self.settings.hooks.registration
        assert section is not None

        #: Each directory's cache, with ``cached``.
        self.caches: dict[str, CachedDirectory] = {}

        def directory_of(name: str) -> UserDirectory:
            fake = self.fakes[name]
            directory: UserDirectory = Overrunning(fake) if name in overrunning else fake
            if not cached:
                return directory
            cache = self.caches[name] = CachedDirectory(directory, section.cache, clock=self.clock)
            return cache

        plan = Federation.plan(self.settings.directory_set(), reads(section.rules()), directory_of, self.clock)
        self.hook = EnrichingHook(HookType.REGISTRATION, section, plan)

    def answer(self, email: str) -> Any:
        return self.clock.run(self.hook.answer(registration(email), self.clock()))


class Overrunning:
    """A fake directory whose held lookups (:meth:`FakeDirectory.hang`) run an hour past their deadline:
    a bug (the real directory and the cache end each lookup by its deadline), which the federation's
    short grace past the deadline guards against."""

    def __init__(self, fake: FakeDirectory) -> None:
        self._fake = fake

    def search_value(self, identifier: str) -> str | None:
        return self._fake.search_value(identifier)

    async def find_user(self, query: UserQuery, deadline: float, start_by: float | None = None) -> LookupResult:
        return await self._fake.find_user(query, deadline + 3600, start_by)


def hr_entry(number: str, department: str, cost_center: str) -> DirectoryEntry:
    attributes = {"employeenumber": (number,), "departmentnumber": (department,), "businesscategory": (cost_center,)}
    return DirectoryEntry(f"employeeNumber={number},ou=people,dc=hr,dc=example,dc=com", attributes)


def registration(email: str) -> HookEvent:
    return parse_event(json.dumps(registration_for(email)).encode(), HookType.REGISTRATION)


def profile(result: Any) -> dict[str, Any]:
    (command,) = result.body["commands"]
    assert command["type"] == "com.okta.user.profile.update"
    return dict(command["value"])


# -- finding the person ----------------------------------------------------------------------------


def test_values_are_joined_from_the_directory_each_rule_names() -> None:
    """Title from corp, which holds Ann; department and cost centre from HR, found by the employeeNumber
    read from her corp entry. emea is not asked: the login is not in its domain."""
    world = World()

    result = world.answer(ANN)

    assert result.outcome.value == "enriched"
    assert profile(result) == {"title": "Engineer", "department": "Engineering", "costCenter": "CC-10"}
    assert [query.identifier for query in world.fakes["hr"].queries] == ["1001"]
    assert world.fakes["emea"].calls == 0
    assert "missingDirectories" not in result.body["debugContext"]


def test_a_login_is_asked_only_of_the_directory_holding_its_domain() -> None:
    world = World()

    result = world.answer(EVA)

    assert profile(result) == {"title": "Analyst", "department": "Sales", "costCenter": "CC-20"}
    assert (world.fakes["corp"].calls, world.fakes["emea"].calls) == (0, 1)


def test_a_person_hr_does_not_know_gets_the_rules_defaults() -> None:
    """Bob has no HR entry: HR answered "nobody", so the HR rules' defaults apply and the answer is whole."""
    world = World()

    result = world.answer(BOB)

    assert result.outcome.value == "enriched"
    assert profile(result) == {"title": "Intern", "costCenter": "unassigned"}


def test_a_login_in_no_configured_domain_is_never_looked_up() -> None:
    world = World()

    result = world.answer("mallory@evil.example")

    assert result.outcome.value == "refused_identifier"
    assert result.unsafe_identifier == "identifier_outside_domains"
    assert sum(fake.calls for fake in world.fakes.values()) == 0


def both() -> dict[str, Any]:
    """:func:`directories` with corp and emea without domains: both are asked for every login."""
    return directories(corp={"user_search": search()}, emea={"user_search": search()})


def unrouted() -> Settings:
    """corp and emea with no domains: both are asked for every login."""
    return settings_with(both(), on_directory_error="deny")


def asked_together(world: World, email: str, *names: str) -> Any:
    """``email``'s answer, once every directory in ``names`` holds a lookup at the same time (they hang
    until then): proof that they were asked in parallel, not one after the other."""
    for name in names:
        world.fakes[name].hang()

    async def at_once() -> Any:
        answer = asyncio.ensure_future(world.hook.answer(registration(email), world.clock()))
        await until(lambda: all(world.fakes[name].held == 1 for name in names))
        for name in names:
            world.fakes[name].release()
        return await answer

    return world.clock.run(at_once())


def test_directories_without_domains_are_asked_in_parallel() -> None:
    result = asked_together(World(unrouted()), EVA, "corp", "emea")

    assert profile(result)["title"] == "Analyst"


def test_a_call_okta_gave_up_on_leaves_no_lookup_running() -> None:
    """The handler is cancelled (Okta hung up) while both directories hold its lookups: they are
    cancelled with it, and nothing is left for asyncio to complain about."""
    world = World(unrouted())
    for name in ("corp", "emea"):
        world.fakes[name].hang()

    async def hang_up() -> set[asyncio.Task[Any]]:
        answer = asyncio.ensure_future(world.hook.answer(registration(EVA), world.clock()))
        await until(lambda: world.fakes["corp"].held == 1 and world.fakes["emea"].held == 1)
        answer.cancel()
        await asyncio.gather(answer, return_exceptions=True)
        await until(lambda: world.fakes["corp"].held == 0 and world.fakes["emea"].held == 0)
        return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]

    assert world.clock.run(hang_up()) == set()


def test_a_person_found_in_two_directories_is_ambiguous_never_a_guess() -> None:
    world = World(unrouted())
    world.fakes["emea"].put(ANN, person(ANN, title="Someone else"))

    result = world.answer(ANN)

    assert result.outcome.value == "fallback_ldap_error" and result.error_kind == "ambiguous"
    assert result.denied  # on_directory_error: deny
    assert result.body["debugContext"]["error"] == "ambiguous"
    assert "Someone else" not in json.dumps(result.body) and "Engineer" not in json.dumps(result.body)


def test_nobody_found_while_a_directory_failed_is_that_failure_not_no_match() -> None:
    """The failed directory may hold the person: "unknown user" would be a guess (and deny on_unknown_user)."""
    world = World(settings_with(both()))
    world.fakes["emea"].fail(DirectoryError("connect", "down"))

    result = world.answer("nobody@example.com")

    assert result.outcome.value == "fallback_ldap_error" and result.error_kind == "connect"


def test_nobody_in_any_directory_is_no_match() -> None:
    world = World(unrouted())

    result = world.answer("nobody@example.com")

    assert result.outcome.value == "no_match"
    assert (world.fakes["corp"].calls, world.fakes["emea"].calls, world.fakes["hr"].calls) == (1, 1, 0)


def test_a_login_no_account_directory_holds_is_not_asked_of_a_secondary_either() -> None:
    """HR, joined by the identifier, would compare any login, but never decides who the person is: a
    login in no account directory's domain is refused, and HR is not asked."""
    world = World(settings_with(directories(hr=BY_IDENTIFIER)))

    result = world.answer("mallory@evil.example")

    assert result.outcome.value == "refused_identifier"
    assert sum(fake.calls for fake in world.fakes.values()) == 0


def test_a_secondary_no_rule_reads_is_skipped_wherever_it_is_configured() -> None:
    """HR configured first and read by no rule: skipped, and the account directories after it are
    still asked."""
    named = directories()
    hr_first = {"hr": named["hr"], "corp": named["corp"], "emea": named["emea"]}
    world = World(settings_with(hr_first, profile={"title": "title"}))

    result = world.answer(EVA)

    assert profile(result) == {"title": "Analyst"}
    assert (world.fakes["hr"].calls, world.fakes["emea"].calls) == (0, 1)


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (
            {"department": PROFILE["department"], "costCenter": PROFILE["costCenter"]},
            {"department": "Engineering", "costCenter": "CC-10"},
        ),
        (
            {"title": {"attribute": "title", "directory": "corp"}, "department": PROFILE["department"]},
            {"title": "Engineer", "department": "Engineering"},
        ),
    ],
)
def test_rules_that_each_name_their_directory(rules: dict[str, Any], expected: dict[str, str]) -> None:
    """No rule reads "the directory that holds the person": corp is asked all the same (to find Ann and
    her employeeNumber) and reads what the rules naming it read; rules that all read HR map HR's entry,
    not Ann's corp entry."""
    world = World(settings_with(profile=rules))

    result = world.answer(ANN)

    assert result.outcome.value == "enriched"
    assert profile(result) == expected


def test_hr_is_searched_by_the_first_join_value_as_the_home_entry_holds_it() -> None:
    """Ann has two employeeNumbers: HR is searched once, by the first, exactly as her corp entry holds
    it (case included): HR's own matching rule decides what equals it, which may be case-exact."""
    ann = person(ANN, title="Engineer", employeeNumber=("E1001", "2001"))
    hr = {"e1001": hr_entry("E1001", "Engineering", "CC-10"), "2001": hr_entry("2001", "Sales", "CC-20")}
    world = World(people={"corp": {ANN: ann}, "hr": hr})

    result = world.answer(ANN)

    assert profile(result) == {"title": "Engineer", "department": "Engineering", "costCenter": "CC-10"}
    assert [query.identifier for query in world.fakes["hr"].queries] == ["E1001"]


CAT = "cat@corp.example.com"  # corp, a contractor: no employeeNumber


def test_a_person_without_the_join_attribute_has_no_hr_entry_and_hr_is_not_asked() -> None:
    world = World(people={"corp": {CAT: person(CAT, title="Contractor")}})

    result = world.answer(CAT)

    assert result.outcome.value == "enriched"  # whole: HR's "nobody" is an answer, not a missing part
    assert profile(result) == {"title": "Contractor", "costCenter": "unassigned"}
    assert world.fakes["hr"].calls == 0


def test_a_secondary_with_nothing_to_join_on_does_not_stop_the_next_one() -> None:
    """Cat has no employeeNumber for HR, but payroll (joined by mail, configured after HR) is asked."""
    payroll = directory_config(
        "ldap://127.0.0.1:389",
        user_search={"base_dn": "ou=people,dc=payroll,dc=example,dc=com", "match_attribute": "mail"},
        join={"attribute": "mail"},
    )
    rules = {**PROFILE, "payGrade": {"attribute": "payGrade", "directory": "payroll"}}
    world = World(
        settings_with(directories(payroll=payroll), profile=rules),
        people={"corp": {CAT: person(CAT, title="Contractor")}, "payroll": {CAT: person(CAT, payGrade="P3")}},
    )

    result = world.answer(CAT)

    assert profile(result) == {"title": "Contractor", "costCenter": "unassigned", "payGrade": "P3"}
    assert world.fakes["hr"].calls == 0 and world.fakes["payroll"].calls == 1


@pytest.mark.parametrize("home_rule", [True, False])
def test_a_dn_resolved_by_a_rule_naming_corp_is_read_with_the_home_rules(home_rule: bool) -> None:
    """The manager's name read from corp by name, and (or not) the manager's mail from the home: Ann's
    home is corp, so one corp lookup resolves ``manager`` to what both rules read."""
    manager = "uid=max,ou=people,dc=example,dc=com"
    ann = DirectoryEntry(
        person(ANN).dn,
        {"mail": (ANN,), "title": ("Engineer",), "manager": (manager,)},
        linked={manager: {"mail": ("max@corp.example.com",), "cn": ("Max Muster",)}},
    )
    home = {"managerEmail": {"attribute": "manager", "resolve": "mail"}} if home_rule else {"title": "title"}
    rules = {**home, "managerName": {"attribute": "manager", "resolve": "cn", "directory": "corp"}}
    world = World(settings_with(profile=rules), people={"corp": {ANN: ann}})

    result = world.answer(ANN)

    expected = {"managerEmail": "max@corp.example.com"} if home_rule else {"title": "Engineer"}
    assert profile(result) == {**expected, "managerName": "Max Muster"}
    assert world.fakes["corp"].calls == 1


def with_groups(groups: Groups, **group_rule: Any) -> World:
    """corp (with a groups section) and HR; Ann in ``groups``; her groups from corp, her department from HR."""
    named = directories(corp={"groups": {"base_dn": "ou=groups,dc=example,dc=com"}}, emea=None)
    rules = {"groups": {"source": "groups", **group_rule}, "department": PROFILE["department"]}
    ann = person(ANN, employeeNumber="1001")
    ann = DirectoryEntry(ann.dn, ann.attributes, groups={"direct": groups})
    return World(settings_with(named, profile=rules), people={"corp": {ANN: ann}})


def test_the_homes_groups_are_read_with_the_join_attribute() -> None:
    world = with_groups(Groups(("eng", "staff")))

    result = world.answer(ANN)

    assert profile(result) == {"groups": ["eng", "staff"], "department": "Engineering"}
    assert "groupsTruncated" not in result.body["debugContext"]
    assert not result.groups_cut and not result.groups_incomplete


@pytest.mark.parametrize("cut", [True, False])
def test_a_group_list_cut_or_incomplete_is_said_when_other_directories_add_to_the_answer(cut: bool) -> None:
    """The rules read corp and HR: the group list cut to ``max`` (or incomplete in the directory) in
    corp's part is said all the same."""
    world = with_groups(Groups(("eng", "staff"), complete=cut), **({"max": 1} if cut else {}))

    result = world.answer(ANN)

    assert profile(result)["department"] == "Engineering"
    assert result.body["debugContext"]["groupsTruncated"] is True
    assert (result.groups_cut, result.groups_incomplete) == (cut, not cut)


def test_a_rule_reading_a_directory_not_asked_for_this_login_gets_its_default() -> None:
    """emea does not hold corp logins: for Ann, a rule reading emea by name gets its default, as for a
    directory that has no entry for her (not left out as for a directory that failed)."""
    rules = {"title": "title", "region": {"attribute": "l", "directory": "emea", "default": "none"}}
    world = World(settings_with(profile=rules))

    result = world.answer(ANN)

    assert profile(result) == {"title": "Engineer", "region": "none"}
    assert world.fakes["emea"].calls == 0


def test_hr_is_joined_as_soon_as_the_home_answers_while_another_candidate_is_still_out() -> None:
    """Unrouted: corp finds Ann while emea still holds its lookup; HR is asked then, not after emea."""
    result = asked_together(World(unrouted()), ANN, "emea", "hr")

    assert profile(result) == {"title": "Engineer", "department": "Engineering", "costCenter": "CC-10"}


# -- one directory failing costs its own part only --------------------------------------------------


def test_hr_down_answers_corps_part_and_says_hr_is_missing() -> None:
    world = World()
    world.fakes["hr"].fail(DirectoryError("connect", "every server is in its failure cooldown"))

    result = world.answer(ANN)

    assert result.outcome.value == "enriched_partial"
    # HR's values are left out (Okta keeps what it has), not replaced by their defaults
    assert profile(result) == {"title": "Engineer"}
    assert result.body["debugContext"]["missingDirectories"] == "hr:connect"
    assert result.missing == (("hr", "connect"),)
    assert not result.denied


def test_hr_frozen_is_given_up_at_the_deadline_with_corps_part() -> None:
    world = World(settings_with(deadline_seconds=1.5))
    world.fakes["hr"].hang()
    received_at = world.clock()

    result = world.clock.run(world.hook.answer(registration(ANN), received_at))

    assert result.outcome.value == "enriched_partial"
    assert profile(result) == {"title": "Engineer"}
    assert result.body["debugContext"]["missingDirectories"] == "hr:deadline"
    assert world.clock() == received_at + 1.5  # HR given up at the deadline, in fake seconds: not before


def test_a_registration_may_be_denied_when_a_directory_is_missing() -> None:
    world = World(settings_with(on_missing_directory="deny"))
    world.fakes["hr"].fail(DirectoryError("timeout", "slow"))

    result = world.answer(ANN)

    assert result.outcome.value == "enriched_partial" and result.denied
    assert result.body["commands"] == [{"type": "com.okta.action.update", "value": {"registration": "DENY"}}]
    assert result.body["debugContext"]["missingDirectories"] == "hr:timeout"


def test_a_failed_directory_that_is_not_the_persons_is_reported_missing() -> None:
    """Unrouted: emea failed while corp found Ann. The answer is corp's and HR's, and says emea did not
    answer (it could have held a second Ann: the ambiguity could not be ruled out)."""
    world = World(unrouted())
    world.fakes["emea"].fail(DeadlineExceeded("connect"))

    result = world.answer(ANN)

    assert result.outcome.value == "enriched_partial"
    assert profile(result) == {"title": "Engineer", "department": "Engineering", "costCenter": "CC-10"}
    assert result.missing == (("emea", "deadline"),)


def test_a_partial_answer_is_not_replayed_to_okta_retry() -> None:
    """Okta's retry of a partial answer is a second chance, as for a fallback."""
    world = World(settings_with(cache={"fresh_seconds": 0, "stale_seconds": 0, "replay_seconds": 30}))
    world.fakes["hr"].fail(DirectoryError("connect", "down"))
    event = registration(ANN)
    first = world.clock.run(world.hook.answer(event, world.clock()))
    world.fakes["hr"].fail(None)

    second = world.clock.run(world.hook.answer(event, world.clock()))

    assert first.outcome.value == "enriched_partial"
    assert second.outcome.value == "enriched" and second.cache != "replay"


def test_each_directorys_part_is_cached_and_served_stale_on_its_own() -> None:
    """HR fails after Ann's answer was cached: her HR part is served stale (the answer says so), while
    corp, whose entry is no longer fresh and which answers, gives its current title."""
    world = World(settings_with(cache={"fresh_seconds": 60, "stale_seconds": 3600, "replay_seconds": 0}), cached=True)
    assert profile(world.answer(ANN))["department"] == "Engineering"
    world.clock.advance(120)  # past fresh_seconds: each directory is asked again
    world.fakes["corp"].put(ANN, person(ANN, title="Principal Engineer", employeeNumber="1001"))
    world.fakes["hr"].fail(DirectoryError("connect", "down"))

    result = world.answer(ANN)

    assert result.outcome.value == "enriched_stale"
    assert profile(result) == {"title": "Principal Engineer", "department": "Engineering", "costCenter": "CC-10"}
    assert result.body["debugContext"]["cache"] == "stale" and result.error_kind == "connect"
    assert world.fakes["corp"].calls == 2 and world.fakes["hr"].calls == 2


def test_rules_that_all_read_a_missing_directory_leave_the_profile_as_it_is() -> None:
    world = World(settings_with(profile={"department": PROFILE["department"], "costCenter": PROFILE["costCenter"]}))
    world.fakes["hr"].fail(DirectoryError("connect", "down"))

    result = world.answer(ANN)

    assert result.outcome.value == "enriched_partial" and result.missing == (("hr", "connect"),)
    assert "commands" not in result.body  # no value at all: not even the defaults
    assert (result.groups_cut, result.groups_incomplete) == (False, False)


def test_a_secondary_failing_unexpectedly_is_missing_as_other() -> None:
    """A bug in one directory's lookup costs its part only, with the fixed reason ``other``."""
    world = World()
    world.fakes["hr"].fail(RuntimeError("a bug"))

    result = world.answer(ANN)

    assert result.outcome.value == "enriched_partial" and result.missing == (("hr", "other"),)
    assert profile(result) == {"title": "Engineer"}


def test_a_secondary_overrunning_its_deadline_is_given_up_just_past_it() -> None:
    """HR overruns its deadline (a bug: every lookup should end by it): it is given up a short grace past
    the deadline, not later, and is missing (``deadline``)."""
    world = World(settings_with(deadline_seconds=0.8), overrunning=("hr",))
    world.fakes["hr"].hang()
    received_at = world.clock()

    result = world.clock.run(world.hook.answer(registration(ANN), received_at))

    assert result.outcome.value == "enriched_partial" and result.missing == (("hr", "deadline"),)
    assert profile(result) == {"title": "Engineer"}
    assert received_at + 0.8 < world.clock() <= received_at + 0.9


def test_nobody_found_while_a_candidate_overran_the_deadline_is_a_deadline_in_search() -> None:
    """Unrouted: corp has nobody, emea overruns its deadline (a bug): the answer is given a short grace past
    the deadline, as a deadline at stage ``search`` (emea could hold the person: not no_match)."""
    world = World(
        settings_with(both(), deadline_seconds=0.8),
        overrunning=("emea",),
    )
    world.fakes["emea"].hang("connect")
    received_at = world.clock()

    result = world.clock.run(world.hook.answer(registration("nobody@example.com"), received_at))

    assert result.outcome.value == "fallback_deadline"
    assert result.body["debugContext"]["deadlineStage"] == "search"
    assert received_at + 0.8 < world.clock() <= received_at + 0.9


def both_asked() -> Settings:
    """corp and emea with no domains (both asked for every login), the default failure policy."""
    return settings_with(both())


def test_nobody_found_while_a_candidate_was_late_is_that_deadline() -> None:
    world = World(both_asked())
    world.fakes["emea"].fail(DeadlineExceeded("connect"))

    result = world.answer("nobody@example.com")

    assert result.outcome.value == "fallback_deadline"
    assert result.body["debugContext"]["deadlineStage"] == "connect"


def test_nobody_found_while_a_candidate_failed_unexpectedly_is_an_internal_error() -> None:
    """A bug in emea's lookup, nobody in corp: emea could hold the person, so not no_match (which may
    deny), but the internal error it is."""
    world = World(both_asked())
    world.fakes["emea"].fail(RuntimeError("a bug"))

    result = world.answer("nobody@example.com")

    assert result.outcome.value == "fallback_internal_error" and result.error_kind == "RuntimeError"
    assert not result.denied


def test_nobody_found_is_a_directory_error_rather_than_an_earlier_deadline() -> None:
    """corp is late, then emea fails: the answer reports emea's error (it says more about what is wrong),
    not the deadline that came first."""
    world = World(both_asked())
    world.fakes["corp"].fail(DeadlineExceeded("connect"))
    world.fakes["emea"].fail(DirectoryError("tls", "certificate refused"))
    world.fakes["emea"].hang()

    async def corp_first() -> Any:
        answer = asyncio.ensure_future(world.hook.answer(registration("nobody@example.com"), world.clock()))
        await until(lambda: world.fakes["emea"].held == 1)
        await asyncio.sleep(0.1)  # corp's deadline is in
        world.fakes["emea"].release()
        return await answer

    result = world.clock.run(corp_first())

    assert result.outcome.value == "fallback_ldap_error" and result.error_kind == "tls"


@pytest.mark.parametrize(("failing", "holding"), [("corp", "emea"), ("emea", "corp")])
def test_a_failure_arriving_with_the_person_does_not_hide_them(failing: str, holding: str) -> None:
    """The candidate that failed and the one that found Ann answer at the same moment: the answer is
    Ann's, with the failed one missing, whichever of the two is looked at first (asyncio hands them
    over as a set, in an order of their addresses: several rounds, each world kept, so that both
    orders occur)."""
    worlds = []
    for _ in range(10):
        world = World(both_asked())
        worlds.append(world)
        if holding == "emea":
            world.fakes["emea"].put(ANN, person(ANN, title="Engineer", employeeNumber="1001"))
            world.fakes["corp"].delete(ANN)
        world.fakes[failing].fail(DirectoryError("connect", "down"))

        result = asked_together(world, ANN, "corp", "emea")

        assert result.outcome.value == "enriched_partial" and result.missing == ((failing, "connect"),)
        assert profile(result) == {"title": "Engineer", "department": "Engineering", "costCenter": "CC-10"}


@pytest.mark.parametrize(
    ("named", "login", "asked"),
    [
        (directories(), ANN, ("corp", "hr")),
        (both(), EVA, ("corp", "emea", "hr")),
        (directories(hr=BY_IDENTIFIER), ANN, ("corp", "hr")),
    ],
)
def test_every_directory_is_asked_by_the_requests_one_deadline_and_start_by(
    named: dict[str, Any], login: str, asked: tuple[str, ...]
) -> None:
    """The home, the other candidates, HR joined by attribute or asked beside: each lookup ends by the
    request's deadline, and is shed if it would start after the request's start-by (the deadline less
    ``min_lookup_seconds``: too late to finish)."""
    world = World(settings_with(named, deadline_seconds=1.5, min_lookup_seconds=0.25))
    received_at = world.clock() - 0.5  # queued for half a second before the handler

    result = world.clock.run(world.hook.answer(registration(login), received_at))

    assert result.outcome.value == "enriched"
    deadline = received_at + 1.5
    for name in asked:
        assert world.fakes[name].deadlines == [(deadline, deadline - 0.25)], name


# -- the caches, each directory's part --------------------------------------------------------------

CACHED = {"fresh_seconds": 60, "stale_seconds": 3600, "replay_seconds": 0}


@pytest.mark.parametrize("named", [directories(), both()])
def test_nobody_known_from_the_caches_says_so(named: dict[str, Any]) -> None:
    """The login is routed to corp alone, or asked of corp and emea: the second no_match comes from
    their caches (``negative_hit``), and says so."""
    world = World(settings_with(named, cache=CACHED), cached=True)
    login = "nobody@corp.example.com"

    first, second = world.answer(login), world.answer(login)

    assert (first.outcome.value, second.outcome.value) == ("no_match", "no_match")
    assert (first.body["debugContext"]["cache"], second.body["debugContext"]["cache"]) == ("miss", "negative_hit")
    assert (first.cache, second.cache) == ("miss", "negative_hit")
    assert world.fakes["corp"].calls == 1


def test_nobody_known_from_one_cache_and_asked_of_another_directory_is_a_miss() -> None:
    """corp and emea both asked: corp still remembers "nobody", emea's cache was emptied, so emea is
    asked again. The no_match says ``miss`` (a directory was asked), whichever answered first."""
    world = World(settings_with(both(), cache=CACHED), cached=True)
    login = "nobody@corp.example.com"
    world.answer(login)
    world.caches["emea"].clear()

    second = world.answer(login)

    assert second.outcome.value == "no_match" and second.cache == "miss"
    assert (world.fakes["corp"].calls, world.fakes["emea"].calls) == (1, 2)


@pytest.mark.parametrize("rules", [PROFILE, {"title": "title"}])
def test_an_answer_from_the_caches_says_hit(rules: dict[str, Any]) -> None:
    world = World(settings_with(profile=rules, cache=CACHED), cached=True)

    first, second = world.answer(ANN), world.answer(ANN)

    assert (first.body["debugContext"]["cache"], second.body["debugContext"]["cache"]) == ("miss", "hit")
    assert (first.cache, second.cache) == ("miss", "hit")
    assert second.outcome.value == "enriched" and profile(second) == profile(first)


@pytest.mark.parametrize("rules", [PROFILE, {"title": "title"}])
def test_the_home_served_stale_makes_the_answer_stale_and_says_why(rules: dict[str, Any]) -> None:
    """corp fails after Ann's answer was cached: her corp part is served stale (with HR's current part,
    when the rules read HR), and the answer says so and why."""
    world = World(settings_with(profile=rules, cache=CACHED), cached=True)
    first = world.answer(ANN)
    world.clock.advance(120)  # past fresh_seconds: each directory is asked again
    world.fakes["corp"].fail(DirectoryError("connect", "down"))

    result = world.answer(ANN)

    assert result.outcome.value == "enriched_stale" and profile(result) == profile(first)
    assert result.body["debugContext"]["cache"] == "stale" and result.body["debugContext"]["error"] == "connect"
    assert (result.cache, result.error_kind) == ("stale", "connect")


def test_a_denied_partial_answer_says_how_the_cache_answered() -> None:
    """HR down with nothing of Ann's to serve stale, corp's part from its cache: the registration denied
    for the missing part says ``hit`` as well as what is missing."""
    cache = {"fresh_seconds": 60, "stale_seconds": 0, "replay_seconds": 0}
    world = World(settings_with(on_missing_directory="deny", cache=cache), cached=True)
    world.fakes["hr"].fail(DirectoryError("connect", "down"))
    world.answer(ANN)

    result = world.answer(ANN)

    assert result.outcome.value == "enriched_partial" and result.denied
    assert result.body["debugContext"]["cache"] == "hit" and result.cache == "hit"
    assert result.body["debugContext"]["missingDirectories"] == "hr:connect"


def test_a_directory_no_rule_reads_is_never_asked() -> None:
    world = World(settings_with(profile={"title": "title"}))

    result = world.answer(ANN)

    assert profile(result) == {"title": "Engineer"}
    assert world.fakes["hr"].calls == 0


def test_a_secondary_joined_by_the_identifier_is_asked_beside_the_account_directory() -> None:
    world = World(settings_with(directories(hr=BY_IDENTIFIER)))
    world.fakes["hr"].put(ANN, hr_entry("1001", "Engineering", "CC-10"))

    result = asked_together(world, ANN, "corp", "hr")

    assert profile(result) == {"title": "Engineer", "department": "Engineering", "costCenter": "CC-10"}


class Wired:
    """What the server hands a hook type (:class:`~service.hooks.base.Wiring`), over fakes: a directory
    behind the hook type's cache of it is the fake itself, and each one asked for is recorded."""

    def __init__(self, settings: Settings, fakes: Mapping[str, FakeDirectory]) -> None:
        self.directories = settings.directory_set()
        self._fakes = fakes
        #: ``(hook type, directory, cache policy, deadline)`` of every :meth:`cached` call, in order.
        self.wired: list[tuple[str, str, CachePolicy, float]] = []

    def live(self, name: str) -> LiveDirectory:
        return self._fakes[name]

    def cached(self, hook_type: str, name: str, policy: CachePolicy, deadline_seconds: float) -> UserDirectory:
        self.wired.append((hook_type, name, policy, deadline_seconds))
        return self._fakes[name]


def test_a_hook_is_built_over_its_own_cache_of_each_directory_its_rules_read() -> None:
    """The account directories and HR (read by the rules), each through the registration hook's cache of
    it, with the section's cache policy and deadline; a directory no rule reads is not wired at all."""
    settings = settings_with(directories(payroll={**directories()["hr"], "join": {"attribute": "mail"}}))
    section = settings.hooks.registration
    assert section is not None
    people = {
        "corp": {ANN: person(ANN, title="Engineer", employeeNumber="1001")},
        "hr": {"1001": hr_entry("1001", "Engineering", "CC-10")},
    }
    named = settings.directory_set().named
    fakes = {
        name: FakeDirectory(people.get(name, {}), clock=time.monotonic, search=config.user_search)
        for name, config in named.items()
    }
    wiring = Wired(settings, fakes)

    hook = build_enriching(HookType.REGISTRATION, section, wiring)
    result = asyncio.run(hook.answer(registration(ANN), time.monotonic()))

    assert profile(result) == {"title": "Engineer", "department": "Engineering", "costCenter": "CC-10"}
    expected = [("registration", name, section.cache, section.deadline_seconds) for name in ("corp", "emea", "hr")]
    assert wiring.wired == expected


# -- password import: one bind, in the directory that holds the person --------------------------------


def holders(*, routed: bool) -> dict[str, FakeDirectory]:
    """corp holds Ann, emea Eva, each with the password "right"; the password hook reads real time (its
    deadline check is against time.monotonic), so these fakes do too."""
    domains = {"corp": ("corp.example.com",), "emea": ("emea.example.com",)}
    return {
        name: FakeDirectory(
            {mail: person(mail)},
            clock=time.monotonic,
            search=UserSearch("ou=people,dc=example,dc=com", domains=domains[name] if routed else ()),
            passwords={person(mail).dn: "right"},
        )
        for name, mail in (("corp", ANN), ("emea", EVA))
    }


def password_hook(fakes: dict[str, FakeDirectory]) -> PasswordImportHook:
    """The password import hook over ``fakes``, the directories that hold people."""
    settings = parse_settings(
        service_config("ldaps://127.0.0.1:636", hooks={"password_import": {"subject": "login"}})
    ).hooks.password_import
    assert settings is not None
    return PasswordImportHook(HookType.PASSWORD_IMPORT, settings, PasswordHolders(fakes))


def password_event(login: str, password: str) -> HookEvent:
    from okta_spec import example

    event = example("password_import")
    event["data"]["context"]["credential"] = {"username": login, "password": password}
    return parse_event(json.dumps(event).encode(), HookType.PASSWORD_IMPORT)


@pytest.mark.parametrize("routed", [True, False])
def test_a_password_is_checked_by_one_bind_in_the_directory_holding_the_person(routed: bool) -> None:
    fakes = holders(routed=routed)
    hook = password_hook(fakes)

    right = asyncio.run(hook.answer(password_event(EVA, "right"), time.monotonic()))
    wrong = asyncio.run(hook.answer(password_event(EVA, "wrong"), time.monotonic()))

    assert (right.credential, wrong.credential_reason) == ("verified", "invalid_credentials")
    assert fakes["corp"].binds == [] and fakes["emea"].binds == [person(EVA).dn] * 2
    assert fakes["corp"].calls == (0 if routed else 2)  # unrouted: searched, never bound


def test_a_password_for_a_person_in_two_directories_is_never_checked() -> None:
    fakes = holders(routed=False)
    fakes["corp"].put(EVA, person(EVA))
    hook = password_hook(fakes)

    result = asyncio.run(hook.answer(password_event(EVA, "right"), time.monotonic()))

    assert (result.credential, result.credential_reason) == ("unverified", "ambiguous_user")
    assert fakes["corp"].binds == fakes["emea"].binds == []


def test_a_password_is_not_checked_while_another_candidate_directory_is_down() -> None:
    """Unrouted, corp down: emea holds Eva, but corp could hold another Eva. UNVERIFIED (Okta asks again
    at the next sign-in), and no bind anywhere."""
    fakes = holders(routed=False)
    fakes["corp"].fail(DirectoryError("connect", "down"))
    hook = password_hook(fakes)

    result = asyncio.run(hook.answer(password_event(EVA, "right"), time.monotonic()))

    assert (result.credential, result.credential_reason) == ("error", "directory_error")
    assert fakes["emea"].binds == []


@pytest.mark.parametrize("routed", [True, False])
def test_a_password_check_has_the_requests_deadline(routed: bool) -> None:
    """The search(es) and the one bind end by the request's deadline."""
    fakes = holders(routed=routed)
    hook = password_hook(fakes)
    received_at = time.monotonic()

    result = asyncio.run(hook.answer(password_event(EVA, "right"), received_at))

    assert result.credential == "verified"
    deadline = received_at + hook.settings.deadline_seconds
    assert fakes["emea"].deadlines == [(deadline, None)] and fakes["emea"].bind_deadlines == [deadline]
    assert fakes["corp"].deadlines == ([] if routed else [(deadline, None)])


def test_a_password_for_a_login_no_directory_holds_is_never_checked() -> None:
    fakes = holders(routed=False)
    hook = password_hook(fakes)

    result = asyncio.run(hook.answer(password_event("nobody@example.com", "right"), time.monotonic()))

    assert (result.credential, result.credential_reason) == ("unverified", "unknown_user")
    assert fakes["corp"].binds == fakes["emea"].binds == []


def test_a_person_in_two_directories_is_ambiguous_even_while_a_third_is_down() -> None:
    """corp and emea both hold Eva, apac is down: ambiguous (no bind can tell them apart, whatever apac
    holds), before the failure."""
    fakes = holders(routed=False)
    fakes["corp"].put(EVA, person(EVA))
    fakes["apac"] = FakeDirectory(clock=time.monotonic, search=UserSearch("ou=people,dc=example,dc=com"))
    fakes["apac"].fail(DirectoryError("connect", "down"))
    hook = password_hook(fakes)

    result = asyncio.run(hook.answer(password_event(EVA, "right"), time.monotonic()))

    assert (result.credential, result.credential_reason) == ("unverified", "ambiguous_user")
    assert fakes["corp"].binds == fakes["emea"].binds == []


# -- the configuration ---------------------------------------------------------------------------------


def error_of(named: dict[str, Any] | None = None, **registration: Any) -> str:
    with pytest.raises(ConfigError) as raised:
        settings_with(named, **registration)
    return str(raised.value)


@pytest.mark.parametrize(
    ("named", "registration", "expected"),
    [
        (
            None,
            {"profile": {"dept": {"attribute": "departmentNumber", "directory": "hrr"}}},
            "hooks.registration.profile.dept.directory: 'hrr' is not a configured directory (corp, emea, hr)",
        ),
        (
            None,
            {"profile": {"groups": {"source": "groups", "directory": "hr"}}},
            "hooks.registration.profile.groups: source: groups needs a directories.hr.groups section",
        ),
        (
            None,
            {"profile": {"groups": {"source": "groups"}}},
            "hooks.registration.profile.groups: source: groups needs a directories.corp.groups section",
        ),
        (directories(hr={"join": {}}), {}, "directories.hr.join: set attribute"),
        (
            directories(hr={"join": {"attribute": "employeeNumber", "identifier": True}}),
            {},
            "set attribute (the person's attribute holding the join value) or identifier: true",
        ),
        (
            directories(
                hr={"user_search": {"base_dn": "dc=hr", "match_attribute": "employeeNumber", "domains": ["hr.example"]}}
            ),
            {},
            "join.attribute: a directory joined by an attribute is not searched by login",
        ),
        (
            directories(corp={"join": {"identifier": True}}, emea={"join": {"identifier": True}}),
            {},
            "directories: at least one directory must hold people (have no join)",
        ),
        (
            {"Corp": directories()["corp"]},
            {"profile": {"title": "title"}},
            "directories: 'Corp' is not a directory name",
        ),
        ({}, {"profile": {"title": "title"}}, "directories: name at least one directory"),
        (
            directories(corp={"user_search": {**search(), "domains": ["x.example"], "strip_domains": ["x.example"]}}),
            {},
            "set domains or strip_domains, not both",
        ),
    ],
)
def test_each_several_directories_error_names_its_key(
    named: dict[str, Any] | None, registration: dict[str, Any], expected: str
) -> None:
    assert expected in error_of(named, **registration)


@pytest.mark.parametrize("name", ["hr\nlevel=info event=forged", "hr\x1b[31m", "h" * 5000, "hr\x00", "hr\u202elive"])
def test_a_hostile_directory_name_is_quoted_in_the_error_never_echoed_raw(name: str) -> None:
    """Every message that names it (the name's own check, the errors of the keys under it) quotes it,
    cut: the error goes to a terminal and the pod's log."""
    named = directories()
    named[name] = named.pop("hr")
    wrong = directories()
    wrong[name] = {**wrong.pop("hr"), "pool_size": 0}
    messages = (error_of(named), error_of(wrong))
    assert "directories: " + repr(name[:40]) + " is not a directory name" in messages[0]
    assert "directories." + repr(name[:40]) + ": pool_size must be" in messages[1]
    for message in messages:
        assert name[:41] not in message and not any(ord(c) < 32 or c == "\x7f" for c in message), message


def test_only_registration_may_deny_on_a_missing_directory() -> None:
    config = service_config("ldap://127.0.0.1:389")
    del config["directory"]
    config["directories"] = directories()
    config["hooks"] = {"token": {"id_token": {"title": "title"}, "on_missing_directory": "deny"}}
    with pytest.raises(ConfigError, match="on_missing_directory: deny is only an answer for registration hooks"):
        parse_settings(config)


def test_the_one_directory_form_and_the_several_form_are_exclusive() -> None:
    config = service_config("ldap://127.0.0.1:389")
    config["directories"] = directories()
    with pytest.raises(ConfigError, match=r"set directory .* or directories .*, not both"):
        parse_settings(config)


def test_a_join_needs_several_directories() -> None:
    config = service_config("ldap://127.0.0.1:389")
    config["directory"] = {**config["directory"], "join": {"attribute": "mail"}}
    with pytest.raises(ConfigError, match=r"directory\.join: a join needs several directories"):
        parse_settings(config)


def test_password_import_needs_tls_to_every_directory_holding_people() -> None:
    config = service_config("ldap://127.0.0.1:389")
    del config["directory"]
    named = directories()
    for name in ("corp", "hr"):
        named[name]["urls"] = ["ldaps://127.0.0.1:636"]
    config["directories"] = named
    config["hooks"] = {"password_import": {}}
    with pytest.raises(ConfigError, match=r"use ldaps:// URLs or set directories\.emea\.start_tls"):
        parse_settings(config)


def test_each_directory_has_its_own_secrets_named_by_its_key(tmp_path: Any) -> None:
    named = directories()
    named["hr"]["bind_password_env"] = "HR_BIND_PASSWORD"
    settings = settings_with(named)
    environ = {"OKTA_HOOK_SECRET": "s", "LDAP_BIND_PASSWORD": "corp-and-emea", "HR_BIND_PASSWORD": "hr-only"}

    secrets = load_secrets(settings, environ)

    credentials = {name: secrets.of(name).bind_password for name in ("corp", "emea", "hr")}
    assert {name: (c.name, c.read().value) for name, c in credentials.items() if not isinstance(c, str)} == {
        "corp": ("directories.corp.bind_password_env", "corp-and-emea"),
        "emea": ("directories.emea.bind_password_env", "corp-and-emea"),
        "hr": ("directories.hr.bind_password_env", "hr-only"),
    }
    with pytest.raises(ConfigError, match=r"directories\.hr\.bind_password_env: environment variable HR_BIND"):
        load_secrets(settings, {"OKTA_HOOK_SECRET": "s", "LDAP_BIND_PASSWORD": "x"})


def test_the_one_directory_form_is_the_directory_named_default() -> None:
    """Every existing configuration keeps working: ``directory:`` is one directory, named ``default``."""
    settings = parse_settings(service_config("ldap://127.0.0.1:389"))

    named = settings.directory_set()

    assert named.single and list(named.named) == ["default"] and named.accounts() == ["default"]
    assert named.named["default"] == settings.directory


def test_the_settings_copy_nothing_of_one_directory_into_another() -> None:
    """Each directory keeps its own settings (a deep copy of the test's dict is not shared)."""
    named = directories()
    before = copy.deepcopy(named)
    settings = settings_with(named)
    assert named == before
    corp, hr = settings.directory_set().named["corp"], settings.directory_set().named["hr"]
    assert corp.user_search.domains == ("corp.example.com",) and hr.user_search.domains == ()
    assert hr.join is not None and hr.join.attribute == "employeeNumber"
