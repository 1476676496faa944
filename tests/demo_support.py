"""``okta-ldap-hook demo`` as ``make run`` starts it (a real process, with the secret it chooses itself),
for the tests of the README's first command and of ``make try``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from support.config import REPO

from service.demo.slapd import free_port


@dataclass
class Demo:
    process: subprocess.Popen[str]
    hook_url: str
    banner: str
    #: Everything the demo printed after its banner; set once it has stopped.
    output: str = ""


@contextmanager
def running_demo(directory: str = "openldap") -> Iterator[Demo]:
    """Start the demo (on ``--directory``), wait for its banner and for /readyz; on exit, Ctrl-C it and
    keep its output."""
    hook_port, ops_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if key not in ("OKTA_HOOK_SECRET", "LDAP_BIND_PASSWORD")}
    command = ["demo", "--hook-port", str(hook_port), "--ops-port", str(ops_port), "--directory", directory]
    process = subprocess.Popen(
        [sys.executable, "-m", "service", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env=env,
    )
    demo = Demo(process, f"http://127.0.0.1:{hook_port}", "")
    try:
        while "Ctrl-C" not in demo.banner:
            line = process.stdout.readline() if process.stdout else ""
            assert line, f"demo exited early:\n{demo.banner}"
            demo.banner += line
        for _ in range(200):
            try:
                if httpx.get(f"http://127.0.0.1:{ops_port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield demo
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        demo.output, _ = process.communicate(timeout=20)
