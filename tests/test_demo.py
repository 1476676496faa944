"""The README's first command: the demo answers the printed curl with an enriched registration, and
Ctrl-C stops the service and its directory, leaving nothing running."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import yaml
from conftest import REPO, SECRET, service_config

from service.demo.slapd import free_port


def test_demo_answers_the_printed_curl_and_stops_cleanly() -> None:
    hook_port, ops_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if key not in ("OKTA_HOOK_SECRET", "LDAP_BIND_PASSWORD")}
    demo = subprocess.Popen(
        [sys.executable, "-m", "service", "demo", "--hook-port", str(hook_port), "--ops-port", str(ops_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env=env,
    )
    try:
        banner = ""
        while "Ctrl-C" not in banner:
            line = demo.stdout.readline()
            assert line, f"demo exited early:\n{banner}"
            banner += line
        curl = re.search(r"^\s+(curl .*)$", banner, re.M).group(1)
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{ops_port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        answer = subprocess.run(curl, shell=True, capture_output=True, text=True, timeout=10, cwd=REPO)
        ldap_url = re.search(r"demo directory : (ldap://\S+)", banner).group(1)
    finally:
        demo.send_signal(signal.SIGINT)  # Ctrl-C
        output, _ = demo.communicate(timeout=20)

    profile = json.loads(answer.stdout)["commands"][0]["value"]
    assert profile["department"] == "Engineering"
    assert profile["managerEmail"] == "carol.chen@example.com"
    assert demo.returncode == 0, output
    port = int(ldap_url.rsplit(":", 1)[1])
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the demo slapd is still running"
    assert '"level": "error"' not in output and "Traceback" not in output


def test_reload_mode_serves_and_stops_with_its_child(slapd, tmp_path) -> None:
    """`serve --reload` (the skaffold dev loop) runs the service in a child and stops both on SIGTERM."""
    hook_port, ops_port = free_port(), free_port()
    config = service_config(slapd.url)
    config["server"] = {"host": "127.0.0.1", "hook_port": hook_port, "ops_port": ops_port}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OKTA_HOOK_SECRET": SECRET, "LDAP_BIND_PASSWORD": "demo-bind-password"}
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--config", str(path), "--reload"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
        env=env,
    )
    try:
        for _ in range(200):
            try:
                if httpx.get(f"http://127.0.0.1:{ops_port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            raise AssertionError("the service did not start under --reload")
    finally:
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=20) == 0
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", ops_port)) != 0, "the child service is still running"
