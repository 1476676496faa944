"""The dashboard and the alert rules against a real Prometheus scraping the real service, first healthy,
then with the directory hanging: every expression parses and returns data, and the latency-risk and
fallback alerts turn true when the directory hangs.

The dashboard's panels are rendered from this run into PNG files; set RENDER_PANELS_TO=<folder> to
keep them (that is how docs/images/ was made).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import pytest
from oauth_support import IssuerServer, SigningKey, oauth_section
from okta_spec import example, registration_for
from prometheus_server import PrometheusServer
from support.config import REPO, directory_config, service_config
from support.servers import RunningService

from service.demo.slapd import Slapd

DASHBOARDS = REPO / "dashboards"


def _load_queries() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboard_queries", DASHBOARDS / "queries.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["dashboard_queries"] = module
    spec.loader.exec_module(module)
    return module


queries = _load_queries()


class SwitchableProxy:
    """A TCP proxy to the directory that can start hanging: after ``hang()`` it keeps every connection
    open, old and new, and forwards nothing, like a directory server that is up but stuck."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"ldap://127.0.0.1:{self._listener.getsockname()[1]}"
        self.hanging = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def hang(self) -> None:
        self.hanging.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(client)
            if self.hanging.is_set():
                continue  # accepted, never answered
            upstream = socket.create_connection(("127.0.0.1", self._upstream))
            self._sockets.append(upstream)
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not self.hanging.is_set():
                    target.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            sock.close()


def drive(service: RunningService, seconds: float, concurrency: int) -> list[int]:
    """Send a mix of hook calls (enriched, unknown user, several matches, token) for ``seconds``."""
    unknown = registration_for("nobody.here@example.com")
    shared = registration_for("shared.mailbox@example.com")
    calls = [
        ("registration", example("registration")),
        ("token", example("token")),
        ("registration", unknown),
        ("registration", shared),
    ]
    deadline = time.monotonic() + seconds

    def worker(index: int) -> list[int]:
        statuses = []
        while time.monotonic() < deadline:
            hook, body = calls[(index + len(statuses)) % len(calls)]
            statuses.append(service.post(hook, body).status_code)
            time.sleep(0.05)
        return statuses

    with ThreadPoolExecutor(concurrency) as pool:
        return [status for statuses in pool.map(worker, range(concurrency)) for status in statuses]


@pytest.fixture
def monitored(tmp_path: Path, start_service):
    with Slapd(tmp_path / "ldap", (REPO / "service/demo/data/demo.ldif").read_text()) as ldap:
        proxy = SwitchableProxy(ldap.port)
        # a long socket timeout: the hang shows as deadline fallbacks for the whole test
        # StartTLS through the proxy: password import (its panel) needs TLS to the directory
        tls = {"start_tls": True, "ca_file": str(ldap.ca_file)}
        # the change feed: its panels fill (and it falls behind while the directory hangs)
        feed = {"change_feed": {"poll_seconds": 1.0}}
        directory = directory_config(proxy.url, operation_timeout_seconds=60.0, **tls, **feed)
        config = service_config(proxy.url, directory=directory)
        config["hooks"] = {
            "registration": config["hooks"]["registration"],
            "token": config["hooks"]["token"],
            "password_import": {},
        }
        issuer = IssuerServer([SigningKey.rsa("live-1")])  # OAuth beside the header secret: its panels fill
        config["auth"]["oauth"] = oauth_section(issuer)
        service = start_service(config)
        prometheus = PrometheusServer(
            tmp_path / "prometheus", [f"127.0.0.1:{service.ops_port}"], rule_files=[DASHBOARDS / "alerts.rules.yml"]
        )
        try:
            prometheus.wait_scraped()
            yield service, proxy, prometheus
        finally:
            prometheus.stop()
            proxy.close()
            issuer.stop()


def alert_expression(name: str) -> str:
    return next(q.expr for q in queries.rule_queries() if q.ref == "alert" and q.where == name)


def test_dashboard_and_alerts_on_the_real_service(monitored, tmp_path: Path) -> None:
    service, proxy, prometheus = monitored
    started = time.time()
    latency_alert = alert_expression("OktaHookLatencyNearOktaTimeout")
    fallback_alert = alert_expression("OktaHookDeadlineFallback")

    healthy = drive(service, seconds=6, concurrency=4)
    prometheus.wait_scrapes_after(time.time())
    assert set(healthy) == {200} and len(healthy) > 100
    assert prometheus.query(latency_alert) == []
    assert prometheus.query(fallback_alert) == []

    proxy.hang()
    hanging = drive(service, seconds=9, concurrency=8)
    prometheus.wait_scrapes_after(time.time())
    assert set(hanging) == {200}  # every call still answered, none with a 5xx

    assert prometheus.query(latency_alert), "p99 above 2 s should be visible while the directory hangs"
    assert prometheus.query(fallback_alert), "deadline fallbacks should be visible while the directory hangs"

    empty = []
    for query in queries.all_queries():
        # every directory (All), and the one directory by its name, as the row repeated per directory asks
        for directory in (".*", "default") if "$directory" in query.expr else (".*",):
            expr = queries.expand(
                query.expr, job="okta-ldap-hook", directory=directory, rate_interval="1m", range_="5m"
            )
            result = prometheus.query(expr)  # raises if Prometheus refuses the expression
            if not result and query.ref != "alert":
                empty.append(f"{query.where} [{query.ref}]: {expr}")
    assert empty == [], "expressions without data:\n" + "\n".join(empty)

    rules = [
        rule for group in prometheus.client.get("/api/v1/rules").json()["data"]["groups"] for rule in group["rules"]
    ]
    assert len(rules) == len(queries.rule_queries())
    assert [(rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"] == []

    render_panels(prometheus, started, Path(os.environ.get("RENDER_PANELS_TO") or tmp_path / "panels"))


def render_panels(prometheus: PrometheusServer, started: float, out: Path) -> None:
    """What operators will see: every drawable panel of this run as a PNG with data in it."""
    result = subprocess.run(
        [
            sys.executable,
            str(DASHBOARDS / "render_panels.py"),
            "--prometheus",
            prometheus.url,
            "--out",
            str(out),
            "--start",
            f"{started:.0f}",
            "--end",
            f"{time.time():.0f}",
            "--step",
            "1s",
            "--scrape-interval",
            "1s",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    drawable = [
        panel
        for panel in queries.iter_panels(queries.load_dashboard())
        if panel["type"] in {"timeseries", "heatmap", "state-timeline"}
    ]
    assert len(manifest) == len(drawable) + 1  # + the overview of the stat panels
    assert [item["title"] for item in manifest if item["series"] == 0] == []
    for item in manifest:
        data = (out / item["file"]).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, item["file"]


def firing(prometheus: PrometheusServer) -> set[str]:
    alerts = prometheus.client.get("/api/v1/alerts").json()["data"]["alerts"]
    return {alert["labels"]["alertname"] for alert in alerts if alert["state"] == "firing"}


def test_users_not_enriched_fires_within_90_s_of_the_directory_hanging(tmp_path: Path, start_service) -> None:
    """The issue's measurement, with the cache: a real Prometheus scraping every 5 s, the directory
    hanging behind a proxy, 2 calls/s, the operation timeout (2.0 s) ending lookups before the deadline
    (2.5 s). Half the calls are for a user in the cache (served stale), half for one who is not
    (fallback). OktaHookUsersNotEnriched must fire within 90 s, OktaHookServingStale too."""
    with Slapd(tmp_path / "ldap", (REPO / "service/demo/data/demo.ldif").read_text()) as ldap:
        proxy = SwitchableProxy(ldap.port)
        config = service_config(
            proxy.url, directory=directory_config(proxy.url, operation_timeout_seconds=2.0, pool_size=8)
        )
        registration = config["hooks"]["registration"]
        registration["cache"] = {"fresh_seconds": 2, "stale_seconds": 3600}
        config["hooks"] = {"registration": registration}
        service = start_service(config)
        prometheus = PrometheusServer(
            tmp_path / "prometheus",
            [f"127.0.0.1:{service.ops_port}"],
            rule_files=[DASHBOARDS / "alerts.rules.yml"],
            scrape_interval="5s",
            evaluation_interval="5s",
        )
        calls = 0

        def call(email: str) -> str:
            nonlocal calls
            calls += 1
            event = registration_for(email)
            event["eventId"] = f"live-{calls}"  # distinct events: not Okta retries
            return service.post("registration", event).json()["debugContext"]["outcome"]

        def drive_until(done, users: list[str]) -> list:
            """Two calls per second, open loop (a call that hangs does not delay the next one)."""
            futures = []
            with ThreadPoolExecutor(16) as pool:
                start = time.monotonic()
                while not done():
                    futures.append(pool.submit(call, users[len(futures) % len(users)]))
                    time.sleep(max(0.0, start + len(futures) * 0.5 - time.monotonic()))
                return [future.result() for future in futures]

        try:
            prometheus.wait_scraped()
            warm_until = time.monotonic() + 15
            healthy = drive_until(lambda: time.monotonic() > warm_until, ["rosario.jones@example.com"])
            assert set(healthy) == {"enriched"}
            assert firing(prometheus) == set()

            proxy.hang()
            hung_at = time.monotonic()
            fired: dict[str, float] = {}

            def both_fired() -> bool:
                if time.monotonic() - hung_at > 120:
                    return True
                for name in firing(prometheus) & {"OktaHookUsersNotEnriched", "OktaHookServingStale"}:
                    fired.setdefault(name, time.monotonic() - hung_at)
                return len(fired) == 2

            hanging = drive_until(both_fired, ["rosario.jones@example.com", "alice.wong@example.com"])
        finally:
            prometheus.stop()
            proxy.close()

    print(f"\nafter the directory hung: {fired} (seconds to fire), answers {Counter(hanging)}")
    assert fired.get("OktaHookUsersNotEnriched", 999) <= 90, fired
    assert "OktaHookServingStale" in fired, fired
    assert {"enriched_stale", "fallback_ldap_error"} <= set(hanging), Counter(hanging)
    assert set(hanging) <= {"enriched", "enriched_stale", "fallback_ldap_error", "fallback_deadline"}
