"""Active Directory for real: what the README says of AD, against a Samba AD DC (service/demo/samba.py)
holding service/demo/ad_data.py's domain, configured as the README's AD example
(service/demo/data/ad-config.yaml, which the AD demo runs).

Samba is a real AD implementation (the LDAP dialect, userAccountControl, the in-chain rule, tokenGroups,
the bind data codes) but not Windows: what it cannot show is said where it matters (README, "Pointing it
at Active Directory")."""

from __future__ import annotations

import copy
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ldap3
import pytest
import yaml
from demo_support import running_demo
from hostile_support import InProcessService, in_process
from okta_spec import example, registration_for, validate_response
from password_import_support import password_event
from support.config import REPO

from service.demo import ad_data
from service.demo.ad_data import ADA_DIRECT, ADA_NESTED, ADA_TOKEN_GROUPS, BIND_STATES, RIGHT
from service.demo.run import ad_document
from service.demo.samba import SambaDC
from service.demo.slapd import DEMO_USER_PASSWORD, SERVICE_BIND_PASSWORD, make_ca
from service.directory import Directory, DirectoryEntry, DirectoryError
from service.directory import groups as groups_module
from service.directory.groups import SidNames
from service.settings import ConfigError, parse_settings

README = Path(__file__).resolve().parents[1] / "README.md"


def document(dc: SambaDC, **directory: Any) -> dict[str, Any]:
    """The AD demo's configuration on ``dc``, with ``directory`` keys replaced (``user_search`` and
    ``groups`` merged key by key), short timeouts, JSON logs."""
    config = ad_document(dc)
    section = config["directory"]
    for key, value in directory.items():
        if key in ("user_search", "groups") and isinstance(value, dict):
            section[key] = {**section[key], **value}
        else:
            section[key] = value
    section.setdefault("connect_timeout_seconds", 1.0)
    section.setdefault("server_cooldown_seconds", 0.5)
    config["logging"] = {"level": "info", "format": "json"}
    return config


def directory(dc: SambaDC, **changes: Any) -> Directory:
    return Directory(parse_settings(document(dc, **changes)).directory, SERVICE_BIND_PASSWORD)


def lookup(
    dc: SambaDC,
    identifier: str,
    attributes: set[str] | None = None,
    memberships: set[str] | None = None,
    resolve: dict[str, frozenset[str]] | None = None,
    **changes: Any,
) -> DirectoryEntry | None:
    """One blocking lookup, as ``check-config --probe`` makes it (the hooks' query and search)."""
    ad = directory(dc, **changes)
    try:
        return ad.lookup(identifier, frozenset(attributes or {"mail"}), resolve or {}, frozenset(memberships or ()))  # type: ignore[arg-type]
    finally:
        ad.close()


def found(dc: SambaDC, identifier: str, *attributes: str, **changes: Any) -> DirectoryEntry:
    entry = lookup(dc, identifier, set(attributes) or None, **changes)
    assert entry is not None, identifier
    return entry


def claims(body: dict[str, Any]) -> dict[tuple[str, str], Any]:
    return {
        (command["type"].split(".")[-2], op["path"]): op["value"]
        for command in body["commands"]
        for op in command["value"]
    }


def token_for(login: str) -> dict[str, Any]:
    event = example("token")
    event["data"]["context"]["user"]["profile"].update(login=login, email=login)
    return event


def post(service: InProcessService, hook: str, event: dict[str, Any]) -> dict[str, Any]:
    answer = service.post_json(f"/hooks/{hook.replace('_', '-')}", event)
    assert answer.status == 200, answer.body
    body: dict[str, Any] = answer.json()
    validate_response(hook, body)
    return body


@pytest.fixture(scope="module")
def service(samba_dc: SambaDC) -> Iterator[InProcessService]:
    """The AD demo's configuration (the README's example) served in-process on the DC."""
    with in_process(document(samba_dc)) as running:
        yield running


# -- the fixture -----------------------------------------------------------------------------------------


def test_the_dc_speaks_ldaps_starttls_and_the_global_catalog_with_its_own_ca(samba_dc: SambaDC) -> None:
    tls = ldap3.Tls(ca_certs_file=str(samba_dc.ca_file), validate=ssl.CERT_REQUIRED)
    for url, start_tls in ((samba_dc.ldaps_url, False), (samba_dc.url, True), (samba_dc.gcs_url, False),
                           (samba_dc.gc_url, True)):  # fmt: skip
        connection = ldap3.Connection(ldap3.Server(url, tls=tls, get_info=ldap3.NONE), samba_dc.service_upn,
                                      samba_dc.service_bind_password)  # fmt: skip
        connection.open()
        if start_tls:
            assert connection.start_tls(), url
        assert connection.bind(), (url, connection.result)
        assert connection.tls_started or url.startswith("ldaps"), url
        connection.unbind()


# -- finding people: UPN, mail, sAMAccountName --------------------------------------------------------------


def test_people_are_found_by_upn_with_their_attributes(samba_dc: SambaDC) -> None:
    entry = found(samba_dc, "Rosario.Jones@Example.com", "department", "title", "employeeID", "sAMAccountName")
    assert entry.values("department") == ("Engineering",)
    assert entry.values("title") == ("Software Engineer",)
    assert entry.values("employeeid") == ("1002",)
    assert entry.values("samaccountname") == ("rosario.jones",)
    assert lookup(samba_dc, "nobody@example.com") is None


def test_people_are_found_by_mail(samba_dc: SambaDC) -> None:
    entry = found(samba_dc, "ada.lovelace@example.com", "userPrincipalName", user_search={"match_attribute": "mail"})
    assert entry.values("userprincipalname") == ("ada@corp.example.com",)


def test_samaccountname_with_strip_domains_compares_the_local_part_of_company_logins(samba_dc: SambaDC) -> None:
    by_sam = {"match_attribute": "sAMAccountName", "strip_domains": ["corp.example.com"]}
    assert found(samba_dc, "ADA@corp.example.com", "mail", user_search=by_sam).values("mail") == (
        "ada.lovelace@example.com",
    )
    assert lookup(samba_dc, "ada@evil.example", user_search=by_sam) is None  # not the company's ada
    assert lookup(samba_dc, "ada", user_search=by_sam) is None


def test_an_ou_whose_name_holds_a_comma(samba_dc: SambaDC) -> None:
    entry = found(samba_dc, "jean.dupont@corp.example.com", "mail")
    assert entry.dn == f"CN=Dupont\\, Jean,{ad_data.EMEA}"
    groups = found_groups(samba_dc, "jean.dupont@corp.example.com", "direct", "nested")
    assert groups["direct"] == ("Sales EMEA Team",)
    assert "app-All Staff" in groups["nested"]


def test_disabled_accounts_are_not_found_unless_include_disabled(samba_dc: SambaDC) -> None:
    assert lookup(samba_dc, "dana.disabled@corp.example.com") is None
    kept = found(samba_dc, "dana.disabled@corp.example.com", "userAccountControl",
                 user_search={"include_disabled": True})  # fmt: skip
    assert kept.values("useraccountcontrol") == ("514",)


# -- the token hook as the README's example configures it: groups, manager, GUID, SID -------------------


def test_the_readme_token_example_on_the_dc(samba_dc: SambaDC, service: InProcessService) -> None:
    body = post(service, "token", token_for("ada@corp.example.com"))
    issued = claims(body)
    assert issued[("access", "/claims/app_roles")] == ["app-All Staff", "app-Payroll Admins"]
    assert issued[("access", "/claims/department")] == "Finance"
    assert issued[("access", "/claims/manager_upn")] == "carol.chen@example.com"
    samba = samba_dc.ldbsearch("(sAMAccountName=ada)", "objectGUID", "objectSid")
    assert issued[("identity", "/claims/object_guid")] == samba["objectGUID"]
    assert issued[("identity", "/claims/object_sid")] == samba["objectSid"]
    assert samba["objectSid"].startswith("S-1-5-21-")
    assert "groupsTruncated" not in body["debugContext"]


def test_registration_resolves_the_manager_and_reads_ad_attributes(service: InProcessService) -> None:
    body = post(service, "registration", registration_for("rosario.jones@example.com"))
    assert body["commands"][0]["value"] == {
        "department": "Engineering",
        "title": "Software Engineer",
        "employeeNumber": "1002",
        "managerEmail": "carol.chen@example.com",
    }


def test_a_group_claim_cut_to_its_max_says_so(samba_dc: SambaDC) -> None:
    config = document(samba_dc)
    config["hooks"]["token"]["access_token"]["app_roles"]["max"] = 1
    with in_process(config) as running:
        body = post(running, "token", token_for("ada@corp.example.com"))
    assert claims(body)[("access", "/claims/app_roles")] == ["app-All Staff"]
    assert body["debugContext"]["groupsTruncated"] is True


# -- groups: direct, in-chain, tokenGroups --------------------------------------------------------------------


def found_groups(dc: SambaDC, identifier: str, *kinds: str, **changes: Any) -> dict[str, tuple[str, ...]]:
    entry = lookup(dc, identifier, None, set(kinds), **changes)
    assert entry is not None
    for kind in kinds:
        assert entry.group_names(kind).complete, kind  # type: ignore[arg-type]
    return {kind: entry.group_names(kind).names for kind in kinds}  # type: ignore[arg-type]


ANY_GROUP = {"filter": "(objectClass=group)"}


def test_direct_and_in_chain_groups_three_levels_down_and_through_a_cycle(samba_dc: SambaDC) -> None:
    in_chain = {**ANY_GROUP, "nested_search": "in_chain"}
    groups = found_groups(samba_dc, "ada@corp.example.com", "direct", "nested", groups=in_chain)
    assert groups == {"direct": ADA_DIRECT, "nested": ADA_NESTED}  # Newsletter: a distribution group
    security = found_groups(samba_dc, "ada@corp.example.com", "nested", groups={"nested_search": "in_chain"})
    assert security["nested"] == tuple(name for name in ADA_NESTED if name != "Newsletter")


def test_token_groups_give_the_security_groups_and_the_primary_group(samba_dc: SambaDC) -> None:
    groups = found_groups(samba_dc, "ada@corp.example.com", "direct", "nested", groups=ANY_GROUP)
    assert groups == {"direct": ADA_DIRECT, "nested": ADA_TOKEN_GROUPS}
    # what in-chain gives, less the distribution group, plus the primary group and its builtin alias
    assert set(ADA_TOKEN_GROUPS) == (set(ADA_NESTED) - {"Newsletter"}) | {"Domain Users", "Users"}
    under_groups_ou = {**ANY_GROUP, "base_dn": ad_data.GROUPS}  # Domain Users and Users are elsewhere
    assert found_groups(samba_dc, "ada@corp.example.com", "nested", groups=under_groups_ou)["nested"] == tuple(
        sorted(set(ADA_NESTED) - {"Newsletter"})
    )


def test_token_group_names_are_resolved_once_in_chunks_and_remembered(
    samba_dc: SambaDC, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(groups_module, "BATCH", 25)
    observed: list[str] = []

    class Counting:
        def operation(self, name: str, server: str) -> Any:
            observed.append(name)
            return _NullContext()

        def server_up(self, server: str, up: bool) -> None:
            pass

    ad = Directory(parse_settings(document(samba_dc)).directory, SERVICE_BIND_PASSWORD, Counting())  # type: ignore[arg-type]
    try:
        first = ad.lookup("busy@corp.example.com", frozenset({"mail"}), {}, frozenset({"nested"}))
        assert first is not None
        names = first.group_names("nested").names
        assert set(ad_data.TEAMS) <= set(names) and "Domain Users" in names
        # 62 SIDs (60 teams, Domain Users, Users): the tokenGroups read and three searches of 25 SIDs
        assert observed.count("groups") == 1 + 3
        observed.clear()
        again = ad.lookup("busy@corp.example.com", frozenset({"mail"}), {}, frozenset({"nested"}))
        assert again is not None and again.group_names("nested").names == names
        assert observed.count("groups") == 1  # the names are remembered: the tokenGroups read only
        assert ad.forget() == 62
        observed.clear()
        ad.lookup("busy@corp.example.com", frozenset({"mail"}), {}, frozenset({"nested"}))
        assert observed.count("groups") == 1 + 3
    finally:
        ad.close()


class _NullContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_max_groups_bounds_token_groups_and_says_so(samba_dc: SambaDC) -> None:
    entry = lookup(samba_dc, "busy@corp.example.com", None, {"nested"}, groups={"max_groups": 10})
    assert entry is not None
    nested = entry.group_names("nested")
    assert len(nested.names) == 10 and not nested.complete


def test_a_group_of_1600_members_costs_its_members_nothing(samba_dc: SambaDC) -> None:
    everyone = {"base_dn": ad_data.BASE_DN, "match_attribute": "sAMAccountName"}
    for search in ("in_chain", "token_groups"):
        groups = {**ANY_GROUP, "nested_search": search}
        entry = lookup(samba_dc, "bulk-0042", None, {"direct", "nested"}, user_search=everyone, groups=groups)
        assert entry is not None
        assert entry.group_names("direct").names == (ad_data.BULK_GROUP,)
        assert ad_data.BULK_GROUP in entry.group_names("nested").names


def test_samba_hands_out_every_member_value_and_explicit_ranges(samba_dc: SambaDC) -> None:
    """What Windows does differently: a DC's MaxValRange (1,500) cuts a plain ``member`` read and answers
    ``member;range=0-1499``. Samba returns all 1,600 values, and ranges only when asked for, the way AD
    answers them (the last one as ``;range=<low>-*``). The service never reads ``member`` values (groups
    are searched for), so neither behaviour reaches it. Read with ldapsearch: ldap3 walks ranges itself
    (``auto_range``) and fails to parse them without it."""
    group = f"CN={ad_data.BULK_GROUP},{ad_data.GROUPS}"
    answered = {}
    for attribute in ("member", "member;range=0-*", "member;range=0-1499", "member;range=1500-*",
                      "member;range=1590-1609"):  # fmt: skip
        result = subprocess.run(
            ["ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-x", "-H", samba_dc.ldaps_url, "-D", samba_dc.service_upn,
             "-w", samba_dc.service_bind_password, "-b", group, "-s", "base", "(objectClass=*)", attribute],
            capture_output=True, text=True, timeout=30, check=True,
            env={**os.environ, "LDAPTLS_CACERT": str(samba_dc.ca_file)},
        )  # fmt: skip
        answered[attribute] = Counter(line.split(":")[0] for line in result.stdout.splitlines() if ":" in line)
        del answered[attribute]["dn"]
    members = ad_data.BULK_MEMBERS
    assert answered["member"] == {"member": members}
    assert answered["member;range=0-*"] == {"member;range=0-*": members}
    assert answered["member;range=0-1499"] == {"member;range=0-1499": 1500}
    assert answered["member;range=1500-*"] == {"member;range=1500-*": members - 1500}
    assert answered["member;range=1590-1609"] == {"member;range=1590-*": 10}


# -- password import: AD's data codes -------------------------------------------------------------------------


def check(service: InProcessService, username: str, password: str) -> str:
    body = post(service, "password_import", password_event(username, password))
    (command,) = body["commands"]
    value: str = command["value"]["credential"]
    return value


def verifications(service: InProcessService, result: str, reason: str) -> float:
    return service.metric("okta_hook_password_verifications_total", {"result": result, "reason": reason})


REASONS = {"533": "account_disabled", "532": "password_expired", "701": "account_expired",
           "773": "must_change_password", "775": "locked"}  # fmt: skip


def test_password_import_reads_each_data_code_into_its_reason(samba_dc: SambaDC) -> None:
    with in_process(document(samba_dc, user_search={"include_disabled": True})) as running:
        assert check(running, "pia.pass@corp.example.com", RIGHT) == "VERIFIED"
        assert check(running, "pia.pass@corp.example.com", RIGHT + "!") == "UNVERIFIED"  # 52e
        assert verifications(running, "unverified", "invalid_credentials") == 1
        for sam, code in BIND_STATES.items():
            assert check(running, f"{sam}@corp.example.com", RIGHT) == "UNVERIFIED", sam
            assert verifications(running, "unverified", REASONS[code]) == 1, (sam, code)
        assert verifications(running, "verified", "ok") == 1


def test_password_import_of_a_disabled_account_is_an_unknown_user_by_default(service: InProcessService) -> None:
    before = verifications(service, "unverified", "unknown_user")
    assert check(service, "dana.disabled@corp.example.com", RIGHT) == "UNVERIFIED"
    assert verifications(service, "unverified", "unknown_user") == before + 1
    assert check(service, "alice.wong@example.com", DEMO_USER_PASSWORD) == "VERIFIED"  # Okta's example


# -- reaching the DC: service account, TLS, failover, global catalog -------------------------------------


def test_the_service_account_binds_by_dn_and_by_upn(samba_dc: SambaDC) -> None:
    for bind_dn in (samba_dc.service_bind_dn, samba_dc.service_upn):
        assert lookup(samba_dc, "ada@corp.example.com", bind_dn=bind_dn) is not None, bind_dn
    with pytest.raises(DirectoryError) as refused:
        lookup(samba_dc, "ada@corp.example.com", bind_dn="CN=nobody,OU=Service Accounts," + ad_data.BASE_DN)
    assert refused.value.kind == "bind_failed"


def test_starttls_works_and_a_certificate_from_another_ca_is_refused(samba_dc: SambaDC, tmp_path: Path) -> None:
    assert lookup(samba_dc, "ada@corp.example.com", urls=[samba_dc.url], start_tls=True) is not None
    other = make_ca(tmp_path, "another CA")
    for changes in ({"urls": [samba_dc.ldaps_url]}, {"urls": [samba_dc.url], "start_tls": True}):
        with pytest.raises(DirectoryError) as refused:
            lookup(samba_dc, "ada@corp.example.com", ca_file=str(other.cert_file), **changes)
        assert refused.value.kind == "tls", changes


def test_failover_between_two_dcs(samba_dc: SambaDC, tmp_path: Path) -> None:
    with SambaDC(tmp_path / "dc2", ca=samba_dc.ca) as second:
        ad = directory(samba_dc, urls=[second.ldaps_url, samba_dc.ldaps_url])
        try:
            assert ad.lookup("ada@corp.example.com", frozenset({"mail"}), {}) is not None
            second.stop()
            started = time.monotonic()
            entry = ad.lookup("ada@corp.example.com", frozenset({"mail"}), {})
            assert entry is not None and entry.values("mail") == ("ada.lovelace@example.com",)
            assert time.monotonic() - started < 5
        finally:
            ad.close()


def test_the_global_catalog_ports_as_urls(samba_dc: SambaDC) -> None:
    forest = {"base_dn": ad_data.BASE_DN}
    for changes in ({"urls": [samba_dc.gcs_url]}, {"urls": [samba_dc.gc_url], "start_tls": True}):
        entry = found(samba_dc, "ada@corp.example.com", "mail", "objectGUID", user_search=forest, **changes)
        assert entry.values("mail") == ("ada.lovelace@example.com",), changes
        groups = found_groups(samba_dc, "ada@corp.example.com", "nested", user_search=forest,
                              groups={"nested_search": "in_chain"}, **changes)  # fmt: skip
        assert "app-All Staff" in groups["nested"]


# -- the README's example is the one that runs -----------------------------------------------------------------


def test_the_readme_ad_example_is_the_demo_configuration() -> None:
    readme = README.read_text(encoding="utf-8")
    section = readme.split("\n### Pointing it at Active Directory\n", 1)[1]
    block = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    demo = yaml.safe_load((Path(ad_data.__file__).parent / "data" / "ad-config.yaml").read_text(encoding="utf-8"))
    assert block["directory"] == demo["directory"]
    assert block["hooks"]["token"] == demo["hooks"]["token"]


def test_nested_search_token_groups_needs_the_ad_dialect(samba_dc: SambaDC) -> None:
    config = copy.deepcopy(document(samba_dc, dialect="openldap"))
    with pytest.raises(ConfigError, match=r"nested_search: token_groups needs dialect: active_directory"):
        parse_settings(config)


def test_sid_names_are_forgotten_after_their_time_and_past_their_bound() -> None:
    now = [0.0]
    names = SidNames(seconds=600, max_entries=3, clock=lambda: now[0])
    group = groups_module._Found("CN=g,DC=x", "g")
    names.put({b"a": group, b"b": None})
    assert names.get([b"b", b"c"]) == ({b"b": None}, [b"c"])  # "no such group" is remembered too
    assert names.get([b"a"]) == ({b"a": group}, [])  # a used last
    now[0] = 599.0
    names.put({b"c": group, b"d": group})  # a fourth SID: the least recently used (b) goes
    assert names.get([b"a", b"b"]) == ({b"a": group}, [b"b"])
    now[0] = 600.0
    assert names.get([b"a", b"c"]) == ({b"c": group}, [b"a"])  # a was put ten minutes ago
    assert names.clear() == 3 and len(names) == 0


def test_sighup_forgets_the_sid_names_of_a_running_service(samba_dc: SambaDC, start_service: Any) -> None:
    config = document(samba_dc)
    config["hooks"] = {"token": {**config["hooks"]["token"], "cache": {"fresh_seconds": 0, "stale_seconds": 0,
                                                                       "negative_seconds": 0}}}  # fmt: skip
    running = start_service(config)

    def group_searches() -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in running.metrics().splitlines()
            if line.startswith("okta_hook_ldap_operation_duration_seconds_count{") and 'operation="groups"' in line
        )

    def token() -> None:
        event = token_for("ada@corp.example.com")
        event["eventId"] = f"evt-{time.monotonic_ns()}"  # not Okta's retry: answered anew
        answer = running.post("token", event)
        assert answer.json()["commands"], answer.text

    token()
    assert group_searches() == 2  # tokenGroups, and the SIDs' names
    token()
    assert group_searches() == 3  # tokenGroups only: the names are remembered
    running.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "okta_hook_cache_flushes_total 1.0" not in running.metrics():
        assert time.monotonic() < deadline, running.log()[-2000:]
        time.sleep(0.05)
    token()
    assert group_searches() == 5  # forgotten: searched again


# -- the AD demo: make run DIRECTORY=ad, then make try --------------------------------------------------------


def test_the_ad_demo_answers_every_example_and_stops_its_dc() -> None:
    with running_demo("ad") as demo:
        address = re.search(r"demo directory : ldaps://(\S+)", demo.banner).group(1)  # type: ignore[union-attr]
        result = subprocess.run(
            [sys.executable, "-m", "service", "try", "--url", demo.hook_url],
            capture_output=True, text=True, timeout=60, cwd=REPO,
            env={key: value for key, value in os.environ.items() if key != "OKTA_HOOK_SECRET"},
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("HTTP 200") == 6
    assert result.stdout.count("outcome: enriched") == 5 and "outcome: verified" in result.stdout
    assert '"department": "Engineering"' in result.stdout  # rosario.jones, Okta's registration example
    assert '"path": "/claims/app_roles", "value": ["app-Okta Admins"]' in result.stdout  # the token example
    assert demo.process.returncode == 0, demo.output
    with socket.socket() as probe:
        assert probe.connect_ex((address, 636)) != 0, "the demo's DC is still running"
