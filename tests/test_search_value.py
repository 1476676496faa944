"""The value the directory compares (the identifier stripped, lower-cased, with ``strip_domains`` its
local part) is computed once per request, by the hook, and carried on in the query: the cache keys on
it and the directory escapes it as it is. Real hooks, cache and directory against a real slapd; the
one function that computes the value, ``UserSearch.search_value``, is counted."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from okta_spec import registration_for
from password_import_support import RIGHT, PolicySlapd, password_event, password_ldif
from support.config import directory_config, service_config
from support.directories import service_pool

from service.cache import CachedDirectory, CachePolicy
from service.demo.slapd import SERVICE_BIND_PASSWORD, Slapd
from service.directory import Directory, UserQuery, UserSearch
from service.directory.lookup import UserLookup
from service.hooks.base import EnrichingHook
from service.hooks.password_import import PasswordImportHook
from service.hooks.registry import HookType
from service.okta import parse_event
from service.settings import parse_settings

#: uid is what the directory compares; Okta's logins are in one of the company's domains.
STRIP = {"match_attribute": "uid", "strip_domains": ["corp.example.org", "example.com"]}


@pytest.fixture
def computed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every identifier ``UserSearch.search_value`` is asked about, in order."""
    calls: list[str] = []
    original = UserSearch.search_value

    def counting(self: UserSearch, identifier: str) -> str | None:
        calls.append(identifier)
        return original(self, identifier)

    monkeypatch.setattr(UserSearch, "search_value", counting)
    return calls


def _with_strip(url: str, **directory: Any) -> dict[str, Any]:
    config = directory_config(url, **directory)
    config["user_search"] = {**config["user_search"], **STRIP}
    return config


def test_a_registration_computes_the_search_value_once(slapd: Slapd, computed: list[str]) -> None:
    """Without a cache, on a cache miss and on a cache hit: one computation, and the person is found
    by the value it gave (``alice.wong``, from a login in capitals in another of the company's domains)."""
    settings = parse_settings(service_config(slapd.url, directory=_with_strip(slapd.url)))
    directory = Directory(settings.directory, SERVICE_BIND_PASSWORD)
    cached = CachedDirectory(directory, CachePolicy())
    event = parse_event(json.dumps(registration_for("Alice.Wong@CORP.Example.org")).encode(), HookType.REGISTRATION)

    async def scenario() -> list[tuple[str, str | None, int]]:
        answers = []
        for through in (directory, cached, cached):  # a new Hook each time: no replay of the event
            hook = EnrichingHook(HookType.REGISTRATION, settings.hooks.registration, through)
            before = len(computed)
            result = await hook.answer(event, time.monotonic())
            answers.append((result.outcome.value, result.cache, len(computed) - before))
        return answers

    try:
        answers = asyncio.run(scenario())
    finally:
        directory.close()
    assert answers == [("enriched", None, 1), ("enriched", "miss", 1), ("enriched", "hit", 1)]
    assert computed == ["Alice.Wong@CORP.Example.org"] * 3


@pytest.fixture(scope="module")
def policy_slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicySlapd]:
    with PolicySlapd(tmp_path_factory.mktemp("ppolicy"), password_ldif()) as server:
        yield server


def test_a_password_import_computes_the_search_value_once(policy_slapd: PolicySlapd, computed: list[str]) -> None:
    directory_section = _with_strip(policy_slapd.url, start_tls=True, ca_file=str(policy_slapd.ca_file))
    settings = parse_settings(
        {
            "auth": {"header": "Authorization", "secret_env": ["OKTA_HOOK_SECRET"]},
            "directory": directory_section,
            "hooks": {"password_import": {}},
        }
    )
    directory = Directory(settings.directory, SERVICE_BIND_PASSWORD)
    hook = PasswordImportHook(HookType.PASSWORD_IMPORT, settings.hooks.password_import, directory)
    event = parse_event(json.dumps(password_event("Pia.Pass@Example.com", RIGHT)).encode(), HookType.PASSWORD_IMPORT)
    try:
        result = asyncio.run(hook.answer(event, time.monotonic()))
    finally:
        directory.close()
    assert (result.credential, result.credential_reason) == ("verified", "ok")
    assert computed == ["Pia.Pass@Example.com"]


def test_the_ldap_search_never_computes_the_value_itself(slapd: Slapd) -> None:
    """A query whose value was not computed reaching the LDAP code is a bug (its strip_domains would be
    skipped): refused before any connection is asked for."""
    settings = parse_settings(service_config(slapd.url, directory=_with_strip(slapd.url)))
    pool = service_pool(settings.directory, SERVICE_BIND_PASSWORD)
    users = UserLookup(settings.directory, pool)
    try:
        with pytest.raises(ValueError, match="search value"):
            users.find(UserQuery.of("alice.wong@corp.example.org", frozenset(), {}), lambda stage: None)
        assert pool.state() == (0, 0, 0)
        assert users.find(UserQuery("", frozenset()).with_value("alice.wong"), lambda stage: None) is not None
    finally:
        pool.close()
