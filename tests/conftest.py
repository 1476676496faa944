"""Shared fixtures: a real slapd with the demo directory, the service in the test process
(``start_in_process``, the default) or as a real process (``start_service``, for start-up, signals and
reload), and misbehaving directories (a closed port, a socket that accepts and never answers)."""

from __future__ import annotations

import copy
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hook_client import HookClient
from in_process import InProcessService

from service.demo.slapd import SERVICE_BIND_DN, SERVICE_BIND_PASSWORD, Slapd, demo_ldif, free_port

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "service/demo/data/demo-config.yaml"
SECRET = "test-hook-secret"


def pytest_collection_finish(session: pytest.Session) -> None:
    """checkov's scans take the most CPU of any fixture: start them as soon as tests that read them are
    collected, so that they run while the tests before them mostly wait on sockets. Not under xdist:
    every worker collects every test but only one runs them, and that worker starts them on demand."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    if any("checkov_reports" in getattr(item, "fixturenames", ()) for item in session.items):
        import test_container

        test_container.start_early(session.config, Path(tempfile.mkdtemp(prefix="checkov-")))


def pytest_sessionfinish(session: pytest.Session) -> None:
    if "test_container" in sys.modules:
        sys.modules["test_container"].stop_early(session.config)


# ------------------------------------------------------------------ parallel runs (pytest-xdist)
# The suite runs on several workers (addopts in pyproject.toml): most of it waits on sockets and child
# processes, not on the CPU. A test module is one unit of work, so that its module-scoped fixtures (a
# slapd of its own, the image, the checkov scans) start once per run. The tests that wait a minute on a
# real Prometheus are units of their own and, with the image build, are handed out first: started last,
# they would end the run with one worker busy and the others idle.
STARTED_FIRST = ("tests/test_live_monitoring.py", "tests/test_image.py")
ONE_UNIT_PER_TEST = ("tests/test_live_monitoring.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in STARTED_FIRST)


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: unknown when it is not loaded
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadFileScheduling

    class ModulesLongestFirst(LoadFileScheduling):
        """Units in collection order (``--no-loadscope-reorder``), one per module or per listed test."""

        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return nodeid if module in ONE_UNIT_PER_TEST else module

    return ModulesLongestFirst(config, log) if config.option.dist == "load" else None


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """The demo directory, shared by the tests that only read it."""
    with Slapd(tmp_path_factory.mktemp("slapd"), demo_ldif()) as server:
        yield server


class HangingServer:
    """Accepts TCP connections and never sends a byte: a directory that is up but stuck."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.url = f"ldap://127.0.0.1:{self.port}"
        self._held: list[socket.socket] = []
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self._held.append(connection)

    @property
    def accepted(self) -> int:
        return len(self._held)

    def close(self) -> None:
        self._stopped = True
        self._socket.close()
        for connection in self._held:
            connection.close()


@pytest.fixture
def hanging_directory() -> Iterator[HangingServer]:
    server = HangingServer()
    yield server
    server.close()


@pytest.fixture
def closed_port_url() -> str:
    """An ldap:// URL on which nothing listens (connections are refused at once)."""
    return f"ldap://127.0.0.1:{free_port()}"


def unchanged(body: dict[str, Any]) -> dict[str, Any]:
    """Assert an answer asks Okta to change nothing (only diagnostics); return those diagnostics."""
    assert set(body) == {"debugContext"}, body
    return body["debugContext"]


def directory_config(url: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "urls": [url],
        "bind_dn": SERVICE_BIND_DN,
        "bind_password_env": "LDAP_BIND_PASSWORD",
        "user_search": {
            "base_dn": "ou=people,dc=example,dc=com",
            "filter": "(objectClass=inetOrgPerson)",
            "match_attribute": "mail",
        },
        "pool_size": 4,
        "connect_timeout_seconds": 0.5,
        "operation_timeout_seconds": 1.0,
        "server_cooldown_seconds": 0.5,
        "health_check_interval_seconds": 1.0,
    }
    config.update(overrides)
    return config


def service_config(ldap_url: str, **sections: Any) -> dict[str, Any]:
    """The demo configuration (the README's example) pointed at ``ldap_url``, with ``sections``
    replacing or merging top-level sections."""
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    config["auth"] = {"header": "Authorization", "secret_env": ["OKTA_HOOK_SECRET"]}
    config["directory"] = directory_config(ldap_url)
    config["logging"] = {"level": "info", "format": "json"}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            merged = copy.deepcopy(config[key])
            merged.update(value)
            config[key] = merged
        else:
            config[key] = value
    return config


class RunningService(HookClient):
    """The service started as `python -m service serve`, as in production."""

    def __init__(self, config: dict[str, Any], workdir: Path, env: dict[str, str]) -> None:
        self.hook_port, self.ops_port = free_port(), free_port()
        config = copy.deepcopy(config)
        config["server"] = {"host": "127.0.0.1", "hook_port": self.hook_port, "ops_port": self.ops_port}
        self.config_path = workdir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config, allow_unicode=True))
        self.log_path = workdir / "service.log"
        self.hook_url = f"http://127.0.0.1:{self.hook_port}"
        self.ops_url = f"http://127.0.0.1:{self.ops_port}"
        process_env = {**os.environ, "OKTA_HOOK_SECRET": SECRET, "LDAP_BIND_PASSWORD": SERVICE_BIND_PASSWORD, **env}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service", "serve", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=process_env,
                cwd=REPO,
            )
        self.client = httpx.Client(timeout=10)
        self.default_secret = SECRET
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"service exited with {self.process.returncode}:\n{self.log()}")
            try:
                if self.client.get(self.ops_url + "/readyz", timeout=0.5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"service not ready after 15 s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.client.close()
        return self.process.returncode


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., RunningService]]:
    """``start_service(config, env={})`` runs the service; it is stopped after the test."""
    started: list[RunningService] = []

    def start(config: dict[str, Any], env: dict[str, str] | None = None) -> RunningService:
        workdir = tmp_path / f"service-{len(started)}"
        workdir.mkdir()
        service = RunningService(config, workdir, env or {})
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def service(slapd: Slapd, start_service: Callable[..., RunningService]) -> RunningService:
    """The service with the demo configuration on the demo directory."""
    return start_service(service_config(slapd.url))


@pytest.fixture
def start_in_process() -> Iterator[Callable[..., InProcessService]]:
    """``start_in_process(config, env={})``: the service's apps served from this process (real
    sockets, real directory, secrets read as ``serve`` reads them, no process start); stopped after
    the test."""
    started: list[InProcessService] = []

    def start(config: dict[str, Any], env: dict[str, str] | None = None) -> InProcessService:
        environ = {"OKTA_HOOK_SECRET": SECRET, "LDAP_BIND_PASSWORD": SERVICE_BIND_PASSWORD, **(env or {})}
        service = InProcessService(config, environ)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def in_process(slapd: Slapd, start_in_process: Callable[..., InProcessService]) -> InProcessService:
    """The demo configuration on the demo directory, served in-process."""
    return start_in_process(service_config(slapd.url))
