"""Rotating credentials without a restart (issue 24), against a real slapd, with the secrets mounted the
way the kubelet mounts a Secret (tests/support/kubelet.py: a ``..data`` symlink swapped atomically):

- the hook secret A -> B through the documented two-file rotation, on the running service;
- the service account's password changed in slapd and in its file, then slapd restarted: lookups work
  at once, and the refused bind the re-read fixed is no LDAP error;
- the directory changed first, the file later: lookups work again within one check interval of the swap;
- a wrong new password is reported (log, gauge) and tried once, never locking the account (ppolicy),
  readiness unchanged; SIGHUP allows one more try once the directory has it;
- the CA bundle: a rotated one is used for new connections, a broken one is not taken.

The time from a file swap to the new value being used is measured (``swap_to_use``) and printed."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ldap3
import pytest
from connection_support import metric_value
from hostile_support import captured_logs
from in_process import InProcessService
from okta_spec import example
from password_import_support import MAX_FAILURES, POLICY_DN, PolicySlapd, password_ldif, ssha
from support.answers import unchanged
from support.config import directory_config, service_config
from support.kubelet import MountedSecret

from service.demo.slapd import SERVICE_BIND_DN, SERVICE_BIND_PASSWORD, Slapd, make_ca
from service.directory import Directory, DirectoryConfig, DirectoryError, UserQuery, UserSearch
from service.secret_files import CHECK_INTERVAL_SECONDS, SecretFile

#: A check interval, plus what a loaded shared machine adds to a poll loop.
WITHIN_ONE_CHECK = CHECK_INTERVAL_SECONDS + 1.5
REFUSED_GAUGE = 'okta_hook_ldap_bind_password_refused{directory="default"}'
LDAP_OPERATIONS = "okta_hook_ldap_operation_duration_seconds_count"


@pytest.fixture
def ldap(tmp_path: Path) -> Iterator[PolicySlapd]:
    """A slapd of the test's own whose service account is under ppolicy's lockout (3 failed binds)."""
    with PolicySlapd(tmp_path / "ldap", password_ldif()) as server:
        with admin(server) as connection:
            connection.modify(SERVICE_BIND_DN, {"pwdPolicySubentry": [(ldap3.MODIFY_ADD, [POLICY_DN])]})
            assert connection.result["result"] == 0, connection.result
        yield server


@contextmanager
def admin(server: Slapd) -> Iterator[ldap3.Connection]:
    connection = ldap3.Connection(
        ldap3.Server("127.0.0.1", port=server.port), server.admin_dn, server.admin_password, auto_bind=True
    )
    try:
        yield connection
    finally:
        connection.unbind()


def set_service_password(server: Slapd, password: str) -> None:
    """What the directory's administrator does: a new password for the service account."""
    with admin(server) as connection:
        connection.modify(SERVICE_BIND_DN, {"userPassword": [(ldap3.MODIFY_REPLACE, [ssha(password)])]})
        assert connection.result["result"] == 0, connection.result


def lockout_state(server: Slapd) -> dict[str, list[Any]]:
    """ppolicy's record of failed binds and lock on the service account."""
    with admin(server) as connection:
        connection.search(
            SERVICE_BIND_DN, "(objectClass=*)", ldap3.BASE, attributes=["pwdFailureTime", "pwdAccountLockedTime"]
        )
        return {name: list(values) for name, values in connection.response[0]["attributes"].items()}


def uncached(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the token hook's cache and replay memory off: each call asks the directory."""
    off = ("fresh_seconds", "stale_seconds", "negative_seconds", "replay_seconds")
    config["hooks"]["token"]["cache"] = dict.fromkeys(off, 0)
    return config


def file_config(server: Slapd, password_file: str, **directory: Any) -> dict[str, Any]:
    """The demo configuration with the bind password from ``password_file``, the token hook uncached."""
    settings = {"bind_password_env": None, "bind_password_file": password_file, **directory}
    return uncached(service_config(server.url, directory=directory_config(server.url, **settings)))


def enriched(service: InProcessService) -> bool:
    """A token hook call (no cache) answered with the directory's data."""
    response = service.post("token", example("token"))
    assert response.status_code == 200
    return "commands" in response.json()


def swap_to_use(used: Callable[[], bool], timeout: float = 10.0) -> float:
    """Seconds until ``used()`` holds (polled every 20 ms), measured from now (just after a swap)."""
    started = time.monotonic()
    while not used():
        assert time.monotonic() - started < timeout, f"not used after {timeout} s"
        time.sleep(0.02)
    elapsed = time.monotonic() - started
    print(f"swap to use: {elapsed:.3f} s")
    return elapsed


# -- hook secrets ------------------------------------------------------------------------------------


def test_the_hook_secret_rotates_from_a_to_b_without_a_restart(
    slapd: Slapd, start_in_process: Callable[..., InProcessService], tmp_path: Path
) -> None:
    """The runbook's rotation with two keys of one Secret (``current``, ``next``), one Secret edit per
    step; the accepted-by metric says when the old secret is no longer used."""
    secret = MountedSecret(tmp_path / "secret", {"current": "secret-A", "next": "secret-A"})
    auth = {"header": "Authorization", "secret_files": [secret.path("current"), secret.path("next")]}
    service = start_in_process(service_config(slapd.url, auth=auth))
    accepted = 'okta_hook_auth_accepted_total{{source="auth.secret_files[{}]"}}'

    def status(value: str) -> int:
        return service.post("token", example("token"), secret=value).status_code

    assert (status("secret-A"), status("secret-B")) == (200, 401)
    secret.update({"current": "secret-A", "next": "secret-B"})  # 1. add the new secret
    swap_to_use(lambda: status("secret-B") == 200)
    assert status("secret-A") == 200  # both, until Okta has switched
    used_by_b = service.metric(accepted.format(1))
    assert used_by_b >= 1
    # 2. Okta switched to B: the old secret's source stays flat, the new one's grows
    old = service.metric(accepted.format(0))
    for _ in range(3):
        assert status("secret-B") == 200
    assert (service.metric(accepted.format(0)), service.metric(accepted.format(1))) == (old, used_by_b + 3)

    secret.update({"current": "secret-B", "next": "secret-B"})  # 3. remove the old secret
    swap_to_use(lambda: status("secret-A") == 401)
    assert status("secret-B") == 200
    changed = 'okta_hook_credential_file_reloads_total{{file="auth.secret_files[{}]",result="changed"}}'
    assert (service.metric(changed.format(0)), service.metric(changed.format(1))) == (1, 1)


def test_an_empty_hook_secret_file_keeps_the_secret_in_use(
    slapd: Slapd, start_in_process: Callable[..., InProcessService], tmp_path: Path
) -> None:
    secret = MountedSecret(tmp_path / "secret", {"current": "secret-A"})
    service = start_in_process(
        service_config(slapd.url, auth={"header": "Authorization", "secret_files": [secret.path("current")]})
    )
    unusable = 'okta_hook_credential_file_unusable{file="auth.secret_files[0]"}'
    with captured_logs() as events:
        secret.update({"current": "\n"})
        swap_to_use(
            lambda: service.post("token", example("token")).status_code == 200 and service.metric(unusable) == 1
        )
    assert service.post("token", example("token"), secret="secret-A").status_code == 200
    assert service.post("token", example("token"), secret="").status_code == 401
    refused = [e for e in events if e["event"] == "credential_file_refused"]
    assert refused == [
        {"event": "credential_file_refused", "file": "auth.secret_files[0]", "reason": "empty",
         "kept": "the previous value", "log_level": "warning"}
    ]  # fmt: skip
    assert service.metric('okta_hook_credential_file_reloads_total{file="auth.secret_files[0]",result="empty"}') == 1


# -- the service account's password -----------------------------------------------------------------


def test_password_changed_in_the_directory_and_the_file_then_a_directory_restart(
    ldap: PolicySlapd, start_in_process: Callable[..., InProcessService], tmp_path: Path
) -> None:
    """The usual rotation: the directory first, the Secret right after; then every pooled connection
    dies (a restart). The first bind still has the old password in hand (the file is looked at every
    few seconds): refused, the file read again at once, the bind retried with the new one, all within
    one ``bind`` operation: no LDAP error, no lookup lost."""
    secret = MountedSecret(tmp_path / "secret", {"bind-password": SERVICE_BIND_PASSWORD})
    service = start_in_process(file_config(ldap, secret.path("bind-password")))
    assert enriched(service)

    set_service_password(ldap, "password-B")
    secret.update({"bind-password": "password-B"})
    ldap.restart()
    started = time.monotonic()
    assert enriched(service)  # the first call after the restart
    print(f"directory restart to an enriched answer: {time.monotonic() - started:.3f} s")
    for _ in range(5):
        assert enriched(service)
    assert metric_value(service.metrics(), "okta_hook_ldap_errors_total", operation="bind") == 0
    assert service.metric(REFUSED_GAUGE) == 0


def test_the_directory_first_then_the_file_minutes_later(
    ldap: PolicySlapd, start_in_process: Callable[..., InProcessService], tmp_path: Path
) -> None:
    """The Secret reaches the pod after the directory changed and restarted: lookups fail meanwhile (the
    old password refused once, then not sent again), and work again within one check interval of the
    swap, with no restart."""
    secret = MountedSecret(tmp_path / "secret", {"bind-password": SERVICE_BIND_PASSWORD})
    service = start_in_process(file_config(ldap, secret.path("bind-password")))
    assert enriched(service)
    set_service_password(ldap, "password-B")
    ldap.restart()
    for _ in range(4):
        assert not enriched(service)
    assert unchanged(service.post("token", example("token")).json())["error"] == "bind_failed"
    assert service.metric(REFUSED_GAUGE) == 1
    # the old password refused once (or twice: a health check binding at the same moment), not per call
    assert 1 <= len(lockout_state(ldap)["pwdFailureTime"]) <= 2

    secret.update({"bind-password": "password-B"})
    elapsed = swap_to_use(lambda: enriched(service))
    assert elapsed < WITHIN_ONE_CHECK
    assert service.metric(REFUSED_GAUGE) == 0


def test_a_wrong_new_password_is_reported_tried_once_and_locks_nothing(
    ldap: PolicySlapd, start_in_process: Callable[..., InProcessService], tmp_path: Path
) -> None:
    """A wrong value in the file: tried once (by the next new connection, here a health check's),
    refused, reported, and never sent again, whatever the lookups and health checks; the account stays
    unlocked (ppolicy locks it at 3 failures). Bound connections keep serving; once they are gone,
    lookups fail without a bind. The pods stay ready: every pod has the same password, and none ready
    would be no answer at all. Fixing the file ends it."""
    secret = MountedSecret(tmp_path / "secret", {"bind-password": SERVICE_BIND_PASSWORD})
    service = start_in_process(file_config(ldap, secret.path("bind-password"), health_check_interval_seconds=0.3))
    assert enriched(service)

    with captured_logs() as events:
        secret.update({"bind-password": "a-wrong-password"})
        swap_to_use(lambda: service.metric(REFUSED_GAUGE) == 1)
        assert enriched(service)  # the pooled connection, bound with the old password, still serves
        ldap.restart()  # now every lookup needs a new connection
        connects = metric_value(service.metrics(), LDAP_OPERATIONS, operation="connect")
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: enriched(service), range(24)))
        time.sleep(CHECK_INTERVAL_SECONDS + 3 * 0.3)  # the file looked at again, more health checks
    assert not any(answers)
    # nothing was even connected for: the refused password is known before a connection is opened
    assert metric_value(service.metrics(), LDAP_OPERATIONS, operation="connect") == connects
    state = lockout_state(ldap)
    assert (len(state["pwdFailureTime"]), state["pwdAccountLockedTime"]) == (1, [])
    assert MAX_FAILURES > 1
    refused = [e for e in events if e["event"] == "ldap_bind_password_refused"]
    assert [(e["source"], e["reason"], e["log_level"]) for e in refused] == [
        ("directory.bind_password_file", "invalid_credentials", "error")
    ]
    assert "a-wrong-password" not in repr(events)
    assert service.client.get(service.ops_url + "/readyz").status_code == 200

    secret.update({"bind-password": SERVICE_BIND_PASSWORD})  # the fix
    elapsed = swap_to_use(lambda: enriched(service))
    assert elapsed < WITHIN_ONE_CHECK
    assert service.metric(REFUSED_GAUGE) == 0


def test_threads_binding_at_once_try_a_new_password_once(ldap: PolicySlapd, tmp_path: Path) -> None:
    """Every pool thread needs a new connection at the moment a wrong password is in the file: one of
    them tries it, the others wait for its result and send nothing (ppolicy counts one failure)."""
    secret = MountedSecret(tmp_path / "secret", {"bind-password": SERVICE_BIND_PASSWORD})
    observer = Binds()
    password = SecretFile(secret.path("bind-password"), "directory.bind_password_file", interval=3600)
    directory = directory_on(ldap, password, observer, pool_size=8)
    try:
        assert lookups(directory, 8) == [True] * 8
        secret.update({"bind-password": "a-wrong-password"})
        assert password.refresh_now() is not None  # in hand, not tried yet
        ldap.restart()  # every pooled connection is gone: eight threads open one each
        assert lookups(directory, 8) == [False] * 8
    finally:
        directory.close()
    state = lockout_state(ldap)
    assert (len(state["pwdFailureTime"]), state["pwdAccountLockedTime"]) == (1, [])
    assert observer.passwords == ["refused invalid_credentials"]


def test_sighup_allows_one_more_try_once_the_directory_has_the_password(
    ldap: PolicySlapd, start_service: Any, tmp_path: Path
) -> None:
    """The Secret was updated before the directory: the new password was refused and parked. Once the
    administrator has set it in the directory, SIGHUP lets it be tried again (a real process: a signal)."""
    secret = MountedSecret(tmp_path / "secret", {"bind-password": "password-B"})
    service = start_service(file_config(ldap, secret.path("bind-password")))
    assert "commands" not in service.post("token", example("token")).json()
    set_service_password(ldap, "password-B")
    time.sleep(CHECK_INTERVAL_SECONDS + 0.2)
    assert "commands" not in service.post("token", example("token")).json()  # parked: not tried again
    service.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "commands" not in service.post("token", example("token")).json():
        assert time.monotonic() < deadline, service.log()[-3000:]
        time.sleep(0.05)
    assert '"rearmed_bind": true' in service.log()
    assert '"event": "ldap_bind_password_accepted"' in service.log()


# -- the pool: connections bound with the old password are replaced one at a time --------------------


class Binds:
    """A directory observer counting binds and password reports."""

    def __init__(self) -> None:
        self.binds: list[str] = []
        self.passwords: list[str] = []

    @contextmanager
    def operation(self, name: str, server: str) -> Iterator[None]:
        try:
            yield
        except DirectoryError as error:
            if name == "bind":
                self.binds.append(error.kind)
            raise
        if name == "bind":
            self.binds.append("ok")

    def server_up(self, server: str, up: bool) -> None:
        pass

    def background_failed(self, task: str, error: Exception) -> None:
        pass

    def password_refused(self, source: str, reason: str) -> None:
        self.passwords.append(f"refused {reason}")

    def password_accepted(self, source: str) -> None:
        self.passwords.append("accepted")


def directory_on(server: Slapd, password: SecretFile, observer: Binds, pool_size: int = 3) -> Directory:
    config = DirectoryConfig(
        urls=(server.url,),
        user_search=UserSearch(base_dn="ou=people,dc=example,dc=com", filter="(objectClass=inetOrgPerson)"),
        bind_dn=SERVICE_BIND_DN,
        bind_password_file=password.path,
        pool_size=pool_size,
    )
    return Directory(config, password, observer)  # type: ignore[arg-type]


def lookups(directory: Directory, count: int) -> list[bool]:
    mails = ["rosario.jones@example.com", "alice.wong@example.com", "carol.chen@example.com", "john.smith@example.com"]

    async def run() -> list[bool]:
        query = lambda mail: UserQuery.of(mail, frozenset({"mail"}), {})  # noqa: E731
        found = await asyncio.gather(
            *(directory.find_user(query(mails[i % len(mails)]), time.monotonic() + 5) for i in range(count)),
            return_exceptions=True,
        )
        return [not isinstance(lookup, BaseException) and lookup.entry is not None for lookup in found]

    return asyncio.run(run())


def test_only_the_re_read_password_can_fix_a_refused_bind(ldap: PolicySlapd, tmp_path: Path) -> None:
    """The file is looked at only on refusal here (an interval of an hour): the refused bind itself
    re-reads it and binds again with the new value, on the same connection, in the same operation."""
    secret = MountedSecret(tmp_path / "secret", {"bind-password": SERVICE_BIND_PASSWORD})
    observer = Binds()
    directory = directory_on(
        ldap, SecretFile(secret.path("bind-password"), "directory.bind_password_file", interval=3600), observer
    )
    try:
        assert lookups(directory, 1) == [True]
        set_service_password(ldap, "password-B")
        secret.update({"bind-password": "password-B"})
        ldap.restart()
        assert lookups(directory, 1) == [True]
    finally:
        directory.close()
    assert observer.binds == ["ok", "ok"]  # the refusal and its retry are one successful bind
    assert observer.passwords == ["accepted"]


def test_connections_bound_with_the_old_password_are_replaced_one_per_lookup(ldap: PolicySlapd, tmp_path: Path) -> None:
    """Bound sessions survive a password change on slapd (and most directories): nothing needs to be
    dropped at once. Once the new password has bound, each lookup that takes an old connection from
    the pool closes it and binds a new one: a rotation costs a lookup at most one bind."""
    secret = MountedSecret(tmp_path / "secret", {"bind-password": SERVICE_BIND_PASSWORD})
    observer = Binds()
    password = SecretFile(secret.path("bind-password"), "directory.bind_password_file", interval=0.0)
    directory = directory_on(ldap, password, observer, pool_size=3)

    async def prewarmed() -> None:
        checks = await directory.start_background()  # opens the pool's three connections, checks once
        while directory.pool_state()[0] < 3 or len(observer.binds) < 4:
            await asyncio.sleep(0.01)
        checks.cancel()

    try:
        asyncio.run(prewarmed())
        assert observer.binds == ["ok"] * 4  # three pooled connections and a health check's, old password
        set_service_password(ldap, "password-B")
        secret.update({"bind-password": "password-B"})
        assert asyncio.run(directory.check_servers()) == {ldap.url.removeprefix("ldap://"): True}  # binds B
        assert observer.binds == ["ok"] * 5
        for _ in range(4):
            assert lookups(directory, 1) == [True]
        assert observer.binds == ["ok"] * 6  # the first lookup replaced one connection; the next reused it
        assert directory.pool_state()[0] == 3  # the two others, still bound with the old one, stay for now
    finally:
        directory.close()
    assert observer.passwords == ["accepted"]


# -- the CA bundle --------------------------------------------------------------------------------------


def test_a_rotated_ca_bundle_is_used_for_new_connections(
    slapd: Slapd, start_in_process: Callable[..., InProcessService], tmp_path: Path
) -> None:
    """The directory's certificate is signed by a CA the file does not hold yet: TLS fails. The new
    bundle (old CA and new) reaches the pod: new connections trust it. A broken bundle afterwards is
    not taken: connections keep being made with the one in use."""
    other = make_ca(tmp_path / "other", "another CA").cert_file.read_text()
    right = Path(slapd.ca_file).read_text()
    bundle = MountedSecret(tmp_path / "ldap-ca", {"ca.crt": other})
    url = slapd.ldaps_url
    directory = directory_config(url, ca_file=bundle.path("ca.crt"), server_cooldown_seconds=0.2)
    service = start_in_process(uncached(service_config(url, directory=directory)))
    assert not enriched(service)
    assert metric_value(service.metrics(), "okta_hook_ldap_errors_total", error_type="tls") >= 1

    bundle.update({"ca.crt": other + right})
    swap_to_use(lambda: enriched(service))

    bundle.update({"ca.crt": right[: len(right) // 2]})  # cut in the middle of the certificate
    unusable = 'okta_hook_credential_file_unusable{file="directory.ca_file"}'
    ldap_up = f'okta_hook_ldap_up{{directory="default",server="{url.removeprefix("ldaps://")}"}}'
    swap_to_use(lambda: service.metric(unusable) == 1)
    time.sleep(2.5)  # health checks (every second) open new connections meanwhile
    assert service.metric(ldap_up) == 1
    assert enriched(service)
