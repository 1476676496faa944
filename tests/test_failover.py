"""Server health and the connection pool over time: a failed server sits out its cooldown and is used
again after it, a refused bind is not a reason to fail over, old connections are replaced, and a
saturated pool shows as the ``pool_wait`` stage. Watched through the directory's own observer seam (the
one telemetry uses) and the service's metrics, against real slapd processes."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from okta_spec import example, registration_for
from support.answers import unchanged
from support.config import directory_config, service_config
from support.servers import HangingServer

from service.demo.slapd import SERVICE_BIND_DN, SERVICE_BIND_PASSWORD, Slapd, demo_ldif
from service.directory import Directory, DirectoryConfig, DirectoryError, UserQuery, UserSearch

ATTRIBUTES = frozenset({"mail", "title"})


class ServerLog:
    """Records every LDAP operation with its server and outcome, in order."""

    def __init__(self) -> None:
        self.operations: list[tuple[str, str, str]] = []  # (operation, server, "ok" or error kind)
        self.servers_up: dict[str, bool] = {}
        self.passwords: list[tuple[str, str]] = []  # ("refused", reason) or ("accepted", source)

    @contextmanager
    def operation(self, name: str, server: str) -> Iterator[None]:
        try:
            yield
        except DirectoryError as error:
            self.operations.append((name, server, error.kind))
            raise
        self.operations.append((name, server, "ok"))

    def server_up(self, server: str, up: bool) -> None:
        self.servers_up[server] = up

    def password_refused(self, source: str, reason: str) -> None:
        self.passwords.append(("refused", reason))

    def password_accepted(self, source: str) -> None:
        self.passwords.append(("accepted", source))

    def count(self, name: str, server: str, outcome: str | None = None) -> int:
        return sum(1 for op, srv, out in self.operations if op == name and srv == server and outcome in (None, out))

    def by_server(self, name: str) -> Counter[str]:
        return Counter(server for op, server, _ in self.operations if op == name)


def make_directory(*urls: str, log: ServerLog, password: str = SERVICE_BIND_PASSWORD, **options: object) -> Directory:
    settings: dict[str, object] = {
        "connect_timeout_seconds": 0.5,
        "operation_timeout_seconds": 2.0,
        "pool_size": 4,
        "server_cooldown_seconds": 30.0,
        **options,
    }
    config = DirectoryConfig(
        urls=urls,
        user_search=UserSearch(base_dn="ou=people,dc=example,dc=com", filter="(objectClass=inetOrgPerson)"),
        bind_dn=SERVICE_BIND_DN,
        bind_password_env="UNUSED",
        **settings,  # type: ignore[arg-type]
    )
    return Directory(config, password, log)


def find(directory: Directory, identifier: str = "rosario.jones@example.com", budget: float = 3.0):
    async def run():
        lookup = await directory.find_user(UserQuery.of(identifier, ATTRIBUTES, {}), time.monotonic() + budget)
        return lookup.entry

    return asyncio.run(run())


def name(url: str) -> str:
    return url.split("://", 1)[1]


@pytest.fixture
def primary(tmp_path: Path) -> Iterator[Slapd]:
    """A directory of its own, to stop and start (the shared one serves as the secondary)."""
    with Slapd(tmp_path / "primary", demo_ldif()) as server:
        yield server


def test_failed_server_sits_out_its_cooldown_then_takes_traffic_back(primary: Slapd, slapd: Slapd) -> None:
    """Every lookup opens a connection (``connection_max_age_seconds`` is tiny and the pool holds four), so
    without the cooldown each lookup would go back to the primary as soon as it is up again."""
    cooldown = 2.0
    log = ServerLog()
    directory = make_directory(
        primary.url, slapd.url, log=log, server_cooldown_seconds=cooldown, connection_max_age_seconds=0.001
    )
    try:
        primary.stop()
        failed_at = time.monotonic()
        assert find(directory) is not None  # failed over to the secondary
        assert log.count("connect", name(primary.url), "connect") == 1
        primary.start()  # back at once: only the cooldown keeps lookups away from it

        during = 0
        while True:
            entry = find(directory)
            if time.monotonic() >= failed_at + cooldown:
                break  # this lookup may have opened its connection after the cooldown
            assert entry is not None
            during += 1
        assert during >= 3, "the machine was too slow to look up during the cooldown"
        assert log.count("connect", name(primary.url)) == 1, "the failed server was tried during its cooldown"
        assert log.by_server("search")[name(slapd.url)] >= during + 1

        deadline = time.monotonic() + 10
        while log.by_server("search")[name(primary.url)] == 0:  # failback
            assert time.monotonic() < deadline, f"no failback after the cooldown: {log.operations[-6:]}"
            assert find(directory) is not None
        searches_before = log.by_server("search")
        for _ in range(3):
            assert find(directory) is not None
        assert log.by_server("search")[name(primary.url)] == searches_before[name(primary.url)] + 3
    finally:
        directory.close()


def test_concurrent_lookups_with_a_server_down_try_it_once(slapd: Slapd, closed_port_url: str) -> None:
    """A pool larger than one: lookups in parallel each open their own connection; after the first
    failure, the dead server is skipped by all of them."""
    log = ServerLog()
    directory = make_directory(closed_port_url, slapd.url, log=log, pool_size=4)

    async def burst() -> list[object]:
        deadline = time.monotonic() + 5
        first = await directory.find_user(UserQuery.of("rosario.jones@example.com", ATTRIBUTES, {}), deadline)
        alice = UserQuery.of("alice.wong@example.com", ATTRIBUTES, {})
        rest = [directory.find_user(alice, deadline) for _ in range(12)]
        return [lookup.entry for lookup in (first, *await asyncio.gather(*rest))]

    try:
        results = asyncio.run(burst())
    finally:
        directory.close()
    assert all(entry is not None for entry in results)
    assert log.count("connect", name(closed_port_url)) == 1
    assert log.count("bind", name(slapd.url), "ok") >= 2  # several connections were opened after the failure


def test_a_refused_bind_does_not_fail_over(slapd: Slapd) -> None:
    """Wrong credentials are the same on every server: trying the next one would only lock the account
    faster. The lookup fails with ``bind_failed`` and the second server is never contacted; nor is the
    refused password sent again (one try per value, :mod:`service.directory.service_account`)."""
    log = ServerLog()
    # the same slapd under two names: the LDAPS port would accept the bind if it were tried
    directory = make_directory(slapd.url, slapd.ldaps_url, log=log, password="not-the-password")
    try:
        with pytest.raises(DirectoryError) as raised:
            find(directory)
        assert raised.value.kind == "bind_failed"
        with pytest.raises(DirectoryError) as again:
            find(directory)
        assert again.value.kind == "bind_failed"  # not a cooldown: the server itself is fine
    finally:
        directory.close()
    assert log.count("bind", name(slapd.url), "bind_failed") == 1  # the second lookup sent nothing
    assert log.by_server("connect")[name(slapd.ldaps_url)] == 0
    assert log.passwords == [("refused", "invalid_credentials")]


def test_connections_older_than_max_age_are_replaced(slapd: Slapd) -> None:
    log = ServerLog()
    max_age = 0.5
    directory = make_directory(slapd.url, log=log, pool_size=1, connection_max_age_seconds=max_age)
    try:
        opened_at = time.monotonic()
        for _ in range(3):
            assert find(directory) is not None
        young = time.monotonic() - opened_at < max_age
        binds_while_young = log.count("bind", name(slapd.url), "ok")
        while time.monotonic() - opened_at <= max_age + 0.05:
            time.sleep(0.05)  # the connection's age is the point of this test
        assert find(directory) is not None
        assert find(directory) is not None
    finally:
        directory.close()
    if young:  # on a very slow machine the three lookups may outlive max_age themselves
        assert binds_while_young == 1
    assert log.count("bind", name(slapd.url), "ok") == binds_while_young + 1  # replaced once, then reused
    assert log.count("search", name(slapd.url), "ok") == 5


def test_default_max_age_keeps_reusing(slapd: Slapd) -> None:
    log = ServerLog()
    directory = make_directory(slapd.url, log=log, pool_size=1)
    try:
        for _ in range(5):
            assert find(directory) is not None
    finally:
        directory.close()
    assert log.count("bind", name(slapd.url)) == 1


# -- through the service ------------------------------------------------------------------------


def test_saturated_pool_is_the_pool_wait_stage(hanging_directory: HangingServer, start_in_process) -> None:
    """One connection, two registrations (two people) at once: the first waits on a bind that never answers, the
    second never gets a worker. Both answer at the deadline; the second says ``pool_wait``."""
    url = hanging_directory.url
    config = service_config(url, directory=directory_config(url, pool_size=1, operation_timeout_seconds=10.0))
    config["hooks"]["registration"]["deadline_seconds"] = 0.6
    service = start_in_process(config)

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(service.post, "registration", example("registration"))
        time.sleep(0.1)  # let the first take the only worker
        # another person: two calls for one person would share one lookup
        second = pool.submit(service.post, "registration", registration_for("carol.chen@example.com"))
        answers = [first.result(timeout=10), second.result(timeout=10)]

    stages = sorted(unchanged(answer.json())["deadlineStage"] for answer in answers)
    assert stages == ["bind", "pool_wait"]
    assert service.metric('okta_hook_deadline_exceeded_total{hook_type="registration",stage="pool_wait"}') == 1
    assert service.metric('okta_hook_deadline_exceeded_total{hook_type="registration",stage="bind"}') == 1


def test_refused_bind_through_the_hook_is_counted_and_answered(slapd: Slapd, start_in_process) -> None:
    service = start_in_process(service_config(slapd.url), env={"LDAP_BIND_PASSWORD": "not-the-password"})

    for _ in range(2):
        diagnostics = unchanged(service.post("token", example("token")).json())
        assert (diagnostics["outcome"], diagnostics["error"]) == ("fallback_ldap_error", "bind_failed")
    # refused once (the prewarm's bind or a lookup's; one waiting for it may count too): not sent again
    assert (
        1
        <= service.metric('okta_hook_ldap_errors_total{directory="default",error_type="bind_failed",operation="bind"}')
        <= 2
    )
    assert service.metric('okta_hook_ldap_bind_password_refused{directory="default"}') == 1


def test_probing_the_servers_leaves_their_health_alone(closed_port_url: str) -> None:
    """``check-config --probe`` binds to every server, then looks the sample up: a failure it saw must
    not put the server in a cooldown that the lookup would then report instead of the real error."""
    log = ServerLog()
    directory = make_directory(closed_port_url, log=log)
    try:
        failures = directory.probe_servers()
        with pytest.raises(DirectoryError) as raised:
            find(directory)
    finally:
        directory.close()
    assert failures[name(closed_port_url)].kind == "connect"
    assert str(raised.value) == "could not connect to the directory"  # not "in its failure cooldown"
    assert log.count("connect", name(closed_port_url), "connect") == 2  # the probe's, then the lookup's
