"""Shared fixtures: a real slapd with the demo directory (and, for several directories, an HR slapd and
a second account directory, emea), the Samba AD DC, the service in the test process (``start_in_process``,
the default) or as a real process (``start_service``, for start-up, signals and reload), and misbehaving
directories (a closed port, a socket that accepts and never answers).

Fixtures only: what tests import (configurations, the secret, the stand-in servers, the fakes of the
clock and the directory) is in ``tests/support/``."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from in_process import InProcessService
from support.config import SECRET, service_config
from support.servers import HangingServer, RunningService

from service.demo.emea_data import EMEA_SERVICE_BIND_PASSWORD, EMEA_SUFFIX, emea_ldif
from service.demo.hr_data import HR_SERVICE_BIND_PASSWORD, HR_SUFFIX, hr_ldif
from service.demo.samba import SambaDC, provisioned
from service.demo.slapd import SERVICE_BIND_PASSWORD, Slapd, demo_ldif, free_port


def pytest_collection_finish(session: pytest.Session) -> None:
    """checkov's scans take the most CPU of any fixture: start them as soon as tests that read them are
    collected, so that they run while the tests before them mostly wait on sockets. Not under xdist:
    every worker collects every test but only one runs them, and that worker starts them on demand.

    The Samba domain is provisioned once per machine (about 15 s the first time, then kept in the
    temporary directory): started here in a thread of every process, it is ready, or nearly, when the
    first AD test module asks; its file lock has one process build it while the others wait."""
    if any("samba_dc" in getattr(item, "fixturenames", ()) for item in session.items):
        threading.Thread(target=_provision_samba, name="samba-provision", daemon=True).start()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    if any("checkov_reports" in getattr(item, "fixturenames", ()) for item in session.items):
        import test_container

        test_container.start_early(session.config, Path(tempfile.mkdtemp(prefix="checkov-")))


def _provision_samba() -> None:
    with contextlib.suppress(Exception):  # the fixture asks again, and fails with the reason
        provisioned()


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


@pytest.fixture(scope="session")
def hr_slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """The HR directory (service/demo/hr_data.py, dc=hr,dc=example,dc=com): joined by employeeNumber,
    its own CA and service-account password (``hr_slapd.service_bind_password``)."""
    with Slapd(
        tmp_path_factory.mktemp("hr-slapd"),
        hr_ldif(),
        suffix=HR_SUFFIX,
        service_bind_password=HR_SERVICE_BIND_PASSWORD,
    ) as server:
        yield server


@pytest.fixture(scope="session")
def emea_slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """The second account directory (service/demo/emea_data.py, dc=emea,dc=example,dc=com, mails
    @emea.example.com, one person also in the demo directory), its own CA and service-account password."""
    with Slapd(
        tmp_path_factory.mktemp("emea-slapd"),
        emea_ldif(),
        suffix=EMEA_SUFFIX,
        service_bind_password=EMEA_SERVICE_BIND_PASSWORD,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def samba_dc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SambaDC]:
    """A Samba AD DC holding service/demo/ad_data.py's domain, on a loopback address of its own, one per
    test module that asks: started from the provisioned copy in under a second."""
    with SambaDC(tmp_path_factory.mktemp("samba")) as dc:
        yield dc


@pytest.fixture
def hanging_directory() -> Iterator[HangingServer]:
    server = HangingServer()
    yield server
    server.close()


@pytest.fixture
def closed_port_url() -> str:
    """An ldap:// URL on which nothing listens (connections are refused at once)."""
    return f"ldap://127.0.0.1:{free_port()}"


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
