"""``okta-ldap-hook check-config --probe`` as a deploy gate: exit 0 only when the configuration, its
secrets and the directory all work; 1 when the probe fails, 2 for a configuration error. Against the
real slapd, through the command's entry point in-process, and as the real command where the exit
status itself is the point."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from support.config import DEMO_CONFIG, REPO
from support.servers import HangingServer

from service import cli
from service.demo.run import several_document, several_passwords
from service.demo.slapd import SERVICE_BIND_PASSWORD, Slapd

ENV = {"PATH": "/usr/bin:/bin", "OKTA_HOOK_SECRET": "s", "LDAP_BIND_PASSWORD": SERVICE_BIND_PASSWORD}


def config_file(tmp_path: Path, *urls: str, **directory: object) -> Path:
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    config["directory"]["urls"] = list(urls)
    config["directory"].update(directory)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def check(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """``check(path, *args, env=ENV)``: ``check-config PATH --probe ARGS`` through the command's entry
    point, in this process, with exactly the secrets of ``env`` in the environment."""

    def run(path: Path, *args: str, env: dict[str, str] = ENV) -> Result:
        for name in ("OKTA_HOOK_SECRET", "LDAP_BIND_PASSWORD"):
            if name in env:
                monkeypatch.setenv(name, env[name])
            else:
                monkeypatch.delenv(name, raising=False)
        capsys.readouterr()
        code = cli.main(["check-config", str(path), "--probe", *args])
        output = capsys.readouterr()
        return Result(code, output.out, output.err)

    return run


def run_command(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The real command, for what only a process shows: its exit status."""
    return subprocess.run(
        [sys.executable, "-m", "service", *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=60
    )


def test_the_command_exits_with_the_probe_result(slapd: Slapd, tmp_path: Path) -> None:
    path = config_file(tmp_path, slapd.url)
    good = run_command("check-config", str(path), "--probe", env=ENV)
    bad = run_command("check-config", str(path), "--probe", env={**ENV, "LDAP_BIND_PASSWORD": "wrong"})

    assert good.returncode == 0, good.stdout + good.stderr
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert bad.stdout.splitlines()[-1] == "probe: FAILED"


def test_probe_binds_and_finds_the_sample(slapd: Slapd, tmp_path: Path, check) -> None:
    result = check(config_file(tmp_path, slapd.url), "--sample", "rosario.jones@example.com")

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("configuration and secrets valid; hooks: registration, token, saml, user_import")
    assert f"{slapd.url.removeprefix('ldap://')}: bind ok" in lines
    assert any(line.startswith("sample: found one entry") for line in lines)
    assert lines[-1] == "probe: ok"


def test_sample_not_found_fails(slapd: Slapd, tmp_path: Path, check) -> None:
    result = check(config_file(tmp_path, slapd.url), "--sample", "nobody@example.com")

    assert result.returncode == 1
    assert "sample: no entry matches" in result.stdout
    assert result.stdout.splitlines()[-1] == "probe: FAILED"


def test_refused_bind_fails_the_probe(slapd: Slapd, tmp_path: Path, check) -> None:
    result = check(config_file(tmp_path, slapd.url), env={**ENV, "LDAP_BIND_PASSWORD": "wrong-password-value"})

    assert result.returncode == 1, result.stdout
    assert f"{slapd.url.removeprefix('ldap://')}: bind_failed: bind refused with LDAP result code 49" in result.stdout
    assert "the bind was refused" in result.stdout
    assert result.stdout.splitlines()[-1] == "probe: FAILED"
    assert "wrong-password-value" not in result.stdout + result.stderr


def test_no_server_answering_fails_the_probe_without_a_cooldown_of_its_own(
    closed_port_url: str, hanging_directory: HangingServer, tmp_path: Path, check
) -> None:
    path = config_file(tmp_path, closed_port_url, hanging_directory.url, operation_timeout_seconds=0.5)
    result = check(path, "--sample", "rosario.jones@example.com")

    assert result.returncode == 1, result.stdout
    assert f"{closed_port_url.removeprefix('ldap://')}: connect: could not connect" in result.stdout
    assert f"{hanging_directory.url.removeprefix('ldap://')}: timeout:" in result.stdout
    assert "no server accepted the bind" in result.stdout
    assert "cooldown" not in result.stdout  # the probe reports what it saw, not what it caused


def test_sample_is_looked_up_although_the_probe_saw_a_server_fail(
    slapd: Slapd, closed_port_url: str, tmp_path: Path, check
) -> None:
    """One server down of two: a warning, and the lookup still tries (and fails over) normally."""
    result = check(config_file(tmp_path, closed_port_url, slapd.url), "--sample", "rosario.jones@example.com")

    assert result.returncode == 0, result.stdout
    assert "warning: 1 of 2 directory servers failed" in result.stdout
    assert any(line.startswith("sample: found one entry") for line in result.stdout.splitlines())


def test_a_missing_secret_names_the_file_and_is_not_called_valid(slapd: Slapd, tmp_path: Path, check) -> None:
    path = config_file(tmp_path, slapd.url)
    result = check(path, env={"PATH": "/usr/bin:/bin", "OKTA_HOOK_SECRET": "s"})

    assert result.returncode == 2
    assert "valid" not in result.stdout
    assert (
        f"configuration error: {path}: directory.bind_password_env: environment variable LDAP_BIND_PASSWORD"
        in result.stderr
    )


def test_an_unreadable_secret_file_names_the_config_file(slapd: Slapd, tmp_path: Path, check) -> None:
    path = config_file(tmp_path, slapd.url, bind_password_env=None, bind_password_file=str(tmp_path / "absent"))
    result = check(path, env={"PATH": "/usr/bin:/bin", "OKTA_HOOK_SECRET": "s"})

    assert result.returncode == 2
    assert f"{path}: directory.bind_password_file: cannot read {tmp_path / 'absent'}" in result.stderr


@pytest.mark.parametrize("probe", [False, True])
def test_serve_names_the_file_of_a_secret_error_too(tmp_path: Path, probe: bool) -> None:
    path = config_file(tmp_path, "ldap://127.0.0.1:1")
    command = ["check-config", str(path), "--probe"] if probe else ["serve", "--config", str(path)]
    result = run_command(*command, env={"PATH": "/usr/bin:/bin"})

    assert result.returncode == 2
    assert f"{path}: auth.secret_env: environment variable OKTA_HOOK_SECRET is not set or empty" in result.stderr


def test_several_directories_are_each_probed_and_the_sample_says_where_each_value_came_from(
    slapd: Slapd, emea_slapd: Slapd, hr_slapd: Slapd, tmp_path: Path, check, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's several-directory configuration: every server of every directory bound, the sample's
    directory named, each mapped Okta name with the directory its value came from, and no value."""
    servers = {"accounts": slapd, "emea": emea_slapd, "hr": hr_slapd}
    path = tmp_path / "several.yaml"
    path.write_text(yaml.safe_dump(several_document(servers)))
    for name, value in several_passwords(servers).items():
        monkeypatch.setenv(name, value)

    result = check(path, "--sample", "rosario.jones@example.com")

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for server in servers.values():
        assert f"{server.url.removeprefix('ldap://')}: bind ok" in lines
    assert "sample: held by accounts" in lines
    assert "sample: hr: joined" in lines
    assert "sample: hooks.registration.profile.department <- hr: 1 value" in lines
    assert "sample: hooks.registration.profile.groups <- accounts: 2 values" in lines
    assert "Platform Engineering" not in result.stdout  # the person's values are not printed
    assert lines[-1] == "probe: ok"


def test_a_refused_bind_names_the_directory_that_refused_it(
    slapd: Slapd, emea_slapd: Slapd, hr_slapd: Slapd, tmp_path: Path, check, monkeypatch: pytest.MonkeyPatch
) -> None:
    servers = {"accounts": slapd, "emea": emea_slapd, "hr": hr_slapd}
    path = tmp_path / "several.yaml"
    path.write_text(yaml.safe_dump(several_document(servers)))
    for name, value in several_passwords(servers).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HR_BIND_PASSWORD", "wrong-password-value")

    result = check(path)

    assert result.returncode == 1
    assert "directories.hr: the bind was refused; check directories.hr.bind_dn and its password" in result.stdout
    assert "directories.emea: the bind was refused" not in result.stdout
