"""Tests of the throwaway slapd (service.demo.slapd) and of the demo data the other tests rely on."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ldap3 import BASE, SAFE_SYNC, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException, LDAPSocketOpenError
from ldap3.utils.conv import escape_filter_chars

from service.demo.directory_data import generate_users
from service.demo.slapd import (
    DEMO_USER_PASSWORD,
    SERVICE_BIND_DN,
    SERVICE_BIND_PASSWORD,
    Slapd,
    SlapdError,
    SlapdNotInstalled,
    demo_ldif,
    free_port,
    make_ca,
)

BASE_DN = "dc=example,dc=com"
PEOPLE = "ou=people,dc=example,dc=com"
GROUPS = "ou=groups,dc=example,dc=com"
ATTRS = ["uid", "cn", "mail", "departmentNumber", "title", "employeeNumber", "manager", "memberOf"]
CAROL = f"uid=carol.chen,{PEOPLE}"
JOHN = f"cn=Smith\\, John,{PEOPLE}"  # as written in the LDIF and in his reports' manager values
JOHN_ENTRY_DN = f"cn=Smith\\2C John,{PEOPLE}"  # the same DN as slapd returns it for his entry
JOSE = f"cn=José Müller,{PEOPLE}"
ZOE = f"uid=zoe.angstrom,{PEOPLE}"
GONE = f"uid=former.employee,{PEOPLE}"  # dangling manager DN: no such entry

# The demo directory as the other tests see it: mail -> (DN, manager DN, groups by cn).
DEMO_PEOPLE: dict[str, tuple[str, str | None, set[str]]] = {
    "carol.chen@example.com": (CAROL, None, {"engineering", "all-staff", "okta-admins"}),
    "rosario.jones@example.com": (f"uid=rosario.jones,{PEOPLE}", CAROL, {"engineering", "all-staff"}),
    "alice.wong@example.com": (f"uid=alice.wong,{PEOPLE}", CAROL, {"engineering", "all-staff"}),
    "paren(test)*star@example.com": (f"uid=paren.test,{PEOPLE}", CAROL, {"engineering"}),
    "john.smith@example.com": (JOHN_ENTRY_DN, None, {"all-staff"}),
    "administrator1@clouditude.net": (f"uid=administrator1,{PEOPLE}", JOHN, {"all-staff", "okta-admins"}),
    "sally.admin@example.net": (f"uid=sally.admin,{PEOPLE}", JOHN, {"all-staff", "okta-admins"}),
    "user@example.com": (f"uid=user,{PEOPLE}", JOHN, {"sales", "all-staff"}),
    "mixed.case@example.com": (f"uid=mixed.case,{PEOPLE}", JOHN, {"sales", "all-staff"}),
    "jose.muller@example.com": (JOSE, CAROL, {"engineering", "all-staff", "Équipe Paris"}),
    "zoe.angstrom@example.com": (ZOE, JOSE, {"engineering", "all-staff", "Équipe Paris"}),
    "orphan.report@example.com": (f"uid=orphan.report,{PEOPLE}", GONE, {"all-staff"}),
    "plain.user@example.com": (f"uid=plain.user,{PEOPLE}", None, set()),
}


def connect(url: str, user: str | None = SERVICE_BIND_DN, password: str | None = SERVICE_BIND_PASSWORD,
            tls: Tls | None = None, *, start_tls: bool = False) -> Connection:  # fmt: skip
    server = Server(url, use_ssl=url.startswith("ldaps://"), tls=tls, connect_timeout=5, get_info="NO_INFO")
    conn = Connection(server, user, password, client_strategy=SAFE_SYNC, receive_timeout=5)
    conn.open()
    if start_tls:
        conn.start_tls()
    conn.bind()
    return conn


def search(conn: Connection, ldap_filter: str, attributes: list[str] | None = None,
           base: str = BASE_DN, scope: str = SUBTREE) -> list[dict[str, Any]]:  # fmt: skip
    _, result, response, _ = conn.search(base, ldap_filter, scope, attributes=attributes or ATTRS)
    assert result["result"] == 0, result
    return [entry for entry in response if entry["type"] == "searchResEntry"]


def by_mail(conn: Connection, mail: str) -> list[dict[str, Any]]:
    return search(conn, f"(mail={escape_filter_chars(mail)})")


def group_cns(entry: dict[str, Any]) -> set[str]:
    cns = set()
    for dn in entry["attributes"].get("memberOf", []):
        rdn, _, parent = dn.partition(",")
        assert parent == GROUPS, dn
        cns.add(rdn.removeprefix("cn="))
    return cns


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with Slapd(tmp_path_factory.mktemp("demo-ldap"), demo_ldif()) as server:
        yield server


@pytest.fixture(scope="module")
def conn(demo: Slapd) -> Iterator[Connection]:
    connection = connect(demo.url)
    yield connection
    connection.unbind()


# ------------------------------------------------------------------------------- the demo data


def test_service_account_finds_user_by_mail_with_profile_attributes_and_groups(conn: Connection) -> None:
    [entry] = by_mail(conn, "rosario.jones@example.com")
    attrs = entry["attributes"]
    assert entry["dn"] == f"uid=rosario.jones,{PEOPLE}"
    assert attrs["departmentNumber"] == ["Engineering"]
    assert attrs["title"] == ["Senior Software Engineer"]
    assert attrs["employeeNumber"] == ["1002"]
    assert attrs["manager"] == [CAROL]
    assert set(attrs["memberOf"]) == {f"cn=engineering,{GROUPS}", f"cn=all-staff,{GROUPS}"}


@pytest.mark.parametrize("mail", sorted(DEMO_PEOPLE))
def test_demo_people_table(conn: Connection, mail: str) -> None:
    dn, manager, groups = DEMO_PEOPLE[mail]
    [entry] = by_mail(conn, mail)
    assert entry["dn"] == dn
    assert entry["attributes"].get("manager", []) == ([manager] if manager else [])
    assert group_cns(entry) == groups


def test_non_ascii_values_and_dns_round_trip(conn: Connection) -> None:
    [zoe] = by_mail(conn, "zoe.angstrom@example.com")
    assert zoe["attributes"]["cn"] == ["Zoë Ångström"]
    assert zoe["attributes"]["title"] == ["Ingénieure"]
    assert zoe["attributes"]["departmentNumber"] == ["Recherche & Développement"]
    assert f"cn=Équipe Paris,{GROUPS}" in zoe["attributes"]["memberOf"]  # as written, not normalized
    [manager] = search(conn, "(objectClass=*)", base=zoe["attributes"]["manager"][0], scope=BASE)
    assert manager["attributes"]["mail"] == ["jose.muller@example.com"]


def test_manager_dn_with_escaped_comma_resolves(conn: Connection) -> None:
    [admin] = by_mail(conn, "administrator1@clouditude.net")
    [manager] = search(conn, "(objectClass=*)", base=admin["attributes"]["manager"][0], scope=BASE)
    assert manager["attributes"]["cn"] == ["Smith, John"]
    assert manager["attributes"]["mail"] == ["john.smith@example.com"]


def test_special_mails(conn: Connection) -> None:
    assert len(by_mail(conn, "shared.mailbox@example.com")) == 2
    assert len(by_mail(conn, "SHARED.Mailbox@Example.com")) == 2  # mail matching ignores case
    [paren] = by_mail(conn, "paren(test)*star@example.com")
    assert paren["attributes"]["uid"] == ["paren.test"]
    assert by_mail(conn, "*)(uid=*") == []  # escaped: a literal, matches nothing
    assert len(search(conn, "(mail=paren*)")) == 1  # unescaped * is a wildcard
    [plain] = by_mail(conn, "plain.user@example.com")
    assert {k for k, v in plain["attributes"].items() if v} == {"uid", "cn", "mail"}


def test_memberof_filter_finds_group_members(conn: Connection) -> None:
    members = search(conn, f"(memberOf=cn=okta-admins,{GROUPS})", ["uid"])
    uids = sorted(e["attributes"]["uid"][0] for e in members)
    assert uids == ["administrator1", "carol.chen", "sally.admin"]


def test_access_control(demo: Slapd, conn: Connection) -> None:
    [entry] = search(conn, "(uid=rosario.jones)", ["userPassword", "mail"])
    assert entry["attributes"]["mail"] == ["rosario.jones@example.com"]
    assert "userPassword" not in entry["attributes"] or entry["attributes"]["userPassword"] == []
    # Bad service password: no bind.
    assert not connect(demo.url, SERVICE_BIND_DN, "wrong").bound
    # Anonymous: binds (auth) but sees nothing, not even the base entry (noSuchObject).
    anonymous = connect(demo.url, None, None)
    assert anonymous.bound
    _, result, response, _ = anonymous.search(BASE_DN, "(objectClass=inetOrgPerson)", attributes=["mail"])
    assert result["result"] == 32 and response == [], result
    # A person binds with the demo password and reads its own entry.
    rosario = f"uid=rosario.jones,{PEOPLE}"
    person = connect(demo.url, rosario, DEMO_USER_PASSWORD)
    assert person.bound
    assert len(search(person, "(objectClass=*)", ["mail"], base=rosario, scope=BASE)) == 1
    _, _, response, _ = person.search(PEOPLE, "(uid=carol.chen)", attributes=["mail"])
    assert response == []  # but nobody else's
    # rootdn
    assert connect(demo.url, demo.admin_dn, demo.admin_password).bound


def test_demo_has_15_people(conn: Connection) -> None:
    assert len(search(conn, "(objectClass=inetOrgPerson)", ["uid"])) == 15


# ------------------------------------------------------------------------------------------ TLS


def test_ldaps_and_starttls_with_the_ca(demo: Slapd) -> None:
    tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(demo.ca_file))
    over_ldaps = connect(demo.ldaps_url, tls=tls)
    assert over_ldaps.bound and over_ldaps.server.ssl
    assert len(by_mail(over_ldaps, "user@example.com")) == 1
    over_starttls = connect(demo.url, tls=tls, start_tls=True)
    assert over_starttls.bound and over_starttls.tls_started
    assert len(by_mail(over_starttls, "user@example.com")) == 1


def test_certificate_from_an_untrusted_ca_is_refused(demo: Slapd, tmp_path: Path) -> None:
    other = make_ca(tmp_path / "other-ca", name="some other CA")
    assert other.cert_file.read_bytes() != demo.ca_file.read_bytes()
    tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(other.cert_file))
    with pytest.raises(LDAPSocketOpenError):
        connect(demo.ldaps_url, tls=tls)
    with pytest.raises(LDAPException):
        connect(demo.url, tls=tls, start_tls=True)


def test_server_certificate_names_127_0_0_1_and_localhost(demo: Slapd) -> None:
    context = ssl.create_default_context(cafile=str(demo.ca_file))
    for name in ("127.0.0.1", "localhost"):
        with (
            socket.create_connection(("127.0.0.1", demo.ldaps_port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=name) as tls,
        ):
            assert tls.version() is not None
    with (
        socket.create_connection(("127.0.0.1", demo.ldaps_port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(raw, server_hostname="ldap.example.com")


# ------------------------------------------------------------------------------------ lifecycle


def test_restart_keeps_ports_and_data(tmp_path: Path) -> None:
    server = Slapd(tmp_path / "ldap", demo_ldif())
    with server:
        port, ldaps_port, pid = server.port, server.ldaps_port, server.pid
        admin = connect(server.url, server.admin_dn, server.admin_password)
        # An online change must survive the restart (so restart() does not re-slapadd the LDIF).
        admin.modify(f"uid=plain.user,{PEOPLE}", {"title": [("MODIFY_REPLACE", ["Changed Online"])]})
        assert admin.result["result"] == 0, admin.result
        server.restart()
        assert (server.port, server.ldaps_port) == (port, ldaps_port)
        assert server.running and server.pid != pid
        [plain] = by_mail(connect(server.url), "plain.user@example.com")
        assert plain["attributes"]["title"] == ["Changed Online"]
        assert len(by_mail(connect(server.url), "shared.mailbox@example.com")) == 2
        assert group_cns(by_mail(connect(server.url), "zoe.angstrom@example.com")[0]) == {
            "engineering", "all-staff", "Équipe Paris",
        }  # fmt: skip


def test_stop_leaves_no_process_and_is_idempotent(tmp_path: Path) -> None:
    server = Slapd(tmp_path / "ldap", demo_ldif()).start()
    pid = server.pid
    assert pid is not None and process_exists(pid) and listening(server.port)
    server.stop()
    assert not server.running and server.pid is None
    assert not process_exists(pid)
    assert not listening(server.port) and not listening(server.ldaps_port)
    server.stop()  # idempotent
    server.start()  # and startable again, same ports
    assert listening(server.port)
    server.stop()
    assert not listening(server.port)


def test_start_failure_raises_with_slapd_output(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        server = Slapd(tmp_path / "ldap", demo_ldif(), port=port)
        with pytest.raises(SlapdError, match="Address already in use"):
            server.start()
        assert not server.running


def test_bad_ldif_raises_with_slapadd_output(tmp_path: Path) -> None:
    ldif = f"dn: uid=x,{PEOPLE}\nobjectClass: inetOrgPerson\nuid: x\ncn: x\n"  # no sn, no parents
    server = Slapd(tmp_path / "ldap", ldif)
    with pytest.raises(SlapdError, match="requires attribute 'sn'"):
        server.start()
    assert not server.running


def test_explicit_ports_and_shared_ca(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca")
    port, ldaps_port = free_port(), free_port()
    with Slapd(tmp_path / "ldap", demo_ldif(), port=port, ldaps_port=ldaps_port, ca=ca) as server:
        assert server.url == f"ldap://127.0.0.1:{port}"
        assert server.ldaps_url == f"ldaps://127.0.0.1:{ldaps_port}"
        assert server.ca_file == ca.cert_file
        tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(ca.cert_file))
        assert connect(server.ldaps_url, tls=tls).bound


def test_dynlist_mode_also_gives_memberof(tmp_path: Path) -> None:
    with Slapd(tmp_path / "ldap", demo_ldif(), memberof="dynlist") as server:
        conn = connect(server.url)
        [zoe] = by_mail(conn, "zoe.angstrom@example.com")
        # dynlist (OpenLDAP 2.5) returns normalized group DNs: lower case.
        assert {dn.lower() for dn in zoe["attributes"]["memberOf"]} == {
            f"cn=engineering,{GROUPS}", f"cn=all-staff,{GROUPS}", f"cn=équipe paris,{GROUPS}",
        }  # fmt: skip
        assert len(search(conn, f"(memberOf=cn=Équipe Paris,{GROUPS})", ["uid"])) == 2


def test_generated_directory_loads(tmp_path: Path) -> None:
    with Slapd(tmp_path / "ldap", generate_users(200)) as server:
        conn = connect(server.url)
        assert len(search(conn, "(objectClass=inetOrgPerson)", ["uid"])) == 200
        [user] = by_mail(conn, "user00123@example.com")
        assert user["dn"] == f"uid=user00123,{PEOPLE}"
        assert user["attributes"]["manager"] == [f"uid=user00012,{PEOPLE}"]
        assert user["attributes"]["employeeNumber"] == ["100123"]
        assert group_cns(user) == {"team-finance"}  # user i < 200 is in group i % 8; DEPARTMENTS[3]
        groups = search(conn, "(objectClass=groupOfNames)", ["cn", "member"], base=GROUPS)
        assert len(groups) == 8 and all(len(g["attributes"]["member"]) == 25 for g in groups)
        [root] = by_mail(conn, "user00000@example.com")
        assert root["attributes"].get("manager", []) == []


def test_service_account_has_no_size_limit(tmp_path: Path) -> None:
    # slapd's default size limit is 500 entries; search() asserts result 0, so sizeLimitExceeded fails.
    with Slapd(tmp_path / "ldap", generate_users(600)) as server:
        assert len(search(connect(server.url), "(objectClass=inetOrgPerson)", ["uid"])) == 600


def test_generate_users_is_deterministic() -> None:
    assert generate_users(50) == generate_users(50)
    dns = [line for line in generate_users(0).splitlines() if line.startswith("dn: ")]
    assert dns == [
        "dn: dc=example,dc=com",
        "dn: ou=people,dc=example,dc=com",
        "dn: ou=groups,dc=example,dc=com",
        "dn: ou=services,dc=example,dc=com",
        f"dn: {SERVICE_BIND_DN}",
    ]


def test_free_port_gives_distinct_bindable_ports() -> None:
    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_missing_slapd_raises_with_install_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "access", lambda *_args, **_kw: False)
    monkeypatch.setattr(shutil, "which", lambda *_args, **_kw: None)
    with pytest.raises(SlapdNotInstalled, match=r"apt-get install -y slapd ldap-utils"):
        Slapd(tmp_path / "ldap", demo_ldif())
