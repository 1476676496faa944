"""The directory layer against a real slapd: lookups, escaping, TLS, failover, timeouts, restarts and
connection reuse."""

from __future__ import annotations

import asyncio
import socket
import time
import unicodedata
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.servers import HangingServer
from wire_support import RecordingRelay

from service.demo.slapd import SERVICE_BIND_DN, SERVICE_BIND_PASSWORD, Slapd, demo_ldif, free_port, make_ca
from service.directory import DeadlineExceeded, Directory, DirectoryConfig, DirectoryError, UserQuery, UserSearch
from service.directory.connections import Server, filter_value, new_connection, open_session, run_bind

ATTRIBUTES = frozenset({"mail", "title", "departmentnumber", "manager", "memberof"})
RESOLVE = {"manager": frozenset({"mail"})}


class CountingObserver:
    """Counts operations per (name, outcome), to check what the directory really did."""

    def __init__(self) -> None:
        self.operations: Counter[tuple[str, str]] = Counter()
        self.servers_up: dict[str, bool] = {}

    @contextmanager
    def operation(self, name: str, server: str) -> Iterator[None]:
        try:
            yield
        except DirectoryError as error:
            self.operations[(name, error.kind)] += 1
            raise
        self.operations[(name, "ok")] += 1

    def server_up(self, server: str, up: bool) -> None:
        self.servers_up[server] = up


def make_directory(*urls: str, observer: CountingObserver | None = None, **options) -> Directory:
    config = DirectoryConfig(
        urls=urls,
        user_search=UserSearch(base_dn="ou=people,dc=example,dc=com", filter="(objectClass=inetOrgPerson)"),
        bind_dn=SERVICE_BIND_DN,
        bind_password_env="UNUSED",
        **{
            "connect_timeout_seconds": 0.5,
            "operation_timeout_seconds": 1.0,
            "pool_size": 4,
            "server_cooldown_seconds": 30.0,
            **options,
        },
    )
    return Directory(config, SERVICE_BIND_PASSWORD, observer)


@contextmanager
def opened(*urls: str, observer: CountingObserver | None = None, **options) -> Iterator[Directory]:
    directory = make_directory(*urls, observer=observer, **options)
    try:
        yield directory
    finally:
        directory.close()


def find(directory: Directory, identifier: str, budget: float = 2.0):
    async def run():
        lookup = await directory.find_user(UserQuery.of(identifier, ATTRIBUTES, RESOLVE), time.monotonic() + budget)
        return lookup.entry

    return asyncio.run(run())


@pytest.fixture
def directory(slapd: Slapd) -> Iterator[Directory]:
    directory = make_directory(slapd.url)
    yield directory
    directory.close()


def test_finds_the_user_and_resolves_the_manager(directory: Directory) -> None:
    entry = find(directory, "rosario.jones@example.com")

    assert entry.dn == "uid=rosario.jones,ou=people,dc=example,dc=com"
    assert entry.values("title") == ("Senior Software Engineer",)
    assert set(entry.values("memberOf")) == {
        "cn=all-staff,ou=groups,dc=example,dc=com",
        "cn=engineering,ou=groups,dc=example,dc=com",
    }
    assert entry.resolved("uid=carol.chen,ou=people,dc=example,dc=com", "mail") == ("carol.chen@example.com",)


def test_match_is_case_insensitive_as_the_directory_defines_it(directory: Directory) -> None:
    assert find(directory, "mixed.case@example.com").values("title") == ("Sales Engineer",)


def test_strip_domains_matches_the_local_part_in_the_company_domains_only(slapd: Slapd) -> None:
    search = UserSearch("ou=people,dc=example,dc=com", match_attribute="uid", strip_domains=("corp.example.org",))
    config = DirectoryConfig(urls=(slapd.url,), user_search=search, bind_dn=SERVICE_BIND_DN, bind_password_env="UNUSED")
    directory = Directory(config, SERVICE_BIND_PASSWORD)
    try:
        assert find(directory, "alice.wong@corp.example.org").values("title") == ("Software Engineer",)
        assert find(directory, "alice.wong@CORP.Example.ORG").values("title") == ("Software Engineer",)
        assert find(directory, "alice.wong@evil.example") is None  # another domain is nobody here
        assert find(directory, "alice.wong") is None  # so is a login with no domain
    finally:
        directory.close()


def test_no_password_stays_on_a_bound_connection(slapd: Slapd) -> None:
    """ldap3's SYNC strategy keeps the last request on the connection, decoded: a bind's password."""
    search = UserSearch(base_dn="ou=people,dc=example,dc=com")
    config = DirectoryConfig(urls=(slapd.url,), user_search=search, bind_dn=SERVICE_BIND_DN, bind_password_env="X")
    server = Server(config.servers[0], config)
    for password, bound in ((SERVICE_BIND_PASSWORD, True), ("a-wrong-password", False)):
        conn = new_connection(server, config, SERVICE_BIND_DN, password.encode())
        open_session(conn, config)
        try:
            assert run_bind(conn)[0] is bound
            assert password not in repr(vars(conn).get("request"))
        finally:
            conn.unbind()


def test_unknown_user_is_none(directory: Directory) -> None:
    assert find(directory, "nobody@example.com") is None


def test_one_connection_never_carries_an_answer_over_to_the_next_lookup(slapd: Slapd) -> None:
    """ldap3's SYNC strategy leaves each answer on the connection: on a pool of one, every lookup runs
    on the connection that just answered for someone else."""
    with opened(slapd.url, pool_size=1) as directory:
        for _ in range(2):
            assert find(directory, "rosario.jones@example.com").dn == "uid=rosario.jones,ou=people,dc=example,dc=com"
            assert find(directory, "nobody@example.com") is None
            assert find(directory, r"rosario.jones@example.com\00") is None
            assert find(directory, "carol.chen@example.com").dn == "uid=carol.chen,ou=people,dc=example,dc=com"


@pytest.mark.parametrize(
    "hostile", ["*", "*)(uid=*", "*)(objectClass=*", "\\00", "\x00", "\\2a", ")", "\\", "*@example.com"]
)
def test_hostile_strings_are_escaped_once(directory: Directory, hostile: str) -> None:
    assert find(directory, hostile) is None


def test_exact_match_of_a_value_full_of_metacharacters(directory: Directory) -> None:
    assert find(directory, "paren(test)*star@example.com").values("title") == ("QA Engineer",)


def test_several_matches_raise_ambiguous(directory: Directory) -> None:
    with pytest.raises(DirectoryError) as raised:
        find(directory, "shared.mailbox@example.com")
    assert raised.value.kind == "ambiguous"
    assert "shared.mailbox" not in str(raised.value)  # no user data in error messages


def test_non_ascii_values_and_dns(directory: Directory) -> None:
    entry = find(directory, "zoe.angstrom@example.com")

    assert entry.values("title") == ("Ingénieure",)
    manager_dn = entry.values("manager")[0]
    assert manager_dn == "cn=José Müller,ou=people,dc=example,dc=com"
    assert entry.resolved(manager_dn, "mail") == ("jose.muller@example.com",)


def test_connections_are_reused_not_opened_per_request(slapd: Slapd) -> None:
    observer = CountingObserver()
    directory = make_directory(slapd.url, observer=observer, pool_size=3)

    async def burst():
        deadline = time.monotonic() + 5
        lookups = [
            directory.find_user(UserQuery.of("alice.wong@example.com", ATTRIBUTES, RESOLVE), deadline)
            for _ in range(60)
        ]
        return await asyncio.gather(*lookups)

    try:
        results = asyncio.run(burst())
        size, in_use, waiting = directory.pool_state()
    finally:
        directory.close()
    assert all(lookup.entry.values("title") == ("Software Engineer",) for lookup in results)
    assert observer.operations[("search", "ok")] == 60
    assert observer.operations[("bind", "ok")] <= 3  # at most one bind per pooled connection
    assert (in_use, waiting) == (0, 0) and 1 <= size <= 3


def test_ldaps_with_the_configured_ca(slapd: Slapd) -> None:
    with opened(slapd.ldaps_url, ca_file=str(slapd.ca_file)) as directory:
        assert find(directory, "rosario.jones@example.com") is not None


def test_start_tls_with_the_configured_ca(slapd: Slapd) -> None:
    with opened(slapd.url, ca_file=str(slapd.ca_file), start_tls=True) as directory:
        assert find(directory, "rosario.jones@example.com") is not None


@pytest.mark.parametrize("use_start_tls", [False, True])
def test_untrusted_certificate_is_refused(slapd: Slapd, tmp_path: Path, use_start_tls: bool) -> None:
    other_ca = make_ca(tmp_path / "other-ca", "some other CA")
    url = slapd.url if use_start_tls else slapd.ldaps_url
    with opened(url, ca_file=str(other_ca.cert_file), start_tls=use_start_tls) as directory:
        with pytest.raises(DirectoryError) as raised:
            find(directory, "rosario.jones@example.com")
        assert raised.value.kind == "tls"


def test_wrong_bind_password_is_bind_failed(slapd: Slapd) -> None:
    config = DirectoryConfig(
        urls=(slapd.url,),
        user_search=UserSearch(base_dn="ou=people,dc=example,dc=com"),
        bind_dn=SERVICE_BIND_DN,
        bind_password_env="UNUSED",
    )
    directory = Directory(config, "not-the-password")
    try:
        with pytest.raises(DirectoryError) as raised:
            find(directory, "rosario.jones@example.com")
        assert raised.value.kind == "bind_failed"
        assert "not-the-password" not in str(raised.value)
    finally:
        directory.close()


def test_closed_port_fails_fast(closed_port_url: str) -> None:
    with opened(closed_port_url) as directory:
        started = time.monotonic()
        with pytest.raises(DirectoryError) as raised:
            find(directory, "rosario.jones@example.com")
        assert raised.value.kind == "connect"
        assert time.monotonic() - started < 0.5


def test_failover_to_the_next_server_and_cooldown(slapd: Slapd, closed_port_url: str) -> None:
    observer = CountingObserver()
    with opened(closed_port_url, slapd.url, observer=observer, pool_size=1) as directory:
        assert find(directory, "rosario.jones@example.com") is not None
        assert find(directory, "alice.wong@example.com") is not None
    # the dead server was tried once, then skipped during its cooldown
    assert observer.operations[("connect", "connect")] == 1
    assert observer.operations[("search", "ok")] == 2


def test_hanging_directory_hits_the_deadline(hanging_directory: HangingServer) -> None:
    with opened(hanging_directory.url, operation_timeout_seconds=5.0) as directory:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded) as raised:
            find(directory, "rosario.jones@example.com", budget=0.5)
        elapsed = time.monotonic() - started
    assert raised.value.stage == "bind"  # connected, then the bind never got an answer
    assert elapsed < 0.8  # the deadline, plus scheduling slack on a busy CI machine


def test_directory_restart_is_survived(tmp_path: Path) -> None:
    with Slapd(tmp_path / "ldap", demo_ldif()) as server, opened(server.url, pool_size=2) as directory:
        assert find(directory, "rosario.jones@example.com") is not None
        server.restart()  # every pooled connection is now dead
        for _ in range(5):
            assert find(directory, "alice.wong@example.com") is not None


def test_background_check_reports_each_server(slapd: Slapd, closed_port_url: str) -> None:
    observer = CountingObserver()
    with opened(slapd.url, closed_port_url, observer=observer) as directory:
        results = asyncio.run(directory.check_servers())
    up = slapd.url.removeprefix("ldap://")
    down = closed_port_url.removeprefix("ldap://")
    assert results == {up: True, down: False}
    assert observer.servers_up == {up: True, down: False}


def test_free_port_helper_gives_a_closed_port() -> None:
    import socket

    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", free_port())) != 0


def test_host_name_not_in_the_certificate_is_refused(slapd: Slapd) -> None:
    # "127.1" reaches 127.0.0.1 but is not a name the server certificate holds (IP 127.0.0.1, localhost)
    url = slapd.ldaps_url.replace("127.0.0.1", "127.1")
    with opened(url, ca_file=str(slapd.ca_file)) as directory:
        with pytest.raises(DirectoryError) as raised:
            find(directory, "rosario.jones@example.com")
        assert raised.value.kind == "tls"
    with opened(slapd.ldaps_url.replace("127.0.0.1", "localhost"), ca_file=str(slapd.ca_file)) as good:
        assert find(good, "rosario.jones@example.com") is not None


# -- DNs and filter values reach the directory as they are ------------------------------------------------


@pytest.mark.parametrize(
    "base_dn",
    [
        "ou=people, dc=example, dc=com",  # spaces after the commas, as Active Directory tools write them
        "2.5.4.11=people,dc=example,dc=com",  # an attribute type by its OID (RFC 4514)
    ],
)
def test_a_base_dn_is_sent_as_configured(slapd: Slapd, base_dn: str) -> None:
    """ldap3's check_names ran every search base through its own DN parser (safe_dn), which refused
    both (every lookup failed, kind "other"); it also escaped others into other DNs (a BER value
    "#04..." made text). The directory reads both as ou=people."""
    search = UserSearch(base_dn=base_dn, filter="(objectClass=inetOrgPerson)")
    config = DirectoryConfig(urls=(slapd.url,), user_search=search, bind_dn=SERVICE_BIND_DN, bind_password_env="X")
    directory = Directory(config, SERVICE_BIND_PASSWORD)
    try:
        entry = find(directory, "rosario.jones@example.com")
        assert entry is not None and entry.values("title") == ("Senior Software Engineer",)
        assert entry.resolved("uid=carol.chen,ou=people,dc=example,dc=com", "mail") == ("carol.chen@example.com",)
    finally:
        directory.close()


def test_filter_values_are_escaped_once_to_their_exact_bytes() -> None:
    assert filter_value("cn=R&D\\2C Europe") == "cn=R&D\\5c2C Europe"
    assert filter_value("*)(uid=*\x00") == "\\2a\\29\\28uid=\\2a\\00"
    assert filter_value(" a b\t") == "\\20a b\\09"
    assert filter_value("a\u00a0\u2003") == "a\\c2\\a0\\e2\\80\\83"
    assert filter_value("zoë") == "zoë"  # sent as its UTF-8 bytes by ldap3 itself


def test_the_filter_on_the_wire_holds_the_value_as_given(slapd: Slapd) -> None:
    """Read on the wire (a recording relay): NFC and NFD forms of one address, each sent as its own
    UTF-8 bytes (never normalized into the other), and whitespace at the ends of a value kept, which
    ldap3 strips from every assertion value it parses (Python's str.strip). What the directory makes
    of them is its own matching: slapd's string preparation (RFC 4518) maps a no-break space or an em
    space to a space and ignores it at the ends, so these still find Alice, which is why the hooks
    refuse such identifiers before any lookup."""
    nfc = "zoë.ångström@example.com"
    nfd = unicodedata.normalize("NFD", nfc)
    spaced = ["alice.wong@example.com\u00a0", "\u2003alice.wong@example.com", "alice.wong@example.com\x1f"]
    with RecordingRelay(slapd.port) as relay, opened(relay.url) as directory:
        # lookup(), not find_user(): a hook's UserQuery already trims and lower-cases the identifier
        assert directory.lookup(nfc, frozenset(), {}) is None and directory.lookup(nfd, frozenset(), {}) is None
        for identifier in spaced:
            directory.lookup(identifier, frozenset(), {})
        sent = relay.sent
    assert nfc != nfd and sent.count(nfc.encode()) == 1 and sent.count(nfd.encode()) == 1
    for identifier in spaced:
        assert sent.count(identifier.encode()) == 1, ascii(identifier)


@pytest.mark.parametrize("start_tls", [True, False])
def test_requests_are_not_held_back_by_nagle(slapd: Slapd, start_tls: bool) -> None:
    """TCP_NODELAY on every directory socket, TLS or not: with Nagle's algorithm, the bind after a
    TLS 1.3 handshake waited for slapd's delayed ACK (43 ms against 2.6 ms, bench/password_timing.py)."""
    url = slapd.url if start_tls else slapd.ldaps_url
    search = UserSearch(base_dn="ou=people,dc=example,dc=com")
    config = DirectoryConfig(urls=(url,), user_search=search, start_tls=start_tls, ca_file=str(slapd.ca_file))
    conn = new_connection(Server(config.servers[0], config), config, None, None)
    open_session(conn, config)
    try:
        assert conn.socket.version() is not None  # TLS: the socket ldap3 writes to is the TLS one
        assert conn.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        conn.unbind()
