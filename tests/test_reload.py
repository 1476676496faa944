"""``serve --reload`` (the skaffold dev loop): a change to a Python file of the service restarts the
child service, which comes back ready on the same ports; SIGTERM stops both. Real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from support.config import REPO, SECRET, service_config

import service
from service.demo.slapd import SERVICE_BIND_PASSWORD, Slapd, free_port

#: The file touched: the reloader watches the sources of the imported package, wherever it lives.
WATCHED = Path(service.__file__).resolve()


def start_time(ops_url: str) -> float | None:
    """The child's ``process_start_time_seconds``, or None while no child answers."""
    try:
        metrics = httpx.get(ops_url + "/metrics", timeout=1).text
    except httpx.TransportError:
        return None
    for line in metrics.splitlines():
        if line.startswith("process_start_time_seconds "):
            return float(line.split()[1])
    return None


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def restore_watched_file() -> Iterator[None]:
    stat = WATCHED.stat()
    yield
    os.utime(WATCHED, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_source_change_restarts_the_service(slapd: Slapd, tmp_path: Path, restore_watched_file: None) -> None:
    ops_port = free_port()
    config = service_config(slapd.url)
    config["server"] = {"host": "127.0.0.1", "hook_port": free_port(), "ops_port": ops_port}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OKTA_HOOK_SECRET": SECRET, "LDAP_BIND_PASSWORD": SERVICE_BIND_PASSWORD}
    ops_url = f"http://127.0.0.1:{ops_port}"
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--config", str(path), "--reload"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
        env=env,
    )
    try:
        first = wait_for(lambda: start_time(ops_url), 30, "the first child")
        # a later mtime, as an editor's save or skaffold's file sync gives (the reloader polls each second)
        stat = WATCHED.stat()
        os.utime(WATCHED, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))

        second = wait_for(lambda: (t := start_time(ops_url)) is not None and t != first and t, 30, "a new child")
        assert second > first
        assert httpx.get(ops_url + "/readyz", timeout=5).status_code == 200
        assert supervisor.poll() is None  # the supervisor itself kept running
    finally:
        supervisor.send_signal(signal.SIGTERM)
        code = supervisor.wait(timeout=20)
    assert code == 0
    assert start_time(ops_url) is None, "the child service is still running"
