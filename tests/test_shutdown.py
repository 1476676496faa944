"""SIGTERM on the real process (as Kubernetes stops a pod): in-flight hooks are answered, with
``Connection: close`` so that no kept-alive connection holds the pod for the whole 10 s graceful
shutdown; /readyz stops answering "ready" at once (Sanic closes the listening sockets at the signal, so
a probe meets a refused connection, or a 503 on a connection already open); the process exits 0, well
within the graceful period."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from in_process import InProcessService
from okta_spec import example
from support.answers import unchanged
from support.config import directory_config, service_config
from support.servers import HangingServer, RunningService

#: Sanic's GRACEFUL_SHUTDOWN_TIMEOUT in service.server: a connection left open is cut after it.
GRACEFUL_SHUTDOWN_SECONDS = 10
DEADLINE = 1.5


def draining_service(hanging: HangingServer, start_service) -> RunningService:
    """Registrations that take the whole deadline (the directory hangs), so that one is in flight when
    the signal comes."""
    config = service_config(hanging.url, directory=directory_config(hanging.url, operation_timeout_seconds=30.0))
    config["hooks"]["registration"]["deadline_seconds"] = DEADLINE
    return start_service(config)


def wait_until(condition, timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def in_flight(service: RunningService) -> bool:
    return "http_server_requests_in_flight 1.0" in service.metrics()


def test_sigterm_answers_in_flight_hooks_with_connection_close_and_exits_in_time(
    hanging_directory: HangingServer, start_service
) -> None:
    service = draining_service(hanging_directory, start_service)
    service.client.get(service.ops_url + "/metrics")  # leaves a keep-alive connection on the ops port
    readiness: list[tuple[float, int | str]] = []
    signalled = threading.Event()

    def watch_readiness() -> None:
        """/readyz while draining, on fresh connections, as the kubelet probes it."""
        signalled.wait()
        while service.process.poll() is None:
            try:
                status: int | str = httpx.get(service.ops_url + "/readyz", timeout=1).status_code
            except httpx.TransportError:
                status = "refused"
            readiness.append((time.monotonic(), status))
            time.sleep(0.05)

    with ThreadPoolExecutor(max_workers=2) as pool:
        watcher = pool.submit(watch_readiness)
        answer = pool.submit(service.post, "registration", example("registration"))
        wait_until(lambda: in_flight(service), what="the request to be in flight")
        service.process.send_signal(signal.SIGTERM)
        signalled.set()
        sent = time.monotonic()
        response = answer.result(timeout=DEADLINE + 5)
        answered = time.monotonic()
        code = service.process.wait(timeout=GRACEFUL_SHUTDOWN_SECONDS + 5)
        exited_after = time.monotonic() - sent
        watcher.result(timeout=5)

    assert response.status_code == 200
    assert unchanged(response.json())["outcome"] == "fallback_deadline"  # answered, not cut off
    assert response.headers["connection"] == "close"  # the client will not reuse it: nothing to wait for
    assert code == 0
    # a kept-alive connection would have held the process until the graceful timeout cut it
    assert exited_after < GRACEFUL_SHUTDOWN_SECONDS - 2, exited_after
    errors = [line for line in service.log().splitlines() if '"level": "error"' in line]
    assert errors == []
    # draining: the kubelet sees the pod not ready (a 503, or the ops port already closed) while the
    # in-flight hook is still being answered, so the Service stops sending it new requests
    while_draining = [status for at, status in readiness if at < answered]
    assert while_draining, readiness
    assert {status for _, status in readiness} <= {503, "refused"}, readiness


def test_while_draining_readyz_is_503_and_answers_close_their_connection(in_process: InProcessService) -> None:
    """The same drain, in-process and step by step: between the signal and the exit, /readyz says 503 on
    any connection that reaches it, and every hook answer carries ``Connection: close``."""
    ready = in_process.client.get(in_process.ops_url + "/readyz")
    before = in_process.post("registration", example("registration"))
    assert (ready.status_code, ready.text) == (200, "ready")
    assert before.headers.get("connection", "keep-alive") == "keep-alive"

    in_process.begin_draining()

    not_ready = httpx.get(in_process.ops_url + "/readyz")
    during = in_process.post("registration", example("registration"))
    assert (not_ready.status_code, not_ready.text) == (503, "not ready")
    assert during.status_code == 200 and "commands" in during.json()  # still answered in full
    assert during.headers["connection"] == "close"
