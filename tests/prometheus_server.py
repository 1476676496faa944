"""A real Prometheus (Debian's package) for tests: scrapes given targets every second, answers PromQL."""

from __future__ import annotations

import itertools
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from service.demo.slapd import free_port


class PrometheusServer:
    def __init__(
        self,
        workdir: Path,
        targets: list[str],
        rule_files: list[Path] | None = None,
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
    ) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError(
                "prometheus is not installed: apt-get install -y --no-install-recommends prometheus (or make setup)"
            )
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
            "scrape_configs": [{"job_name": "okta-ldap-hook", "static_configs": [{"targets": targets}]}],
        }
        if rule_files:
            config["rule_files"] = [str(path) for path in rule_files]
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self._log = (workdir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--enable-feature=exemplar-storage",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(base_url=self.url, timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if self.client.get("/-/ready").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("prometheus did not become ready:\n" + (workdir / "prometheus.log").read_text())

    def query(self, expression: str) -> list[dict[str, Any]]:
        answer = self.client.get("/api/v1/query", params={"query": expression}).json()
        if answer["status"] != "success":
            raise AssertionError(f"{expression}: {answer.get('error')}")
        return answer["data"]["result"]

    def value(self, expression: str) -> float | None:
        """The single value of an instant query; None when it returns no series."""
        result = self.query(expression)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    def wait_for(self, expression: str, expected: float, timeout: float = 15.0) -> float | None:
        """Poll until ``expression`` equals ``expected`` (scrapes are asynchronous); return the last value."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.value(expression)
            if value == expected:
                return value
            time.sleep(0.25)
        return value

    def wait_scraped(self, timeout: float = 15.0) -> None:
        """Wait until every target has been scraped successfully."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            targets = self.client.get("/api/v1/targets").json()["data"]["activeTargets"]
            if targets and all(target["health"] == "up" for target in targets):
                return
            time.sleep(0.2)
        raise AssertionError(f"targets not up: {targets}")

    def wait_scrapes_after(self, since: float, scrapes: int = 2, timeout: float = 15.0) -> None:
        """Wait until every target has been scraped ``scrapes`` times after the wall-clock instant
        ``since`` (:func:`time.time`), instead of sleeping for as many scrape intervals."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            targets = self.client.get("/api/v1/targets").json()["data"]["activeTargets"]
            interval = min(_seconds(target["scrapeInterval"]) for target in targets) if targets else 1.0
            last = [_rfc3339(target["lastScrape"]) for target in targets]
            if last and min(last) >= since + (scrapes - 1) * interval:
                return
            time.sleep(0.1)
        raise AssertionError(f"targets not scraped {scrapes} times after {since}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.client.close()
        self._log.close()


def _seconds(duration: str) -> float:
    """A Prometheus duration of the forms the tests configure: ``1s``, ``500ms``, ``1m``."""
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if duration.endswith(suffix):
            return float(duration.removesuffix(suffix)) * factor
    raise ValueError(duration)


def _rfc3339(timestamp: str) -> float:
    """Prometheus' ``lastScrape`` (nanosecond RFC 3339) as a Unix time."""
    from datetime import datetime

    head, _, rest = timestamp.partition(".")
    fraction = "".join(itertools.takewhile(str.isdigit, rest))
    zone = rest[len(fraction) :] if rest else timestamp[19:]
    whole = datetime.fromisoformat(head + (zone.replace("Z", "+00:00") or "+00:00"))
    return whole.timestamp() + (float("0." + fraction) if fraction else 0.0)
