"""Dropped connections, half-sent requests, slow senders and idle keep-alives, against the real service
process over raw sockets: none of them may become a 5xx (the error budget's), hold a connection past its
bound, or leave the operator without a reason."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import pytest
from connection_support import (
    closed_by_server,
    connect,
    log_lines,
    metric_value,
    request_bytes,
    send_and_drop,
    wait_until,
)
from okta_spec import example
from support.config import directory_config, service_config
from support.servers import HangingServer, RunningService

from service.demo.slapd import Slapd
from service.http_protocol import KEEP_ALIVE_SECONDS, REQUEST_RECEIVE_SECONDS

HOOK = "/hooks/registration"
#: Sanic checks its timers every 1.5 s; a loaded machine adds its own delay.
MARGIN = 1.5 + 3.0


@pytest.fixture
def slow_service(hanging_directory: HangingServer, start_service) -> RunningService:
    """The service on a directory that never answers: every hook call waits for its 1 s deadline, so a
    client can leave while the answer is being worked out."""
    config = service_config(
        hanging_directory.url, directory=directory_config(hanging_directory.url, operation_timeout_seconds=30.0)
    )
    config["hooks"]["registration"]["deadline_seconds"] = 1.0
    return start_service(config)


def test_a_client_leaving_before_the_answer_is_a_499_outside_the_5xx(slow_service: RunningService) -> None:
    service = slow_service
    whole = request_bytes(HOOK, example("registration"))
    with ThreadPoolExecutor(4) as pool:
        # 0.6 s: each handler is then waiting for the hanging directory (deadline 1 s from arrival)
        list(pool.map(lambda _: send_and_drop(service.hook_port, whole, wait=0.6), range(4)))

    def counted() -> float:
        return metric_value(
            service.metrics(),
            "http_server_request_duration_seconds_count",
            route=HOOK,
            method="POST",
            status_code="499",
        )

    assert wait_until(lambda: counted() == 4), service.metrics()
    metrics = service.metrics()
    assert metric_value(metrics, "okta_hook_requests_total", hook_type="registration", outcome="client_closed") == 4
    assert metric_value(metrics, "okta_hook_refusals_total", route=HOOK, reason="client_closed") == 4
    assert 'status_code="5' not in metrics
    assert metric_value(metrics, "okta_hook_requests_total", outcome="server_error") == 0
    lines = [line for line in log_lines(service.log()) if line.get("event") == "hook_request"]
    assert [(line["status"], line["outcome"], line["reason"]) for line in lines] == [
        (499, "client_closed", "client_closed")
    ] * 4
    # the service is still answering, in time
    assert service.post("registration", example("registration")).status_code == 200


def test_half_sent_requests_are_not_server_errors(service: RunningService) -> None:
    whole = request_bytes(HOOK, example("registration"))
    head_end = whole.index(b"\r\n\r\n")
    cuts = [
        whole[:20],  # inside the request line
        whole[: head_end - 10],  # inside the headers
        whole[: head_end + 4],  # headers complete, no body
        whole[: len(whole) - 15],  # body shorter than its Content-Length
    ]
    for cut in cuts:
        send_and_drop(service.hook_port, cut, wait=0.5)

    def refused() -> float:
        return metric_value(service.metrics(), "okta_hook_refusals_total", reason="client_closed")

    assert wait_until(lambda: refused() == len(cuts)), service.metrics()
    metrics = service.metrics()
    assert 'status_code="5' not in metrics
    assert 'method="NONE"' not in metrics
    # a request cut before its headers ended has no route; one cut in its body is the hook's
    assert (
        metric_value(metrics, "http_server_request_duration_seconds_count", route="unmatched", status_code="499") == 2
    )
    assert metric_value(metrics, "http_server_request_duration_seconds_count", route=HOOK, status_code="499") == 2
    assert metric_value(metrics, "okta_hook_requests_total", outcome="client_closed") == 2
    assert service.post("registration", example("registration")).status_code == 200


def test_slow_senders_and_idle_connections_are_closed_within_their_bounds(service: RunningService) -> None:
    whole = request_bytes(HOOK, example("registration"))
    head_end = whole.index(b"\r\n\r\n") + 4
    header_lines = iter(whole[: head_end - 4].split(b"\r\n"))
    body = iter(whole[head_end:])

    def trickle_headers() -> bytes | None:  # one header line every 0.5 s: Sanic's own timer never fires
        return next(header_lines, b"X-Slow: 1") + b"\r\n"

    def trickle_body() -> bytes | None:
        return bytes([next(body, 32)])

    def headers_case() -> float | None:
        with connect(service.hook_port) as sock:
            return closed_by_server(sock, REQUEST_RECEIVE_SECONDS + MARGIN + 5, trickle_headers)

    def body_case() -> float | None:
        with connect(service.hook_port) as sock:
            sock.sendall(whole[:head_end])
            return closed_by_server(sock, REQUEST_RECEIVE_SECONDS + MARGIN + 5, trickle_body)

    def idle_case() -> float | None:  # one answered request, then nothing
        with connect(service.hook_port) as sock:
            sock.sendall(whole)
            return closed_by_server(sock, KEEP_ALIVE_SECONDS + MARGIN + 5)

    with ThreadPoolExecutor(3) as pool:
        headers, body_closed, idle = [
            f.result() for f in [pool.submit(c) for c in (headers_case, body_case, idle_case)]
        ]

    assert headers is not None and headers <= REQUEST_RECEIVE_SECONDS + MARGIN, headers
    assert body_closed is not None and body_closed <= REQUEST_RECEIVE_SECONDS + MARGIN, body_closed
    assert idle is not None and KEEP_ALIVE_SECONDS <= idle <= KEEP_ALIVE_SECONDS + MARGIN, idle
    metrics = service.metrics()
    assert metric_value(metrics, "okta_hook_refusals_total", reason="request_timeout") == 2
    assert 'status_code="5' not in metrics
    timeouts = [line for line in log_lines(service.log()) if line.get("reason") == "request_timeout"]
    assert len(timeouts) == 2 and all(line["status"] == 408 for line in timeouts), timeouts


def test_every_refusal_has_a_reason_and_echoes_nothing(service: RunningService) -> None:
    secret_path = "/hooks/alice.wong@example.com"
    not_found = service.client.post(service.hook_url + secret_path, json={})
    assert not_found.status_code == 404
    assert "alice" not in not_found.text and "hooks" not in not_found.text
    assert not_found.json() == {"message": "Not Found"}
    assert service.client.get(service.hook_url + HOOK).status_code == 405
    assert service.post("registration", b"x" * (300 * 1024)).status_code == 413
    assert service.post("registration", example("registration"), secret="wrong").status_code == 401
    assert service.post("registration", b"{nope").status_code == 400
    ops_404 = service.client.get(service.ops_url + "/alice.wong")
    assert ops_404.status_code == 404 and "alice" not in ops_404.text

    metrics = service.metrics()
    for route, reason in [
        ("unmatched", "not_found"),
        (HOOK, "method_not_allowed"),
        (HOOK, "too_large"),
    ]:
        assert metric_value(metrics, "okta_hook_refusals_total", route=route, reason=reason) == 1, (route, reason)
    # the handler's own refusals carry a reason too (its vocabulary may be finer than these defaults)
    assert metric_value(metrics, "okta_hook_refusals_total", route=HOOK) == 4
    assert "alice" not in metrics
    lines = log_lines(service.log())
    refusals = [line for line in lines if line.get("status", 0) >= 400]
    assert len(refusals) == 5
    assert all(isinstance(line.get("reason"), str) and line["reason"] for line in refusals), refusals
    assert not any("alice" in str(line) for line in lines)
    assert [line["route"] for line in refusals if line["event"] == "http_request"] == ["unmatched"]


def test_metrics_carry_no_created_series(service: RunningService) -> None:
    service.post("registration", example("registration"))
    text = service.metrics()
    assert "okta_hook_requests_total" in text and "http_server_request_duration_seconds_bucket" in text
    assert "_created" not in text
    openmetrics = service.client.get(
        service.ops_url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    ).text
    assert "okta_hook_requests_total" in openmetrics and "_created" not in openmetrics


def test_a_crafted_method_never_becomes_a_label(service: RunningService, slapd: Slapd) -> None:
    for method in itertools.islice(("PROPFIND", "ALICEWONG", "POSTX"), 3):
        with connect(service.hook_port) as sock:
            sock.sendall(f"{method} {HOOK} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
            assert sock.recv(65536).startswith(b"HTTP/1.1 405")
    metrics = service.metrics()
    assert "ALICEWONG" not in metrics and "PROPFIND" not in metrics
    assert metric_value(metrics, "okta_hook_refusals_total", route=HOOK, reason="method_not_allowed") == 3
