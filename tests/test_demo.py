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
from conftest import REPO

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
