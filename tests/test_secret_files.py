"""Credential files read again when they change (service/secret_files.py), on real files laid out and
swapped the way the kubelet does it (tests/support/kubelet.py), with a clock the test moves: a new value
is taken at the first use after the check interval, never from a partial read; an empty, unreadable,
non-UTF-8 or half-written file keeps the previous value and is reported once; the header secret check
accepts what the files hold now and names the source that accepted a call."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from support.fakes import FakeClock
from support.kubelet import MountedSecret

from service.auth import AuthRefusal, SecretVerifier
from service.demo.slapd import make_ca
from service.secret_files import Fixed, SecretFile, SecretFileError, Unusable, ca_bundle_problem

INTERVAL = 2.0


class Reports:
    """A FileObserver that keeps what it was told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def accepted(self, name: str, changed: bool) -> None:
        self.events.append((name, "changed" if changed else "usable_again"))

    def unusable(self, name: str, reason: Unusable) -> None:
        self.events.append((name, reason.value))


def watched(path: str, clock: FakeClock, **options: float) -> tuple[SecretFile, Reports]:
    file = SecretFile(path, "auth.secret_files[0]", interval=INTERVAL, clock=clock, **options)  # type: ignore[arg-type]
    reports = Reports()
    file.watch(reports)
    return file, reports


def test_a_swapped_secret_is_taken_at_the_first_use_after_the_interval(tmp_path: Path) -> None:
    clock = FakeClock()
    secret = MountedSecret(tmp_path / "secret", {"hook": "secret-A\n"})
    file, reports = watched(secret.path("hook"), clock)
    assert (file.read().value, file.read().generation) == ("secret-A", 0)  # line end dropped

    secret.update({"hook": "secret-B"})
    clock.advance(INTERVAL - 0.01)
    assert file.read().value == "secret-A"  # not looked at yet
    clock.advance(0.01)
    assert (file.read().value, file.read().generation) == ("secret-B", 1)
    assert reports.events == [("auth.secret_files[0]", "changed")]


def test_between_two_checks_the_file_is_not_even_looked_at(tmp_path: Path) -> None:
    """A use costs a clock comparison: the file can vanish and nothing notices before the interval."""
    clock = FakeClock()
    path = tmp_path / "secret"
    path.write_text("secret-A")
    file, reports = watched(str(path), clock)
    path.unlink()
    clock.advance(INTERVAL / 2)
    assert file.read().value == "secret-A" and reports.events == []
    clock.advance(INTERVAL / 2)
    assert file.read().value == "secret-A"  # looked at: unreadable, the value in use kept
    assert reports.events == [("auth.secret_files[0]", "unreadable")]


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "empty"), (b"\n\r\n", "empty"), (b"\xff\xfesecret", "not_utf8"), (b"x" * (1 << 20 + 1), "invalid")],
)
def test_an_unusable_new_content_keeps_the_previous_value_reported_once(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    clock = FakeClock()
    secret = MountedSecret(tmp_path / "secret", {"hook": "secret-A"})
    file, reports = watched(secret.path("hook"), clock)
    secret.update({"hook": content})
    for _ in range(3):  # the same state of the file is reported once, however often it is looked at
        clock.advance(INTERVAL)
        assert file.read() == file.read() and file.read().value == "secret-A"
    assert reports.events == [("auth.secret_files[0]", reason)]
    assert file.read().generation == 0
    secret.update({"hook": "secret-C"})
    clock.advance(INTERVAL)
    assert (file.read().value, file.read().generation) == ("secret-C", 1)
    assert reports.events[-1] == ("auth.secret_files[0]", "changed")


def test_a_file_restored_to_the_value_in_use_is_usable_again_without_a_change(tmp_path: Path) -> None:
    clock = FakeClock()
    secret = MountedSecret(tmp_path / "secret", {"hook": "secret-A"})
    file, reports = watched(secret.path("hook"), clock)
    secret.update({"hook": ""})
    clock.advance(INTERVAL)
    file.read()
    secret.update({"hook": "secret-A\n"})  # a new file, the same value (the kubelet swaps every key at once)
    clock.advance(INTERVAL)
    assert file.read().generation == 0
    assert [event for _, event in reports.events] == ["empty", "usable_again"]


def test_a_half_written_file_is_never_taken(tmp_path: Path) -> None:
    """Written in place (an editor, ``echo new > file``) in two writes: after the first, half of it is
    on disk, whole by any stat, while the writer is still at work. A file changed in place is taken only
    once it has been still for ``settle`` seconds, so the half is never the value; the whole is."""
    clock = FakeClock()
    path = tmp_path / "secret"
    path.write_text("secret-A")
    old = time.time() - 3600
    os.utime(path, (old, old))  # written long ago
    file, reports = watched(str(path), clock, settle=1.0)
    with path.open("w") as writer:
        writer.write("secret-")
        writer.flush()  # half of it on disk
        clock.advance(INTERVAL)
        assert file.read().value == "secret-A"  # seen changed in place: to be still for 1 s first
        clock.advance(0.6)
        writer.write("B-the-rest")
    clock.advance(0.4)
    assert file.read().value == "secret-A"  # changed again meanwhile: still for 0 s
    clock.advance(1.0)
    assert (file.read().value, file.read().generation) == ("secret-B-the-rest", 1)
    assert reports.events == [("auth.secret_files[0]", "changed")]


def test_a_file_that_does_not_hold_what_its_size_says_is_a_partial_read(tmp_path: Path) -> None:
    """A read that does not end where the file's size says (here a /proc file, size 0 with content)
    is refused as ``changing``: the value in use stays."""
    clock = FakeClock()
    target = tmp_path / "real"
    target.write_text("secret-A")
    link = tmp_path / "secret"
    link.symlink_to(target)
    file, reports = watched(str(link), clock)
    swap = tmp_path / "swap"
    swap.symlink_to("/proc/self/status")
    swap.rename(link)
    clock.advance(INTERVAL)
    assert file.read().value == "secret-A"
    assert reports.events == [("auth.secret_files[0]", "changing")]
    with pytest.raises(SecretFileError, match="kept changing while it was read"):
        SecretFile(str(link), "x")


def test_refresh_now_looks_at_once_and_says_whether_the_value_changed(tmp_path: Path) -> None:
    clock = FakeClock()
    secret = MountedSecret(tmp_path / "secret", {"bind-password": "password-A"})
    file, _ = watched(secret.path("bind-password"), clock)
    assert file.refresh_now() is None
    secret.update({"bind-password": "password-B"})
    fresh = file.refresh_now()
    assert fresh is not None and (fresh.value, fresh.generation) == ("password-B", 1)
    assert file.refresh_now() is None
    assert file.read() is fresh
    assert "password" not in repr(fresh)  # a reading's repr never shows its value


def test_a_ca_bundle_is_taken_only_whole(tmp_path: Path) -> None:
    first, second = make_ca(tmp_path / "ca", "first CA"), make_ca(tmp_path / "ca", "second CA")
    one, two = first.cert_file.read_text(), second.cert_file.read_text()
    clock = FakeClock()
    secret = MountedSecret(tmp_path / "ldap-ca", {"ca.crt": one})
    file = SecretFile(secret.path("ca.crt"), "directory.ca_file", validate=ca_bundle_problem, clock=clock)
    reports = Reports()
    file.watch(reports)
    for broken in (one + two[: len(two) // 2], "not a certificate"):
        secret.update({"ca.crt": broken})
        clock.advance(INTERVAL)
        assert file.read().value == one.rstrip("\n")
    assert [event for _, event in reports.events] == ["invalid", "invalid"]
    secret.update({"ca.crt": one + two})  # the usual rotation: the new CA beside the old one
    clock.advance(INTERVAL)
    assert file.read().value == (one + two).rstrip("\n")
    with pytest.raises(SecretFileError, match="is not a PEM bundle of certificates"):
        SecretFile(str(tmp_path / "ca" / "first-ca.key"), "directory.ca_file", validate=ca_bundle_problem)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "is empty"), (b"\xff", "is not UTF-8 text"), (None, "cannot read"), ("fifo", "is not a regular file")],
)
def test_at_start_an_unusable_file_is_an_error_naming_the_path(
    tmp_path: Path, content: bytes | str | None, message: str
) -> None:
    path = tmp_path / "secret"
    if content == "fifo":
        os.mkfifo(path)  # opening it would wait for a writer: never opened
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(SecretFileError, match=f"{path}.* {message}|{message} {path}"):
        SecretFile(str(path), "auth.secret_files[0]")


def test_a_fifo_swapped_in_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "secret"
    path.write_text("secret-A")
    file, reports = watched(str(path), clock)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fifo.rename(path)
    clock.advance(INTERVAL)
    assert file.read().value == "secret-A"
    assert reports.events == [("auth.secret_files[0]", "invalid")]


def test_the_header_secret_check_accepts_what_the_files_hold_now(tmp_path: Path) -> None:
    """The documented rotation with two files (current, next) and a Secret edit at each step; every
    accepted call names its source."""
    clock = FakeClock()
    secret = MountedSecret(tmp_path / "secret", {"current": "secret-A", "next": "secret-A"})
    keys = ("current", "next")
    files = [SecretFile(secret.path(key), f"auth.secret_files[{i}]", clock=clock) for i, key in enumerate(keys)]
    verifier = SecretVerifier("Authorization", [Fixed("env-secret", "auth.secret_env[0]"), *files])
    assert verifier.sources == ("auth.secret_env[0]", "auth.secret_files[0]", "auth.secret_files[1]")
    assert verifier.check(["secret-A"]) == (None, "auth.secret_files[0]")  # the first that matches
    assert verifier.check(["env-secret"]) == (None, "auth.secret_env[0]")

    secret.update({"current": "secret-A", "next": "secret-B"})  # 1. add the new secret
    clock.advance(INTERVAL)
    assert verifier.check(["secret-B"]) == (None, "auth.secret_files[1]")
    assert verifier.check(["secret-A"]) == (None, "auth.secret_files[0]")

    secret.update({"current": "secret-B", "next": "secret-B"})  # 3. Okta switched: retire the old one
    clock.advance(INTERVAL)
    assert verifier.check(["secret-A"]) == (AuthRefusal.MISMATCH, None)
    assert verifier.check(["secret-B"]) == (None, "auth.secret_files[0]")
    assert verifier.why_refused(["secret-B"]) is None

    secret.update({"current": "", "next": "secret-B"})  # a mistake: an empty key keeps its last value
    clock.advance(INTERVAL)
    assert verifier.check(["secret-B"]) == (None, "auth.secret_files[0]")
    assert verifier.check([""]) == (AuthRefusal.MISMATCH, None)
