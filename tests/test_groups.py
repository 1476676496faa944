"""Groups as directory admins mean them: nested membership, names as stored, bounds and cuts, the AD
dialect. Against a real slapd holding tests/groups_support.py's directory (three levels, a cycle, 60
groups under one parent, names with commas, parentheses and capitals), through the in-process app for
every hook type. There is no Active Directory here: its filters are checked as exact strings."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from groups_support import ADA_DIRECT, ADA_MAILS, ADA_NESTED, TEAMS, groups_ldif
from okta_spec import example, registration_for, validate_response
from prometheus_client import generate_latest
from sanic import Sanic
from support.config import SECRET, directory_config, service_config
from support.servers import HangingServer

from service.demo.slapd import SERVICE_BIND_PASSWORD, Slapd, free_port
from service.directory import (
    DeadlineExceeded,
    Directory,
    DirectoryConfig,
    DirectoryEntry,
    DirectoryError,
    Groups,
    UserQuery,
)
from service.directory.groups import in_chain_filter, member_filter
from service.mapping import MappingRule, guid_string, map_entry, sid_string
from service.server import create_apps
from service.settings import ConfigError, Secrets, parse_settings
from service.telemetry import Metrics, Telemetry

GROUPS_SECTION = {"base_dn": "ou=groups,dc=example,dc=com", "filter": "(objectClass=groupOfNames)"}


@pytest.fixture(scope="module")
def referred() -> Iterator[HangingServer]:
    """Where the directory's referral object points: a client that followed it would connect here."""
    server = HangingServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def groups_slapd(tmp_path_factory: pytest.TempPathFactory, referred: HangingServer) -> Iterator[Slapd]:
    # dynlist: memberOf computed at search time, normalised (lower-case) the way the issue describes.
    ldif = groups_ldif(referral_url=referred.url)
    with Slapd(tmp_path_factory.mktemp("groups-slapd"), ldif, memberof="dynlist") as server:
        yield server


def _directory_config(url: str, **groups: Any) -> DirectoryConfig:
    settings = parse_settings(service_config(url, directory=directory_config(url, groups={**GROUPS_SECTION, **groups})))
    return settings.directory


class CountingObserver:
    """Counts LDAP operations by name; optionally stalls the first ``groups`` search."""

    def __init__(self, stall_groups: float = 0.0) -> None:
        self.operations: list[str] = []
        self._stall = stall_groups

    def operation(self, name: str, server: str) -> AbstractContextManager[object]:
        return self._operation(name)

    @contextmanager
    def _operation(self, name: str) -> Iterator[None]:
        self.operations.append(name)
        if name == "groups" and self._stall:
            stall, self._stall = self._stall, 0.0
            time.sleep(stall)
        yield

    def server_up(self, server: str, up: bool) -> None:
        pass


def _lookup(slapd: Slapd, mail: str, groups: Any, observer: Any = None, **bounds: Any) -> Any:
    directory = Directory(_directory_config(slapd.url, **bounds), SERVICE_BIND_PASSWORD, observer)
    try:
        entry = directory.lookup(mail, frozenset({"memberof"}), {}, frozenset(groups))
    finally:
        directory.close()
    assert entry is not None
    return entry


# -- the directory: names as stored, nesting, bounds ----------------------------------------------------


def test_direct_groups_keep_their_stored_names(groups_slapd: Slapd) -> None:
    entry = _lookup(groups_slapd, ADA_MAILS[0], {"direct"})
    direct = entry.group_names("direct")
    assert list(direct.names) == ADA_DIRECT and direct.complete
    # what memberOf + rdn gave before: dynlist's normalised DN, comma and capitals lost
    assert "cn=r&d\\2c europe,ou=groups,dc=example,dc=com" in [v.lower() for v in entry.values("memberof")]
    assert not any("R&D" in value for value in entry.values("memberof"))


def test_nested_groups_walk_levels_through_a_cycle_one_search_per_level(groups_slapd: Slapd) -> None:
    observer = CountingObserver()
    entry = _lookup(groups_slapd, ADA_MAILS[0], {"nested"}, observer)
    nested = entry.group_names("nested")
    assert list(nested.names) == ADA_NESTED and nested.complete
    # level 1 (R&D, Cycle A), level 2 (App-Engineering, Ops, Cycle B), level 3 (app-All Staff), and one
    # search that finds nothing new (Cycle B leads back to Cycle A): four searches, not one per group
    assert observer.operations.count("groups") == 4


def test_sixty_groups_without_a_cap_and_their_parent_in_one_search(groups_slapd: Slapd) -> None:
    observer = CountingObserver()
    entry = _lookup(groups_slapd, "busy@example.com", {"direct", "nested"}, observer)
    assert list(entry.group_names("direct").names) == TEAMS
    assert list(entry.group_names("nested").names) == sorted([*TEAMS, "All Teams"])
    # direct: 1 search; nested: the 60 teams, their 60 DNs in one OR filter, then nothing new
    assert observer.operations.count("groups") == 4


def test_depth_bound_cuts_the_walk_and_says_so_only_when_it_cut_something(groups_slapd: Slapd) -> None:
    two = _lookup(groups_slapd, ADA_MAILS[0], {"nested"}, max_depth=2).group_names("nested")
    assert list(two.names) == [n for n in ADA_NESTED if n != "app-All Staff"]
    assert not two.complete  # app-All Staff lies beyond
    three = _lookup(groups_slapd, ADA_MAILS[0], {"nested"}, max_depth=3).group_names("nested")
    assert list(three.names) == ADA_NESTED
    assert three.complete  # the level beyond holds nothing new (only the cycle back to Cycle A)


def test_group_count_bound_cuts_deterministically(groups_slapd: Slapd) -> None:
    for membership in ("direct", "nested"):
        for _ in range(2):
            bounded = _lookup(groups_slapd, "busy@example.com", {membership}, max_groups=30).group_names(membership)
            assert not bounded.complete
            assert list(bounded.names) == TEAMS[:30]  # the first 30 by DN, whatever order slapd answers in
    exact = _lookup(groups_slapd, "busy@example.com", {"direct"}, max_groups=60).group_names("direct")
    assert exact.complete and list(exact.names) == TEAMS  # 60 groups and a bound of 60: nothing cut


def test_continuation_references_among_groups_are_skipped(groups_slapd: Slapd, referred: HangingServer) -> None:
    # the referral object is in scope of every group search: slapd adds a continuation reference
    entry = _lookup(groups_slapd, ADA_MAILS[0], {"direct", "nested"})
    assert list(entry.group_names("nested").names) == ADA_NESTED
    assert referred.accepted == 0


def test_a_referral_is_an_error_never_a_connection_elsewhere(groups_slapd: Slapd, referred: HangingServer) -> None:
    # a base DN that is a referral object: slapd answers "referral" (10) with the other server's URL;
    # ldap3 with auto_referrals would connect there (and hang on it)
    config = _directory_config(groups_slapd.url, base_dn="ou=elsewhere,ou=groups,dc=example,dc=com")
    directory = Directory(config, SERVICE_BIND_PASSWORD)

    async def lookup() -> None:
        await directory.find_user(
            UserQuery.of(ADA_MAILS[0], frozenset(), {}, frozenset({"direct"})), time.monotonic() + 5
        )

    try:
        with pytest.raises(DirectoryError) as failed:
            asyncio.run(lookup())
    finally:
        directory.close()
    assert failed.value.kind == "server_error" and "10" in str(failed.value)
    assert referred.accepted == 0


def test_group_filter_restricts_what_counts_as_a_group(groups_slapd: Slapd) -> None:
    entry = _lookup(groups_slapd, ADA_MAILS[0], {"nested"}, filter="(&(objectClass=groupOfNames)(!(cn=Cycle*)))")
    assert list(entry.group_names("nested").names) == [n for n in ADA_NESTED if not n.startswith("Cycle")]


def test_the_deadline_stops_the_lookup_in_the_groups_stage(groups_slapd: Slapd) -> None:
    observer = CountingObserver(stall_groups=3.0)
    directory = Directory(_directory_config(groups_slapd.url), SERVICE_BIND_PASSWORD, observer)

    async def lookup() -> None:
        await directory.find_user(
            UserQuery.of(ADA_MAILS[0], frozenset(), {}, frozenset({"nested"})), time.monotonic() + 1.5
        )

    try:
        with pytest.raises(DeadlineExceeded) as exceeded:
            asyncio.run(lookup())
    finally:
        directory.close()
    assert exceeded.value.stage == "groups"


# -- the AD dialect, as strings (no AD server here) -------------------------------------------------------


def test_in_chain_filter_is_built_exactly_and_escaped_once() -> None:
    user = "CN=Smith\\2C Jo (ext)*,OU=Staff,DC=corp,DC=example"
    assert in_chain_filter("member", user) == (
        "(member:1.2.840.113556.1.4.1941:=CN=Smith\\5c2C Jo \\28ext\\29\\2a,OU=Staff,DC=corp,DC=example)"
    )
    assert member_filter("member", ["cn=a", "cn=b\\2C c"]) == "(|(member=cn=a)(member=cn=b\\5c2C c))"
    assert member_filter("uniqueMember", ["cn=a"]) == "(uniqueMember=cn=a)"


def test_active_directory_user_filter_excludes_disabled_accounts(groups_slapd: Slapd) -> None:
    def user_filter(**directory: Any) -> str:
        config = directory_config(groups_slapd.url, **directory)
        settings = parse_settings(service_config(groups_slapd.url, directory=config))
        return Directory(settings.directory, "x").user_filter("jdoe@corp.example.com")

    search = {
        "base_dn": "DC=corp,DC=example",
        "filter": "(objectCategory=person)",
        "match_attribute": "userPrincipalName",
    }
    assert user_filter(dialect="active_directory", user_search=search) == (
        "(&(objectCategory=person)(!(userAccountControl:1.2.840.113556.1.4.803:=2))"
        "(userPrincipalName=jdoe@corp.example.com))"
    )
    kept = {**search, "include_disabled": True}
    assert user_filter(dialect="active_directory", user_search=kept) == (
        "(&(objectCategory=person)(userPrincipalName=jdoe@corp.example.com))"
    )
    assert user_filter(user_search=search) == "(&(objectCategory=person)(userPrincipalName=jdoe@corp.example.com))"


def test_object_guid_and_sid_transforms_on_known_bytes() -> None:
    # objectGUID is Microsoft's GUID layout: Data1..Data3 little-endian, Data4 as is.
    stored = bytes.fromhex("6f1fa98b25d1ef4bb2ec4f5df9a3e1c2")
    assert guid_string(stored.hex()) == "8ba91f6f-d125-4bef-b2ec-4f5df9a3e1c2"
    assert guid_string(stored.hex()) == str(uuid.UUID(bytes_le=stored))
    # BUILTIN\Administrators, the SID every Windows reference spells out in bytes
    assert sid_string("01020000000000052000000020020000") == "S-1-5-32-544"
    # Microsoft's example domain SID: authority 5, sub-authorities 21, 3623811015, 3361044348, 30300820, 1013
    domain = "010500000000000515000000c7f7fed77c7755c8945ace01f5030000"
    assert sid_string(domain) == "S-1-5-21-3623811015-3361044348-30300820-1013"
    for broken in ("", "zz", "0102000000000005200000002002", "02010000000000050000"):
        assert sid_string(broken) == ""
    assert guid_string("00ff") == ""


# -- configuration ----------------------------------------------------------------------------------


def test_group_rules_need_a_groups_section_and_fit_their_source(groups_slapd: Slapd) -> None:
    hooks = {"token": {"access_token": {"roles": {"source": "groups", "nested": True}}}}
    with pytest.raises(ConfigError, match=r"hooks\.token\.access_token\.roles: source: groups needs a directory"):
        parse_settings(service_config(groups_slapd.url, hooks=hooks))
    bad = {"token": {"access_token": {"roles": {"source": "groups", "resolve": "cn"}}}}
    config = service_config(
        groups_slapd.url, hooks=bad, directory=directory_config(groups_slapd.url, groups=GROUPS_SECTION)
    )
    with pytest.raises(ConfigError, match=r"hooks\.token\.access_token\.roles: resolve does not apply"):
        parse_settings(config)
    attribute = {"token": {"access_token": {"roles": {"attribute": "cn", "max": 3}}}}
    with pytest.raises(ConfigError, match="max applies to source: groups only"):
        parse_settings(service_config(groups_slapd.url, hooks=attribute))
    with pytest.raises(ConfigError, match=r"directory\.groups: max_depth must be between 1 and 20"):
        parse_settings(
            service_config(
                groups_slapd.url,
                directory=directory_config(groups_slapd.url, groups={**GROUPS_SECTION, "max_depth": 0}),
            )
        )


# -- every hook type, in process ------------------------------------------------------------------------

HOOKS = {
    "registration": {"subject": "email", "profile": {"groups": {"source": "groups", "nested": True}}},
    "token": {
        "subject": "login",
        "id_token": {"groups_direct": {"source": "groups"}},
        "access_token": {
            "roles": {"source": "groups", "nested": True, "name_pattern": "app-*", "max": 50},
            "legacy": {"attribute": "memberOf", "values": "all", "transform": ["rdn"]},
        },
    },
    "saml": {
        "subject": "login",
        "attributes": {"groups": {"source": "groups", "nested": True, "transform": ["lower"]}},
    },
    "user_import": {
        "subject": "email",
        "profile": {"department": "departmentNumber"},
        "app_user_profile": {"team": {"source": "groups", "values": "first", "name_pattern": ["cycle*", "ops*"]}},
    },
}


class InProcess:
    """The hook app built from HOOKS on the groups directory. Sanic's ASGI client runs the server's
    start and stop around each request (stopping closes the directory), so every call gets a fresh
    app; the telemetry, and so the metrics, are shared."""

    def __init__(self, slapd: Slapd, **groups: Any) -> None:
        section = {**GROUPS_SECTION, **groups}
        config = service_config(slapd.url, hooks=HOOKS, directory=directory_config(slapd.url, groups=section))
        self.settings = parse_settings(config)
        self.telemetry = Telemetry(Metrics())

    def post(self, hook: str, event: dict[str, Any]) -> dict[str, Any]:
        Sanic.test_mode = True
        secrets = Secrets((SECRET,), SERVICE_BIND_PASSWORD)
        hook_app, _ = create_apps(self.settings, secrets, self.telemetry, name=f"g{free_port()}")

        async def call() -> Any:
            path = f"/hooks/{hook.replace('_', '-')}"
            return await hook_app.asgi_client.post(path, json=event, headers={"Authorization": SECRET})

        _, response = asyncio.run(call())
        assert response.status == 200, response.text
        body: dict[str, Any] = response.json
        validate_response(hook, body)
        return body

    def truncated(self, hook_type: str, limit: str) -> float:
        labels = {"hook_type": hook_type, "limit": limit}
        return self.telemetry.metrics.registry.get_sample_value("okta_hook_groups_truncated_total", labels) or 0.0


@pytest.fixture
def app(groups_slapd: Slapd) -> InProcess:
    return InProcess(groups_slapd)


def _token_for(login: str) -> dict[str, Any]:
    event = example("token")
    event["data"]["context"]["user"]["profile"].update(login=login, email=login)
    return event


def _claims(body: dict[str, Any]) -> dict[str, Any]:
    return {
        (command["type"].split(".")[-2], op["path"]): op["value"]
        for command in body["commands"]
        for op in command["value"]
    }


def test_token_claims_carry_nested_groups_by_pattern_and_direct_groups(app: InProcess) -> None:
    body = app.post("token", example("token"))
    claims = _claims(body)
    assert claims[("access", "/claims/roles")] == ["App-Engineering", "app-All Staff"]
    assert claims[("identity", "/claims/groups_direct")] == ADA_DIRECT
    assert claims[("access", "/claims/legacy")] != ADA_DIRECT  # memberOf + rdn: lower-cased by dynlist
    assert "groupsTruncated" not in body["debugContext"]


def test_a_claim_cut_to_its_max_is_sorted_counted_and_said(app: InProcess) -> None:
    assert app.post("token", example("token"))["debugContext"].get("groupsTruncated") is None
    assert app.truncated("token", "claim_max") == 0
    body = app.post("token", _token_for("busy@example.com"))
    claims = _claims(body)
    assert claims[("access", "/claims/roles")] == TEAMS[:50]  # All Teams does not match app-*
    assert len(claims[("identity", "/claims/groups_direct")]) == 60  # no cap of 25 any more
    assert body["debugContext"]["groupsTruncated"] is True
    assert app.truncated("token", "claim_max") == 1
    assert app.truncated("token", "walk_bound") == 0


def test_a_walk_stopped_by_its_bound_is_counted_and_said(groups_slapd: Slapd) -> None:
    app = InProcess(groups_slapd, max_depth=2)
    body = app.post("token", example("token"))
    assert _claims(body)[("access", "/claims/roles")] == ["App-Engineering"]  # app-All Staff is level 3
    assert body["debugContext"]["groupsTruncated"] is True
    assert app.truncated("token", "walk_bound") == 1
    assert app.truncated("token", "claim_max") == 0


def test_saml_registration_and_import_map_groups(app: InProcess) -> None:
    saml = app.post("saml", example("saml"))
    statement = saml["commands"][0]["value"][0]["value"]
    assert [v["value"] for v in statement["attributeValues"]] == sorted(n.lower() for n in ADA_NESTED)

    registration = app.post("registration", registration_for(ADA_MAILS[0]))
    assert registration["commands"][0]["value"]["groups"] == ADA_NESTED
    progressive = app.post("registration", example("registration_progressive"))
    assert [c["value"] for c in progressive["commands"]] == [{"groups": ADA_NESTED}]

    imported = app.post("user_import", example("user_import"))
    values = {c["type"]: c["value"] for c in imported["commands"]}
    assert values["com.okta.appUser.profile.update"] == {"team": "Cycle A"}


def test_no_group_name_in_logs_metrics_or_debug_context(app: InProcess, capsys: pytest.CaptureFixture[str]) -> None:
    body = app.post("token", example("token"))
    exposed = generate_latest(app.telemetry.metrics.registry).decode() + str(body["debugContext"])
    captured = capsys.readouterr()
    assert "hook_request" in captured.out + captured.err  # the summary log line was captured
    exposed += captured.out + captured.err
    for name in ADA_NESTED:
        assert name not in exposed


def test_check_config_probe_counts_the_sample_groups(groups_slapd: Slapd, tmp_path: Any) -> None:
    bounded = {**GROUPS_SECTION, "max_depth": 2}
    config = service_config(groups_slapd.url, hooks=HOOKS, directory=directory_config(groups_slapd.url, groups=bounded))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    env = {"PATH": "/usr/bin:/bin", "OKTA_HOOK_SECRET": "s", "LDAP_BIND_PASSWORD": SERVICE_BIND_PASSWORD}
    result = subprocess.run(
        [sys.executable, "-m", "service", "check-config", str(path), "--probe", "--sample", ADA_MAILS[0]],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sample: 2 direct groups\n" in result.stdout
    assert "sample: 5 nested groups (a bound of directory.groups stopped the search)" in result.stdout
    assert "R&D" not in result.stdout  # counts, not names


def _readme_block(heading: str) -> dict[str, Any]:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split(f"\n{heading}\n", 1)[1]
    block: dict[str, Any] = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    return block


@pytest.mark.parametrize("heading", ["### Pointing it at Active Directory", "### Groups"])
def test_readme_group_examples_are_valid_configuration(heading: str) -> None:
    block = _readme_block(heading)
    config = service_config("ldap://127.0.0.1:389")
    directory = {**config["directory"], **block["directory"]}
    if "bind_password_file" in directory:
        del directory["bind_password_env"]  # one password source only
    directory["user_search"] = {**config["directory"]["user_search"], **directory["user_search"]}
    settings = parse_settings({**config, "directory": directory, "hooks": block["hooks"]})
    assert settings.directory.groups is not None


def test_group_rule_pattern_transform_sort_and_max_on_an_entry() -> None:
    names = ("APP-b", "app-A", "app-c", "Other", "app-a")
    entry = DirectoryEntry("uid=x", {}, groups={"nested": Groups(names, complete=True)})
    rules = {
        "all": MappingRule.model_validate({"source": "groups", "nested": True}),
        "apps": MappingRule.model_validate(
            {"source": "groups", "nested": True, "name_pattern": "app-*", "transform": ["lower"], "max": 2}
        ),
        "one": MappingRule.model_validate(
            {"source": "groups", "nested": True, "values": "first", "name_pattern": "o*"}
        ),
        "direct": MappingRule.model_validate({"source": "groups", "default": ["none"]}),
    }
    mapped = map_entry(rules, entry)
    assert mapped.values == {
        "all": ["APP-b", "Other", "app-A", "app-a", "app-c"],
        "apps": ["app-a", "app-b"],  # lower-cased, deduplicated, sorted, then cut: app-c dropped
        "one": "Other",
        "direct": ["none"],  # no direct membership was read: the default
    }
    assert mapped.cut == ("apps",) and mapped.incomplete == ()
    bounded = DirectoryEntry("uid=x", {}, groups={"nested": Groups(names, complete=False)})
    assert map_entry({"all": rules["all"]}, bounded).incomplete == ("all",)
