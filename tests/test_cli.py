"""The command line as an operator meets it: ``--help`` reads cleanly (no reStructuredText markup, every
option explained), and a port another process holds ends in one line naming it, before the demo
banner or anything else is printed (real processes, real sockets)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
import yaml
from support.config import REPO, SECRET, service_config

from service.demo.slapd import SERVICE_BIND_PASSWORD, free_port

COMMANDS = [[], ["serve"], ["check-config"], ["demo"], ["try"]]


def _run(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *arguments],
        capture_output=True, text=True, timeout=60, cwd=REPO, env=env,
    )


def _entries_without_help(help_text: str) -> list[str]:
    """Option and argument entries of an argparse help screen that carry no help text. An entry is a
    line indented by exactly two spaces; its help follows on the same line after a gap, or on the next
    line, indented deeper."""
    lines = help_text.splitlines()
    missing = []
    in_section = False
    for index, line in enumerate(lines):
        if line.endswith(":") and not line.startswith(" "):
            in_section = line in ("options:", "positional arguments:")
            continue
        entry = re.fullmatch(r"  (\S.*?)(?:\s{2,}(\S.*))?", line)
        if not in_section or not entry:
            continue
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if entry.group(2) is None and not re.match(r"\s{4,}\S", following):
            missing.append(entry.group(1))
    return missing


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: " ".join(command) or "okta-ldap-hook")
def test_help_is_plain_text_and_explains_every_option(command: list[str]) -> None:
    result = _run(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "``" not in result.stdout, result.stdout
    assert "options:" in result.stdout
    assert _entries_without_help(result.stdout) == [], result.stdout


def test_the_help_checker_sees_an_option_without_help() -> None:
    """The check above can fail: an entry with nothing after it, nor below it, is reported."""
    screen = "options:\n  -h, --help   show this help\n  --hook-port HOOK_PORT\n  --ops-port OPS_PORT   port\n"
    assert _entries_without_help(screen) == ["--hook-port HOOK_PORT"]


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port some other process listens on."""
    with socket.create_server(("127.0.0.1", 0)) as holder:
        yield holder.getsockname()[1]


def _no_secrets_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in ("OKTA_HOOK_SECRET", "LDAP_BIND_PASSWORD")}


def test_demo_on_a_busy_hook_port_names_it_before_any_banner(held_port: int) -> None:
    result = _run("demo", "--hook-port", str(held_port), "--ops-port", str(free_port()), env=_no_secrets_env())
    assert result.returncode == 1
    assert result.stdout == "", "nothing is printed to paste when the service cannot start"
    assert f"port {held_port} (--hook-port) on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_demo_on_a_busy_ops_port_names_it(held_port: int) -> None:
    result = _run("demo", "--hook-port", str(free_port()), "--ops-port", str(held_port), env=_no_secrets_env())
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"port {held_port} (--ops-port)" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_on_a_busy_port_names_the_setting(held_port: int, tmp_path) -> None:
    config = service_config("ldap://127.0.0.1:1")
    config["server"] = {"host": "127.0.0.1", "hook_port": free_port(), "ops_port": held_port}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OKTA_HOOK_SECRET": SECRET, "LDAP_BIND_PASSWORD": SERVICE_BIND_PASSWORD}
    result = _run("serve", "--config", str(path), env=env)
    assert result.returncode == 1
    assert f"port {held_port} (server.ops_port) on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
