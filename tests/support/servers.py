"""Servers the tests run: the service as a real process (``python -m service serve``, for start-up,
signals and reload) and a directory that accepts connections and never answers."""

from __future__ import annotations

import copy
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from hook_client import HookClient

from service.demo.slapd import SERVICE_BIND_PASSWORD, free_port
from support.config import REPO, SECRET


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
