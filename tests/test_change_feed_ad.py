"""The change feed on Active Directory for real (issue 23): the service in-process on a Samba AD DC of
this module's own (service/demo/samba.py), configured as the README's AD example with the feed polling
every second and entries kept an hour (``fresh_seconds`` and ``feed_fresh_seconds``: 3600). Without the
feed each answer below would stay the old one for that hour; with it, each change made on the DC
(uSNChanged moves) reaches the next answer within ``poll_seconds`` + 1 s. The lags are printed at the
end of the module (``-s``).

tests/test_change_feed.py runs the same path on recorded DC answers; this is the DC itself."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import ldap3
import pytest
from in_process import InProcessService
from okta_spec import registration_for
from support.answers import token_answer
from support.config import SECRET

from service.demo import ad_data
from service.demo.run import BIND_PASSWORD_ENV, ad_document
from service.demo.samba import SambaDC
from service.demo.slapd import SERVICE_BIND_PASSWORD

POLL = 1.0
CACHE = {"fresh_seconds": 3600, "feed_fresh_seconds": 3600, "refresh_ahead_seconds": 0, "stale_seconds": 3600}


def person_dn(sam: str) -> str:
    (person,) = (person for person in ad_data.PEOPLE if person.sam == sam)
    return person.dn


def group_dn(name: str) -> str:
    (group,) = (group for group in ad_data.GROUP_LIST if group.name == name)
    return group.dn


def config(dc: SambaDC) -> dict[str, Any]:
    """The README's AD example on ``dc`` (LDAPS with the fixture's CA, the service account, tokenGroups),
    with the feed on, entries kept an hour, and the claims these tests read."""
    document = ad_document(dc)
    document["directory"]["change_feed"] = {"poll_seconds": POLL, "overlap_seconds": 5}
    token = document["hooks"]["token"]
    token["cache"] = CACHE
    token["id_token"] = {**token["id_token"], "title": "title", "groups_direct": {"source": "groups"}}
    document["hooks"]["registration"]["cache"] = CACHE
    document["logging"] = {"level": "info", "format": "json"}
    return document


@pytest.fixture(scope="module")
def service(samba_dc: SambaDC) -> Iterator[InProcessService]:
    environ = {"OKTA_HOOK_SECRET": SECRET, BIND_PASSWORD_ENV: SERVICE_BIND_PASSWORD}
    running = InProcessService(config(samba_dc), environ)
    try:
        until_current(running)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def admin(samba_dc: SambaDC) -> Iterator[ldap3.Connection]:
    """Administrator over LDAPS: who makes the changes."""
    tls = ldap3.Tls(ca_certs_file=str(samba_dc.ca_file))
    connection = ldap3.Connection(
        ldap3.Server(samba_dc.ldaps_url, tls=tls, get_info=ldap3.NONE),
        samba_dc.admin_upn,
        samba_dc.admin_password,
        auto_bind=True,
    )
    yield connection
    connection.unbind()


@pytest.fixture(scope="module")
def lags() -> Iterator[dict[str, float]]:
    measured: dict[str, float] = {}
    yield measured
    print("\nchange feed lag on the Samba AD DC, poll_seconds=1:", {k: round(v, 2) for k, v in measured.items()})


def token(service: InProcessService, login: str) -> dict[str, Any]:
    """The token hook's answer for ``login`` (a UPN): its claims by name, its cache state and outcome."""
    return token_answer(service, "ad-feed", login=login, email=login)


def registration(service: InProcessService, email: str) -> dict[str, Any]:
    event = registration_for(email)
    event["eventId"] = f"ad-feed-{time.monotonic_ns()}"
    response = service.post("registration", event)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    commands = body.get("commands") or [{"value": {}}]
    return {"cache": body["debugContext"].get("cache"), **commands[0]["value"]}


def lag_of(change: Callable[[], None], shows: Callable[[], bool]) -> float:
    """Seconds from ``change`` on the DC until an answer shows it (given up at ten polls)."""
    made = time.monotonic()
    change()
    while not shows():
        assert time.monotonic() - made < 10 * POLL, "the change never reached an answer"
        time.sleep(0.05)
    return time.monotonic() - made


def modify(admin: ldap3.Connection, dn: str, changes: dict[str, Any]) -> None:
    assert admin.modify(dn, changes), admin.result


def remembered(answer: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The first answer (read from the DC), then the same answered from memory."""
    first = answer()
    assert first["cache"] == "miss", first
    again = answer()
    assert again["cache"] == "hit", again
    return first


def test_a_changed_title_reaches_tokens_and_registrations_within_a_poll(
    service: InProcessService, admin: ldap3.Connection, lags: dict[str, float]
) -> None:
    login, email = "rosario.jones@example.com", "rosario.jones@example.com"
    assert remembered(lambda: token(service, login))["title"] == "Software Engineer"
    assert remembered(lambda: registration(service, email))["title"] == "Software Engineer"
    lags["title (token)"] = lag_of(
        lambda: modify(admin, person_dn("rosario.jones"), {"title": [(ldap3.MODIFY_REPLACE, ["Staff Engineer"])]}),
        lambda: token(service, login).get("title") == "Staff Engineer",
    )
    assert registration(service, email)["title"] == "Staff Engineer"  # evicted from the registration cache too
    assert lags["title (token)"] <= POLL + 1


def test_a_person_removed_from_a_group_leaves_the_group_claims_within_a_poll(
    service: InProcessService, admin: ldap3.Connection, lags: dict[str, float]
) -> None:
    """``member`` is written on the group, not on Ada: the group's change evicts its members. Direct
    groups (a search by member) and tokenGroups (computed on Ada's entry) both drop the group and what
    it led to."""
    first = remembered(lambda: token(service, "ada@corp.example.com"))
    assert first["groups_direct"] == ["Cycle A", "Finance Leads"]
    assert first["app_roles"] == ["app-All Staff", "app-Payroll Admins"]

    def gone() -> bool:
        seen = token(service, "ada@corp.example.com")
        return "Finance Leads" not in seen["groups_direct"]

    lags["removed from a group"] = lag_of(
        lambda: modify(admin, group_dn("Finance Leads"), {"member": [(ldap3.MODIFY_DELETE, [person_dn("ada")])]}),
        gone,
    )
    seen = token(service, "ada@corp.example.com")
    assert seen["groups_direct"] == ["Cycle A"]
    assert "app_roles" not in seen  # app-Payroll Admins and app-All Staff came through it: no app role left
    assert lags["removed from a group"] <= POLL + 1


def test_a_disabled_account_is_no_match_within_a_poll(
    service: InProcessService, admin: ldap3.Connection, lags: dict[str, float]
) -> None:
    remembered(lambda: token(service, "alice.wong@example.com"))
    disabled = {"userAccountControl": [(ldap3.MODIFY_REPLACE, [str(ad_data.ENABLED | 2)])]}  # ACCOUNTDISABLE
    lags["account disabled"] = lag_of(
        lambda: modify(admin, person_dn("alice.wong"), disabled),
        lambda: token(service, "alice.wong@example.com")["outcome"] == "no_match",
    )
    assert lags["account disabled"] <= POLL + 1


# -- a deleted person: a tombstone, which only an account allowed to read Deleted Objects sees ---------------

DELETED_OBJECTS = f"CN=Deleted Objects,{ad_data.BASE_DN}"
#: Samba's own Python (the one samba-tool runs on) adds an ACE to the Deleted Objects container's security
#: descriptor, in the DC's database: what ``dsacls "CN=Deleted Objects,..." /takeownership`` then
#: ``/G CORP\svc-okta-hook:LCRP`` do on Windows (samba-tool dsacl cannot, as it does not see the deleted
#: container).
GRANT = """
import sys, ldb
from samba.auth import system_session
from samba.dcerpc import security
from samba.ndr import ndr_pack, ndr_unpack
from samba.param import LoadParm
from samba.samdb import SamDB
sam, conf, sid, dn = sys.argv[1:]
lp = LoadParm()
lp.load(conf)
db = SamDB(url=sam, session_info=system_session(), lp=lp)
controls = ["show_deleted:1", "sd_flags:1:4"]
(found,) = db.search(base=dn, scope=ldb.SCOPE_BASE, attrs=["nTSecurityDescriptor"], controls=controls)
descriptor = ndr_unpack(security.descriptor, found["nTSecurityDescriptor"][0])
ace = security.ace()
ace.type = security.SEC_ACE_TYPE_ACCESS_ALLOWED
ace.access_mask = security.SEC_ADS_LIST | security.SEC_ADS_READ_PROP
ace.trustee = security.dom_sid(sid)
descriptor.dacl_add(ace)
message = ldb.Message(ldb.Dn(db, dn))
message["nTSecurityDescriptor"] = ldb.MessageElement(ndr_pack(descriptor), ldb.FLAG_MOD_REPLACE, "nTSecurityDescriptor")
db.modify(message, controls=controls)
"""


def grant_deleted_objects(dc: SambaDC, sam: str) -> None:
    """Let ``sam`` list and read ``CN=Deleted Objects`` (List Contents, Read Property)."""
    sid = dc.ldbsearch(f"(sAMAccountName={sam})", "objectSid")["objectSid"]
    database = dc.dc_dir / "private" / "sam.ldb"
    argv = ["/usr/bin/python3", "-c", GRANT, str(database), str(dc.conf_file), sid, DELETED_OBJECTS]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def tombstones(dc: SambaDC, who: str, password: str, sam: str) -> list[str]:
    """The DNs of ``sam``'s tombstones that ``who`` reads with the show-deleted control."""
    tls = ldap3.Tls(ca_certs_file=str(dc.ca_file))
    server = ldap3.Server(dc.ldaps_url, tls=tls, get_info=ldap3.NONE)
    connection = ldap3.Connection(server, who, password, auto_bind=True)
    try:
        show_deleted = [("1.2.840.113556.1.4.417", True, None)]
        connection.search(dc.base_dn, f"(&(isDeleted=TRUE)(sAMAccountName={sam}))", controls=show_deleted)
        assert connection.result["description"] == "success", connection.result
        return [entry.entry_dn for entry in connection.entries]
    finally:
        connection.unbind()


def test_a_deleted_person_is_no_match_within_a_poll_once_the_account_reads_deleted_objects(
    samba_dc: SambaDC, service: InProcessService, admin: ldap3.Connection, lags: dict[str, float]
) -> None:
    """The README asks for a service account allowed to read ``CN=Deleted Objects``. The fixture's
    svc-okta-hook is a plain user, as a real one starts out, and AD shows it no tombstone: a deleted
    person in no group (nothing else changes) would stay in memory for ``feed_fresh_seconds``. Once
    granted List Contents and Read Property there, the tombstone comes back within a poll, rebuilt to
    the DN it had (Samba leaves ``msDS-LastKnownRDN`` empty: from ``name``), and evicts the person."""
    delete(admin, person_dn("pia.pass"))
    assert tombstones(samba_dc, samba_dc.admin_upn, samba_dc.admin_password, "pia.pass")  # Administrator's
    assert tombstones(samba_dc, samba_dc.service_upn, samba_dc.service_bind_password, "pia.pass") == []
    grant_deleted_objects(samba_dc, "svc-okta-hook")
    assert tombstones(samba_dc, samba_dc.service_upn, samba_dc.service_bind_password, "pia.pass")

    remembered(lambda: token(service, "user@example.com"))
    deleted = service.metric('okta_hook_cache_evictions_total{cause="deleted",directory="default",hook_type="token"}')
    lags["person deleted (tombstone)"] = lag_of(
        lambda: delete(admin, person_dn("user")),
        lambda: token(service, "user@example.com")["outcome"] == "no_match",
    )
    assert (
        service.metric('okta_hook_cache_evictions_total{cause="deleted",directory="default",hook_type="token"}')
        == deleted + 1
    )
    assert lags["person deleted (tombstone)"] <= POLL + 1


def delete(admin: ldap3.Connection, dn: str) -> None:
    assert admin.delete(dn), admin.result


def until_current(running: InProcessService) -> None:
    deadline = time.monotonic() + 10
    while running.metric('okta_hook_change_feed_current{directory="default"}') != 1.0:
        assert time.monotonic() < deadline, "the change feed never became current on the DC"
        time.sleep(0.05)
