"""Several directories as one person (service/federation.py), on fakes and a fake clock: which
directories are asked, in parallel or after the person is found, what an answer carries when one of
them fails or is late, and what the configuration refuses. The same against real slapds and the Samba
DC is in tests/test_several_directories.py."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from typing import Any

import pytest
from okta_spec import registration_for
from support.config import directory_config, service_config
from support.fakes import FakeClock, FakeDirectory, person, until

from service.cache import CachedDirectory
from service.directory import DeadlineExceeded, DirectoryEntry, DirectoryError, UserDirectory, UserSearch
from service.federation import Federation, PasswordHolders
from service.hooks.base import EnrichingHook, reads
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

    def __init__(self, settings: Settings | None = None, *, cached: bool = False) -> None:
        """``cached``: each directory behind a cache of its own, with the section's cache policy."""
        self.clock = FakeClock()
        self.settings = settings or settings_with()
        named = self.settings.directory_set().named
        corp_people = {
            ANN: person(ANN, title="Engineer", employeeNumber="1001"),
            BOB: person(BOB, title="Intern", employeeNumber="1002"),
        }
        emea_people = {EVA: person(EVA, title="Analyst", employeeNumber="2001")}
        hr_people = {
            "1001": hr_entry("1001", "Engineering", "CC-10"),
            "2001": hr_entry("2001", "Sales", "CC-20"),
        }
        self.fakes = {
            name: FakeDirectory(people, clock=self.clock, search=named[name].user_search)
            for name, people in (("corp", corp_people), ("emea", emea_people), ("hr", hr_people))
            if name in named
        }
        section = self.settings.hooks.registration
        assert section is not None

        def directory_of(name: str) -> UserDirectory:
            fake = self.fakes[name]
            return CachedDirectory(fake, section.cache, clock=self.clock) if cached else fake

        plan = Federation.plan(self.settings.directory_set(), reads(section.rules()), directory_of, self.clock)
        self.hook = EnrichingHook(HookType.REGISTRATION, section, plan)

    def answer(self, email: str) -> Any:
        return self.clock.run(self.hook.answer(registration(email), self.clock()))


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


def unrouted() -> Settings:
    """corp and emea with no domains: both are asked for every login."""
    return settings_with(
        directories(corp={"user_search": search()}, emea={"user_search": search()}), on_directory_error="deny"
    )


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
    world = World(settings_with(directories(corp={"user_search": search()}, emea={"user_search": search()})))
    world.fakes["emea"].fail(DirectoryError("connect", "down"))

    result = world.answer("nobody@example.com")

    assert result.outcome.value == "fallback_ldap_error" and result.error_kind == "connect"


def test_nobody_in_any_directory_is_no_match() -> None:
    world = World(unrouted())

    result = world.answer("nobody@example.com")

    assert result.outcome.value == "no_match"
    assert (world.fakes["corp"].calls, world.fakes["emea"].calls, world.fakes["hr"].calls) == (1, 1, 0)


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


def test_a_directory_no_rule_reads_is_never_asked() -> None:
    world = World(settings_with(profile={"title": "title"}))

    result = world.answer(ANN)

    assert profile(result) == {"title": "Engineer"}
    assert world.fakes["hr"].calls == 0


def test_a_secondary_joined_by_the_identifier_is_asked_beside_the_account_directory() -> None:
    named = directories(
        hr={
            "join": {"identifier": True},
            "user_search": {"base_dn": "ou=people,dc=hr,dc=example,dc=com", "match_attribute": "mail"},
        }
    )
    world = World(settings_with(named))
    world.fakes["hr"].put(ANN, hr_entry("1001", "Engineering", "CC-10"))

    result = asked_together(world, ANN, "corp", "hr")

    assert profile(result) == {"title": "Engineer", "department": "Engineering", "costCenter": "CC-10"}


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
        ({"Corp": directories()["corp"]}, {"profile": {"title": "title"}}, "directories.Corp: a directory name is"),
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
