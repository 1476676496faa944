"""Hook throughput and latency against a slapd holding 10,000 users, beside baselines measured in the
same run on the same machine.

    .venv/bin/python bench/benchmark.py [--users 10000] [--duration 10] [--connections 75]
        [--only cache|directories|pooled|overload|...] [--delay-ms 20] [--delay-connections 2]

Variants:
  ldap3 loop, pooled        one bound SYNC connection (as the service's), its two searches per lookup, sequential
  ldap3 loop, bind per req  the same, opening and binding a new connection for every lookup
  hook, pooled              the service (one process), wrk with 75 connections (Okta's largest concurrency)
  hook, bind per request    the service with connections never reused (connection_max_age ~0)
  hook, telemetry off       metrics and the per-request log line disabled (cost of instrumentation)
  hook, tracing 10 %        OTLP/HTTP tracing sampled at 10 %, to an in-process receiver
  hook, overload            the pooled service with 200 connections: more than one process can serve
                            in time, to see load shedding keep the slowest answer within the deadline

  (these four run with the cache off, so that every request is a directory lookup, as before the cache)

Cache variants (``--only cache`` runs only these and the baselines they are compared with):
  bare Sanic                the HTTP ceiling: a Sanic app answering a fixed JSON body (bench/bare_sanic.py)
  hook, cache, hot set      200 users, random, cache on (warmed by wrk's warm-up run)
  hook, cache off, new users / hook, cache, new users
                            every request a user not asked before (a stream of new users), cache off/on
  open loop 300 req/s       hot set, requests sent at a fixed rate whatever the answers' latency
                            (no coordinated omission), latency from the planned send time
  RSS, 100,000 cached       bench/cache_memory.py: the whole process with 100,000 entries in the cache

Several-directory variants (issue 22; ``--only directories`` runs them with the pooled hook, the
one-directory row they are compared with), cache off, 75 connections; bench/several_directories.py:
  hook, two account directories in parallel
                            the users split in two slapds (each person in one), no domain routing: both
                            asked for every login, in parallel
  hook, account + HR joined by attribute
                            + an HR slapd with a record per user: department, title, cost centre from HR,
                            searched for the account entry's employeeNumber once it arrived (sequential)
  hook, account + HR joined by identifier
                            the same with HR searched for Okta's identifier (its mail), in parallel
  hook, one directory, +20 ms / ... each +20 ms
                            the one-directory row and the three above with a relay adding --delay-ms to
                            every round trip to each directory, at --delay-connections connections (below
                            pool_size: the latency is then the lookups' round trips, not queueing)
Each hook row also reports the directory time of its enriched answers (the log line's directory_ms,
debugContext's directoryMs: from the start of the lookup to the last directory's answer, the wait for
a pooled connection included).

``--only TEXT`` runs just the variants whose name contains TEXT (e.g. ``--only overload``); repeat it to
run several (``--only pooled --only overload``). ``--only cache`` runs the cache variants with the
baselines they are compared with (bare Sanic, the pooled ldap3 loop), the open loop and the RSS figure.

wrk and the service share the machine's cores, so absolute figures are pessimistic; compare rows of
the same run. Results go to stdout (Markdown) and bench-results/<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import ldap3
import yaml
from ldap3.utils.conv import escape_filter_chars

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.several_directories import (  # noqa: E402
    HR_ENV,
    LatencyRelay,
    account_and_hr,
    generated_hr,
    hr_department,
    split_users,
    two_account_directories,
)
from service.demo.directory_data import generate_users, user_mail  # noqa: E402
from service.demo.hr_data import HR_SUFFIX  # noqa: E402
from service.demo.slapd import SERVICE_BIND_DN, SERVICE_BIND_PASSWORD, Slapd, free_port  # noqa: E402

SECRET = "bench-secret"
ATTRIBUTES = ["departmentNumber", "title", "employeeNumber", "manager", "memberOf"]
BASE_DN = "ou=people,dc=example,dc=com"


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def ldap3_loop(url: str, users: int, lookups: int, bind_per_lookup: bool) -> dict:
    """What the service does per request (search the user, read the manager's mail), with no HTTP."""
    server = ldap3.Server(url, get_info=ldap3.NONE)

    def connect() -> ldap3.Connection:
        conn = ldap3.Connection(server, SERVICE_BIND_DN, SERVICE_BIND_PASSWORD, client_strategy=ldap3.SYNC)
        conn.bind()
        return conn

    conn = None if bind_per_lookup else connect()
    rng = random.Random(7)
    latencies = []
    started = time.perf_counter()
    for _ in range(lookups):
        t0 = time.perf_counter()
        c = connect() if bind_per_lookup else conn
        mail = f"user{rng.randrange(users):05d}@example.com"
        c.search(
            BASE_DN,
            f"(&(objectClass=inetOrgPerson)(mail={escape_filter_chars(mail)}))",
            attributes=ATTRIBUTES,
            size_limit=2,
        )
        manager = c.response[0]["attributes"].get("manager")
        if manager:
            c.search(manager, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["mail"])
        if bind_per_lookup:
            c.unbind()
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    return {
        "requests": lookups,
        "rate": lookups / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p90_ms": percentile(latencies, 0.9) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "errors": 0,
    }


WRK_SCRIPT = """
local users = {users}
local template = [[{template}]]
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "{secret}"
math.randomseed(7)
local counter = 0
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
request = function()
  local mail = string.format("user%05d@example.com", math.random(0, users - 1))
  counter = counter + 1
  local event = string.format("bench-%d-%d-%d", id, counter, math.random(0, 1000000000))
  return wrk.format(nil, nil, nil, (template:gsub("MAIL", mail):gsub("EVENT", event)))
end
"""

# Every request a user not asked before: thread t of 2 takes users offset + t, offset + t + 2, ...
WRK_STREAM_SCRIPT = """
local template = [[{template}]]
local users = {users}
local offset = {offset}
local threads = 0
local counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "{secret}"
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
request = function()
  local mail = string.format("user%05d@example.com", (offset + counter * 2 + id) % users)
  counter = counter + 1
  local event = string.format("stream-%d-%d-%d", id, counter, offset)
  return wrk.format(nil, nil, nil, (template:gsub("MAIL", mail):gsub("EVENT", event)))
end
"""


def wrk(url: str, script: Path, connections: int, duration: int) -> dict:
    # --timeout 10s: wrk's default (2 s) would drop the slowest answers from its latency figures
    output = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    def max_ms() -> float:  # "Latency  avg  stdev  max  +/- stdev": the slowest answer any client saw
        value, unit = re.search(r"^\s+Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\s", output, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    requests = int(re.search(r"(\d+) requests in", output).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    return {
        "requests": requests,
        "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": ms("50%"),
        "p90_ms": ms("90%"),
        "p99_ms": ms("99%"),
        "max_ms": max_ms(),
        "errors": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
        "load": os.getloadavg()[0],  # the machine is shared: how busy it was as this run ended
    }


class OtlpSink(BaseHTTPRequestHandler):
    """Accepts OTLP/HTTP exports and counts them; a collector stand-in on loopback."""

    received = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        OtlpSink.received += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def run_service(
    config: dict, workdir: Path, env: dict[str, str], wrapper: str | None = None, log: Path | None = None
) -> tuple[subprocess.Popen, str, str]:
    """The service on ``config``; its log lines (stdout) go to ``log``, or nowhere."""
    hook_port, ops_port = free_port(), free_port()
    config = {**config, "server": {"host": "127.0.0.1", "hook_port": hook_port, "ops_port": ops_port}}
    path = workdir / f"config-{hook_port}.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "service", "serve", "--config", str(path)]
    if wrapper:
        command = [sys.executable, str(Path(__file__).parent / wrapper), "serve", "--config", str(path)]
    output = log.open("ab") if log else subprocess.DEVNULL
    process = subprocess.Popen(
        command,
        stdout=output,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
        env={**os.environ, "OKTA_HOOK_SECRET": SECRET, "LDAP_BIND_PASSWORD": SERVICE_BIND_PASSWORD, **env},
    )
    if log:
        output.close()  # the child has its own descriptor
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{ops_port}/readyz", timeout=0.5).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    else:
        process.kill()
        raise RuntimeError("service did not start")
    return process, f"http://127.0.0.1:{hook_port}/hooks/registration", f"http://127.0.0.1:{ops_port}/metrics"


def outcomes(metrics_url: str) -> dict[str, float]:
    """Hook outcomes counted by the service itself: a fast fallback is not a fast enrichment. Deadline
    fallbacks by stage are counted as ``stage:<stage>``."""
    counts = {}
    for line in httpx.get(metrics_url).text.splitlines():
        match = re.match(r'okta_hook_requests_total\{hook_type="registration",outcome="(\w+)"\} ([\d.e+]+)', line)
        if match:
            counts[match.group(1)] = float(match.group(2))
        match = re.match(
            r'okta_hook_deadline_exceeded_total\{hook_type="registration",stage="(\w+)"\} ([\d.e+]+)', line
        )
        if match:
            counts[f"stage:{match.group(1)}"] = float(match.group(2))
        # answered (200) within the 2.5 s deadline, timed by the service from the request's first byte
        match = re.match(r"http_server_request_duration_seconds_(count|bucket)\{(.*)\} ([\d.e+]+)", line)
        if match and 'status_code="200"' in match.group(2):
            if match.group(1) == "count":
                counts["timed:all"] = counts.get("timed:all", 0) + float(match.group(3))
            elif 'le="2.5"' in match.group(2):
                counts["timed:in_time"] = counts.get("timed:in_time", 0) + float(match.group(3))
    return counts


def directory_times(log: Path, offset: int) -> dict[str, float]:
    """The directory time of the enriched answers logged after ``offset``: the ``directory_ms`` of the
    service's per-request log line (Okta's debugContext ``directoryMs``), from the start of the lookup to
    the last directory's answer; HTTP, JSON and the wait for the event loop are not in it."""
    times = []
    with log.open("rb") as lines:
        lines.seek(offset)
        for line in lines:
            if b'"hook_request"' not in line:
                continue
            fields = json.loads(line)
            if str(fields.get("outcome", "")).startswith("enriched"):
                times.append(float(fields["directory_ms"]))
    if not times:  # telemetry off: no log line
        return {}
    return {
        "directory_p50_ms": percentile(times, 0.5),
        "directory_p90_ms": percentile(times, 0.9),
        "directory_p99_ms": percentile(times, 0.99),
    }


def measure_service(
    config: dict,
    workdir: Path,
    env: dict[str, str],
    wrapper: str | None,
    script: Path,
    args: argparse.Namespace,
    connections: int | None = None,
    probe: Any = None,
) -> dict:
    """wrk against the service on ``config``; ``probe(url)``, when given, checks one answer first (that
    the configuration measured is the one meant: a joined value present, say)."""
    connections = connections or args.connections
    log = workdir / f"service-{time.monotonic_ns()}.log"
    process, url, metrics_url = run_service(config, workdir, env, wrapper, log)
    try:
        if probe:
            probe(url)
        wrk(url, script, connections, 2)  # warm-up: pool and first-call paths
        before = outcomes(metrics_url)
        offset = log.stat().st_size
        row = wrk(url, script, connections, args.duration)
        after = outcomes(metrics_url)
        row.update(directory_times(log, offset))
        delta = {key: after.get(key, 0) - before.get(key, 0) for key in after}
        # wrk closes its connections at the end with requests in flight: those are client_closed, not answers
        total = sum(value for key, value in delta.items() if ":" not in key and key != "client_closed")
        if total:  # telemetry off: nothing counted
            row["enriched_pct"] = 100 * delta.get("enriched", 0) / total
            row["fallback_deadline_pct"] = 100 * delta.get("fallback_deadline", 0) / total
            row["shed_queue"] = int(delta.get("stage:queue", 0))
            row["service_late"] = int(delta.get("timed:all", 0) - delta.get("timed:in_time", 0))
        row["connections"] = connections
        return row
    finally:
        stop(process)


def measure_bare_sanic(script: Path, args: argparse.Namespace) -> dict:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "bare_sanic.py"), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    try:
        for _ in range(300):
            try:
                httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=0.5)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/hooks/registration"
        wrk(url, script, args.connections, 2)
        return wrk(url, script, args.connections, args.duration)
    finally:
        stop(process)


def measure_stream(config: dict, workdir: Path, template: dict, args: argparse.Namespace, offset: int) -> dict:
    """wrk with every request for a user not asked before (users offset, offset + 1, ...)."""
    warm, measured = workdir / f"stream-warm-{offset}.lua", workdir / f"stream-{offset}.lua"
    for path, start in ((warm, offset + args.users // 2), (measured, offset)):
        path.write_text(
            WRK_STREAM_SCRIPT.format(users=args.users, offset=start, template=json.dumps(template), secret=SECRET)
        )
    process, url, metrics_url = run_service(config, workdir, {}, None)
    try:
        wrk(url, warm, args.connections, 2)
        before = outcomes(metrics_url)
        row = wrk(url, measured, args.connections, args.duration)
        after = outcomes(metrics_url)
        # answers by outcome only: the "stage:" and "timed:" counts are other views of the same answers;
        # the requests in flight when wrk closes its connections are client_closed, not answers
        total = sum(
            value - before.get(key, 0) for key, value in after.items() if ":" not in key and key != "client_closed"
        )
        row["enriched_pct"] = 100 * (after.get("enriched", 0) - before.get("enriched", 0)) / max(total, 1)
        return row
    finally:
        stop(process)


async def open_loop_run(url: str, body_for: Any, rate: float, seconds: float, connections: int = 64) -> dict:
    """Send ``rate`` requests per second for ``seconds``, each planned at a fixed time whatever happened
    to the previous ones; latency counts from the planned time, so a stall shows in full (no coordinated
    omission, as wrk2 measures). A minimal HTTP/1.1 keep-alive client on asyncio streams: a general
    client (httpx) costs more CPU per request than the service under test on a 2-core machine."""
    host, port, path = re.match(r"http://([^:/]+):(\d+)(/.*)", url).groups()
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    latencies: list[float] = []
    errors = 0

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        while (item := await queue.get()) is not None:
            index, planned = item
            body = body_for(index)
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {SECRET}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            answer = await reader.readexactly(length)
            latencies.append(time.perf_counter() - planned)
            if not head.startswith(b"HTTP/1.1 200") or b'"enriched"' not in answer:
                errors += 1
        writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    count = int(rate * seconds)
    start = time.perf_counter() + 0.2
    for index in range(count):
        planned = start + index / rate
        delay = planned - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((index, planned))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - start
    return {
        "requests": count,
        "rate": count / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p90_ms": percentile(latencies, 0.9) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
        "errors": errors,
    }


def measure_open_loop(config: dict, workdir: Path, template: dict, args: argparse.Namespace) -> dict:
    rng = random.Random(7)
    text = json.dumps(template)

    def body(index: int, user: int) -> bytes:
        return text.replace("MAIL", f"user{user:05d}@example.com").replace("EVENT", f"open-{index}").encode()

    process, url, _ = run_service(config, workdir, {}, None)
    try:
        asyncio.run(open_loop_run(url, lambda i: body(-i - 1, i % 200), 100, 3))  # warm the hot set
        return asyncio.run(open_loop_run(url, lambda i: body(i, rng.randrange(200)), args.open_rate, args.duration))
    finally:
        stop(process)


def measure_cache_memory() -> dict:
    output = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "cache_memory.py")], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def answer_probe(template: dict, user: int, expected: dict[str, str]) -> Any:
    """A check of one registration answer for generated user ``user``: enriched, with ``expected`` among
    its profile values. Raises when the answer is not what the row means to measure."""

    def probe(url: str) -> None:
        body = json.dumps(template).replace("MAIL", user_mail(user)).replace("EVENT", f"probe-{user}")
        answer = httpx.post(
            url, content=body, headers={"Authorization": SECRET, "Content-Type": "application/json"}, timeout=5
        ).json()
        profile = answer["commands"][0]["value"] if answer.get("commands") else {}
        got = {key: profile.get(key) for key in expected}
        if answer["debugContext"]["outcome"] != "enriched" or got != expected:
            raise RuntimeError(f"probe of {user_mail(user)}: {answer['debugContext']}, {got} (expected {expected})")

    return probe


#: The several-directory rows (issue 22); ``--only directories`` runs them with the one-directory row.
ONE_DIRECTORY = "hook, pooled (metrics + logs on)"
TWO_ACCOUNTS = "hook, two account directories in parallel"
JOINED_BY_ATTRIBUTE = "hook, account + HR joined by attribute"
JOINED_BY_IDENTIFIER = "hook, account + HR joined by identifier"


def several_directory_variants(
    stack: ExitStack, workdir: Path, config: dict, ldap: Slapd, script: Path, template: dict, args: argparse.Namespace
) -> list[tuple[str, Any]]:
    """The several-directory rows, and each again with ``--delay-ms`` added in front of every directory
    (:class:`LatencyRelay`) and ``--delay-connections`` connections, below the pool size: then the
    latency is the lookups' round trips, not the wait for a pooled connection. Their slapds (the
    generated users split in two, HR) start on ``stack`` when the first of these rows runs."""
    first_half, second_half = split_users(args.users)
    north = Slapd(workdir / "north", first_half)
    south = Slapd(workdir / "south", second_half)
    hr = Slapd(
        workdir / "hr", generated_hr(args.users), suffix=HR_SUFFIX, service_bind_password=HR_ENV["HR_BIND_PASSWORD"]
    )

    def start() -> None:
        if not hr.running:
            print(f"loading {args.users} users split in two slapds, and their HR records...", file=sys.stderr)
            for server in (north, south, hr):
                stack.enter_context(server)

    delay = args.delay_ms / 1000
    relays = {server.port: LatencyRelay(server.port, delay) for server in (ldap, north, south, hr)}
    for relay in relays.values():
        stack.callback(relay.close)

    def measured(row_config: dict, env: dict[str, str], probe: Any, connections: int | None) -> Any:
        def measure() -> dict:
            start()
            return measure_service(row_config, workdir, env, None, script, args, connections, probe)

        return measure

    def url(server: Slapd, delayed: bool) -> str:
        return relays[server.port].url if delayed else server.url

    last = args.users - 1
    numbers = {"employeeNumber": str(100_000 + last)}
    joined = {"employeeNumber": "100007", "department": hr_department(7)}
    variants: list[tuple[str, Any]] = []
    for delayed in (False, True):
        suffix = f", each +{args.delay_ms:g} ms" if delayed else ""
        connections = args.delay_connections if delayed else None
        one = {**config, "directory": {**config["directory"], "urls": [url(ldap, delayed)]}}
        two = two_account_directories(config, url(north, delayed), url(south, delayed))
        by_attribute = account_and_hr(config, url(ldap, delayed), url(hr, delayed), by_identifier=False)
        by_identifier = account_and_hr(config, url(ldap, delayed), url(hr, delayed), by_identifier=True)
        rows = [
            (f"hook, one directory, +{args.delay_ms:g} ms", one, {}, None) if delayed else None,
            (TWO_ACCOUNTS + suffix, two, {}, answer_probe(template, last, numbers)),
            (JOINED_BY_ATTRIBUTE + suffix, by_attribute, HR_ENV, answer_probe(template, 7, joined)),
            (JOINED_BY_IDENTIFIER + suffix, by_identifier, HR_ENV, answer_probe(template, 7, joined)),
        ]
        for row in rows:
            if row is not None:
                name, row_config, env, probe = row
                variants.append((name, measured(row_config, env, probe, connections)))
    return variants


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per hook variant; the median is reported")
    parser.add_argument("--connections", type=int, default=75)
    parser.add_argument("--lookups", type=int, default=2000, help="lookups per ldap3 loop")
    parser.add_argument("--overload-connections", type=int, default=200, help="connections of the overload variant")
    parser.add_argument("--open-rate", type=float, default=300, help="requests/s of the open-loop run")
    parser.add_argument(
        "--delay-ms", type=float, default=20, help="latency added in front of each directory in the delayed rows"
    )
    parser.add_argument(
        "--delay-connections", type=int, default=2, help="wrk connections of the delayed rows (below pool_size)"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only the variants whose name contains this text (repeatable: any of them)",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is missing: apt-get install -y wrk (or make setup)", file=sys.stderr)
        return 1

    template = json.loads((REPO / "service/demo/data/registration-event.json").read_text())
    template["data"]["userProfile"]["email"] = template["data"]["userProfile"]["login"] = "MAIL"
    template["eventId"] = "EVENT"  # a distinct eventId per request: Okta's retries are not what is measured
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="okta-ldap-hook-bench-") as tmp:
        workdir = Path(tmp)
        script = workdir / "post.lua"
        script.write_text(WRK_SCRIPT.format(users=args.users, template=json.dumps(template), secret=SECRET))
        hot = workdir / "hot.lua"
        hot.write_text(WRK_SCRIPT.format(users=200, template=json.dumps(template), secret=SECRET))
        print(f"loading {args.users} users into slapd...", file=sys.stderr)
        with Slapd(workdir / "ldap", generate_users(args.users)) as ldap, ExitStack() as stack:
            config = yaml.safe_load((REPO / "service/demo/data/demo-config.yaml").read_text())
            config["hooks"] = {"registration": config["hooks"]["registration"]}
            config["directory"]["urls"] = [ldap.url]
            config["logging"] = {"level": "info", "format": "json"}
            cached = copy.deepcopy(config)
            cache_off = {"fresh_seconds": 0, "stale_seconds": 0, "negative_seconds": 0, "replay_seconds": 0}
            config["hooks"]["registration"]["cache"] = cache_off

            # --only cache: the cache variants and the baselines they are compared with
            cache_run = not args.only or "cache" in args.only
            # --only directories: the several-directory rows and the one-directory row
            directories_run = not args.only or "directories" in args.only

            def chosen(name: str) -> bool:
                return (
                    not args.only
                    or any(text in name for text in args.only)
                    or (directories_run and name == ONE_DIRECTORY)
                )

            if cache_run or chosen("ldap3 loop, pooled connection"):
                rows["ldap3 loop, pooled connection"] = ldap3_loop(ldap.url, args.users, args.lookups, False)
            if chosen("ldap3 loop, connect+bind per lookup"):
                rows["ldap3 loop, connect+bind per lookup"] = ldap3_loop(ldap.url, args.users, args.lookups // 4, True)

            sink = ThreadingHTTPServer(("127.0.0.1", free_port()), OtlpSink)
            threading.Thread(target=sink.serve_forever, daemon=True).start()
            otlp = f"http://127.0.0.1:{sink.server_address[1]}"
            no_reuse = {**config, "directory": {**config["directory"], "connection_max_age_seconds": 1e-9}}
            overload = args.overload_connections
            offsets = iter(range(0, 10 * args.rounds * 2))
            tracing = {
                "OTEL_EXPORTER_OTLP_ENDPOINT": otlp,
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "0.1",
            }
            variants: list[tuple[str, Any]] = [
                (ONE_DIRECTORY, lambda: measure_service(config, workdir, {}, None, script, args)),
                ("hook, connect+bind per request", lambda: measure_service(no_reuse, workdir, {}, None, script, args)),
                (
                    "hook, telemetry off",
                    lambda: measure_service(config, workdir, {}, "no_telemetry.py", script, args),
                ),
                (
                    "hook, tracing 10 % sampled",
                    lambda: measure_service(config, workdir, tracing, None, script, args),
                ),
                (
                    f"hook, overload ({overload} connections)",
                    lambda: measure_service(config, workdir, {}, None, script, args, overload),
                ),
                ("bare Sanic (HTTP ceiling)", lambda: measure_bare_sanic(hot, args)),
                ("hook, cache, hot set of 200", lambda: measure_service(cached, workdir, {}, None, hot, args)),
                (
                    "hook, cache off, new users",
                    lambda: measure_stream(config, workdir, template, args, next(offsets) * args.users // 20),
                ),
                (
                    "hook, cache, new users",
                    lambda: measure_stream(cached, workdir, template, args, next(offsets) * args.users // 20),
                ),
            ]
            several = several_directory_variants(stack, workdir, config, ldap, script, template, args)
            variants += several
            variants = [
                (name, measure)
                for name, measure in variants
                if chosen(name)
                or (cache_run and name == "bare Sanic (HTTP ceiling)")
                or (directories_run and (name, measure) in several)
            ]
            runs: dict[str, list[dict]] = {name: [] for name, _ in variants}
            for round_ in range(args.rounds):  # interleaved, so a slow minute of the machine hits every variant
                for name, measure in variants:
                    print(f"round {round_ + 1}/{args.rounds}: {name}...", file=sys.stderr)
                    runs[name].append(measure())
            for name, results in runs.items():
                # the run with the median throughput, whole, so its latencies belong to its rate
                rows[name] = sorted(results, key=lambda row: row["rate"])[len(results) // 2]
                rows[name]["rates"] = [round(row["rate"]) for row in results]
                rows[name]["max_ms_each"] = [round(row.get("max_ms", 0)) for row in results]
                rows[name]["load_each"] = [round(row.get("load", 0), 1) for row in results]
            if "hook, tracing 10 % sampled" in rows:
                rows["hook, tracing 10 % sampled"]["otlp_exports"] = OtlpSink.received
            sink.shutdown()
            if cache_run:
                print(f"open loop at {args.open_rate:.0f} req/s on the hot set...", file=sys.stderr)
                rows[f"hook, cache, hot set, open loop {args.open_rate:.0f} req/s"] = measure_open_loop(
                    cached, workdir, template, args
                )
                print("RSS with 100,000 users cached...", file=sys.stderr)
                memory = measure_cache_memory()

    baseline_name = next(
        (n for n in ("hook, pooled (metrics + logs on)", "hook, cache off, new users") if n in rows), None
    )
    baseline = rows[baseline_name]["rate"] if baseline_name else 1.0
    delayed = f"+{args.delay_ms:g} ms"
    delayed_one = f"hook, one directory, {delayed}"
    print(
        f"\n{args.users} users, {args.connections} connections ({args.overload_connections} for the overload "
        f"variant), {args.rounds} interleaved runs of {args.duration} s "
        f"per variant (median shown), {os.cpu_count()} cores; ratios against '{baseline_name}' "
        f"('{delayed_one}' for the rows with {delayed})\n"
    )
    print(
        "| variant | connections | requests | req/s | p50 ms | p90 ms | p99 ms | max ms | directory p50 / p90 / p99 ms "
        "| non-2xx | enriched | vs baseline | req/s of each run |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        ratio = f"{row['rate'] / baseline:.2f}x" if name.startswith("hook") and baseline else "-"
        if name.endswith(delayed) and delayed_one in rows:  # another load: compared with its own one-directory row
            ratio = f"{row['rate'] / rows[delayed_one]['rate']:.2f}x"
        enriched = f"{row['enriched_pct']:.1f} %" if "enriched_pct" in row else "-"
        each = ", ".join(str(rate) for rate in row.get("rates", [])) or "-"
        slowest = f"{row['max_ms']:.1f}" if "max_ms" in row else "-"
        directory = (
            " / ".join(f"{row[f'directory_{p}_ms']:.1f}" for p in ("p50", "p90", "p99"))
            if "directory_p50_ms" in row
            else "-"
        )
        print(
            f"| {name} | {row.get('connections', '-')} | {row['requests']} | {row['rate']:.0f} | {row['p50_ms']:.1f} "
            f"| {row['p90_ms']:.1f} | {row['p99_ms']:.1f} | {slowest} | {directory} | {row['errors']} | {enriched} "
            f"| {ratio} | {each} |"
        )
    for name, row in rows.items():
        if "load_each" in row:
            print(f"\n{name}: load average (1 min) at the end of each run: {row['load_each']}")
        if "shed_queue" in row:
            print(
                f"\n{name}: fallback_deadline {row['fallback_deadline_pct']:.1f} % of answers, "
                f"{row['shed_queue']} shed at stage queue, {row['service_late']} over 2.5 s as the service "
                f"timed them (from the first byte); slowest answer of each run (ms), as wrk saw it: "
                f"{', '.join(str(v) for v in row['max_ms_each'])}"
            )
    if cache_run:
        bare = rows["bare Sanic (HTTP ceiling)"]["rate"]
        raw = rows["ldap3 loop, pooled connection"]["rate"]
        open_row = rows[f"hook, cache, hot set, open loop {args.open_rate:.0f} req/s"]
        print(
            f"\nhot set vs bare Sanic: {rows['hook, cache, hot set of 200']['rate'] / bare:.2f}x; "
            f"new users, cache on vs the raw ldap3 loop: {rows['hook, cache, new users']['rate'] / raw:.2f}x "
            f"(cache off: {rows['hook, cache off, new users']['rate'] / raw:.2f}x); "
            f"open loop {args.open_rate:.0f} req/s: p50 {open_row['p50_ms']:.1f} ms, p99 {open_row['p99_ms']:.1f} ms, "
            f"max {open_row['max_ms']:.1f} ms, {open_row['errors']} not enriched; "
            f"RSS with {memory['entries']} users cached: {memory['rss_after_mib']} MiB "
            f"({memory['rss_before_mib']} MiB before, {memory['bytes_per_entry']} bytes per entry)"
        )
        rows["cache memory"] = memory
    results = REPO / "bench-results"
    results.mkdir(exist_ok=True)
    (results / time.strftime("%Y%m%dT%H%M%S.json")).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
