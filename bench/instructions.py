"""Instructions per request (valgrind's callgrind) of bare Sanic and of the service on the hot set:
the same comparison as ``benchmark.py``'s "hot set vs bare Sanic", without the machine's noise.

    .venv/bin/python bench/instructions.py [--requests 2000]

Wall-clock figures on a shared 2-core machine move by a third between runs (wrk, slapd and whatever
else runs share the cores); user-space instructions do not move by 1 %. Each server runs under
callgrind twice: once answering only the warm-up (the 200 hot users, so the cache is full), once
answering ``--requests`` more; the difference, divided, is what one more request costs, start-up and
shutdown cancelled out. The client is a plain sequential keep-alive client, the same for both servers.
Kernel work (the socket calls) is not counted: it is about the same for both. A third server is the
service with its metrics and per-request log line turned off (``bench/no_telemetry.py``), to show what
they cost. About 6 minutes.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from service.demo.directory_data import generate_users  # noqa: E402
from service.demo.slapd import SERVICE_BIND_PASSWORD, Slapd, free_port  # noqa: E402

SECRET = "bench-secret"
HOT_USERS = 200


def event_bodies(count: int, tag: str) -> list[bytes]:
    """Registration events for the hot set, each with its own eventId (Okta's retries are not measured)."""
    template = json.loads((REPO / "service/demo/data/registration-event.json").read_text())
    template["data"]["userProfile"]["email"] = template["data"]["userProfile"]["login"] = "MAIL"
    template["eventId"] = "EVENT"
    text = json.dumps(template)
    return [
        text.replace("MAIL", f"user{i % HOT_USERS:05d}@example.com").replace("EVENT", f"{tag}{i}").encode()
        for i in range(count)
    ]


def post_all(port: int, bodies: list[bytes]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Content-Type": "application/json", "Authorization": SECRET}
    for body in bodies:
        connection.request("POST", "/hooks/registration", body, headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
    connection.close()


def wait_for(port: int) -> None:
    for _ in range(1200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start under valgrind")


def server_command(kind: str, port: int, workdir: Path, ldap_url: str) -> tuple[list[str], dict[str, str]]:
    if kind == "bare":
        return [sys.executable, str(REPO / "bench/bare_sanic.py"), str(port)], dict(os.environ)
    config = yaml.safe_load((REPO / "service/demo/data/demo-config.yaml").read_text())
    config["hooks"] = {"registration": config["hooks"]["registration"]}  # the cache on, as by default
    config["directory"]["urls"] = [ldap_url]
    config["logging"] = {"level": "info", "format": "json"}
    config["server"] = {"host": "127.0.0.1", "hook_port": port, "ops_port": free_port()}
    path = workdir / f"config-{port}.yaml"
    path.write_text(yaml.safe_dump(config))
    environ = {**os.environ, "OKTA_HOOK_SECRET": SECRET, "LDAP_BIND_PASSWORD": SERVICE_BIND_PASSWORD}
    # "quiet": metrics and the per-request log line replaced by no-ops (bench/no_telemetry.py)
    program = [str(REPO / "bench/no_telemetry.py")] if kind == "quiet" else ["-m", "service"]
    return [sys.executable, *program, "serve", "--config", str(path)], environ


def instructions(kind: str, requests: int, workdir: Path, ldap_url: str) -> int:
    """Instructions the server executed from start to exit, answering the warm-up and ``requests`` more."""
    port = free_port()
    command, environ = server_command(kind, port, workdir, ldap_url)
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={workdir}/callgrind.{kind}.{requests}"]
    process = subprocess.Popen(
        valgrind + command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO, env=environ
    )
    try:
        wait_for(port)
        time.sleep(3)  # start-up finishes (the service's pool prewarm, its first health check)
        post_all(port, event_bodies(HOT_USERS, "warm"))
        post_all(port, event_bodies(requests, "measured"))
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
    match = re.search(r"Collected : (\d+)", errors)
    if match is None:
        raise RuntimeError(f"no callgrind total for {kind}: {errors[-2000:]}")
    return int(match.group(1))


def per_request(kind: str, requests: int, workdir: Path, ldap_url: str) -> float:
    return (instructions(kind, requests, workdir, ldap_url) - instructions(kind, 0, workdir, ldap_url)) / requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    if not shutil.which("valgrind"):
        print("valgrind is missing: apt-get install -y valgrind (or make setup)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="okta-ldap-hook-instructions-") as tmp:
        workdir = Path(tmp)
        with Slapd(workdir / "ldap", generate_users(1000)) as ldap:
            bare = per_request("bare", args.requests, workdir, ldap.url)
            service = per_request("service", args.requests, workdir, ldap.url)
            quiet = per_request("quiet", args.requests, workdir, ldap.url)
    print("| server | instructions per request |\n|---|---|")
    print(f"| bare Sanic (HTTP ceiling) | {bare:,.0f} |\n| hook, cache, hot set of {HOT_USERS} | {service:,.0f} |")
    print(f"| the same, metrics and log line off (bench/no_telemetry.py) | {quiet:,.0f} |")
    print(f"\nbare Sanic / hook: {bare / service:.2f}x (the throughput ratio if both were bound by these alone)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
