"""The deadline counts from the request's arrival, and a request that waited too long to start its
lookup is answered at once with the fallback (stage ``queue``): against the real process and slapd.

The wait is made with a client that sends the headers, then the body later (within the 3 s receive
bound): to the handler this is the same as time spent queued behind other requests, with none of a
loaded machine's randomness."""

from __future__ import annotations

import itertools
import json
import signal
import time

from connection_support import connect, metric_value, request_bytes
from okta_spec import registration_for
from support.config import service_config

from service.demo.slapd import Slapd

HOOK = "/hooks/registration"
_SENT = itertools.count()


def event(email: str = "rosario.jones@example.com") -> dict:
    """A registration for ``email`` with an eventId of its own: a repeated one would be answered as
    Okta's retry, from memory, before any deadline check."""
    body = registration_for(email)
    body["eventId"] = f"overload{next(_SENT)}"
    return body
DEADLINE = 1.5
MIN_LOOKUP = 1.0


def answer_after(port: int, delay: float, email: str = "rosario.jones@example.com") -> tuple[dict, float]:
    """POST a registration for ``email`` with its body ``delay`` s after its headers; the answer's JSON
    and the seconds from the first byte sent to the last byte received."""
    whole = request_bytes(HOOK, event(email))
    head_end = whole.index(b"\r\n\r\n") + 4
    with connect(port) as sock:
        started = time.monotonic()
        sock.sendall(whole[:head_end])
        time.sleep(delay)
        sock.sendall(whole[head_end:])
        received = b""
        while b"\r\n\r\n" not in received or len(received.partition(b"\r\n\r\n")[2]) < _length(received):
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        elapsed = time.monotonic() - started
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return json.loads(body), elapsed


def _length(received: bytes) -> int:
    head = received.partition(b"\r\n\r\n")[0].decode()
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return int(value)
    return 0


def test_a_request_that_waited_too_long_is_shed_with_stage_queue(slapd: Slapd, start_service) -> None:
    config = service_config(slapd.url)
    config["hooks"]["registration"]["deadline_seconds"] = DEADLINE
    config["hooks"]["registration"]["min_lookup_seconds"] = MIN_LOOKUP
    service = start_service(config)

    prompt, _ = answer_after(service.hook_port, 0.0)
    assert prompt["debugContext"]["outcome"] == "enriched", prompt
    # 0.8 s of the 1.5 s gone before the handler: 0.7 s left, less than the 1.0 s a lookup may need
    late, elapsed = answer_after(service.hook_port, 0.8, "alice.wong@example.com")  # not in the cache
    assert set(late) == {"debugContext"}, late  # nothing from the directory
    assert late["debugContext"]["outcome"] == "fallback_deadline"
    assert late["debugContext"]["deadlineStage"] == "queue"
    assert elapsed < DEADLINE + 1.0, elapsed  # well before the deadline would have passed plus a margin

    metrics = service.metrics()
    assert metric_value(metrics, "okta_hook_deadline_exceeded_total", hook_type="registration", stage="queue") == 1
    assert metric_value(metrics, "okta_hook_requests_total", hook_type="registration", outcome="fallback_deadline") == 1
    assert metric_value(metrics, "okta_hook_ldap_operation_duration_seconds_count", operation="search") == 1


def test_a_late_request_for_a_cached_user_is_answered_from_the_cache(slapd: Slapd, start_service) -> None:
    """Shedding spares the directory, not the cache: an entry in memory needs no lookup, so a request
    that waited too long for one is still answered enriched."""
    config = service_config(slapd.url)
    config["hooks"]["registration"]["deadline_seconds"] = DEADLINE
    config["hooks"]["registration"]["min_lookup_seconds"] = MIN_LOOKUP
    service = start_service(config)

    assert answer_after(service.hook_port, 0.0)[0]["debugContext"]["cache"] == "miss"
    late, _ = answer_after(service.hook_port, 0.8)  # the same person, now in the cache
    assert late["debugContext"]["outcome"] == "enriched", late
    assert late["debugContext"]["cache"] == "hit"
    assert late["commands"][0]["value"]["department"]
    metrics = service.metrics()
    assert metric_value(metrics, "okta_hook_deadline_exceeded_total", hook_type="registration", stage="queue") == 0
    assert metric_value(metrics, "okta_hook_ldap_operation_duration_seconds_count", operation="search") == 1


def test_min_lookup_must_fit_in_the_deadline() -> None:
    import pytest

    from service.settings import ConfigError, parse_settings

    config = service_config("ldap://127.0.0.1:389")
    config["hooks"]["registration"]["min_lookup_seconds"] = 2.5
    with pytest.raises(ConfigError, match=r"hooks\.registration: min_lookup_seconds must be less than deadline"):
        parse_settings(config)


def test_time_the_process_was_not_running_counts(slapd: Slapd, start_service) -> None:
    """A request that arrives while the process is stopped (as a pod throttled at its CPU limit is) waits
    in the kernel; its deadline started when it arrived, not when the process first read it."""
    config = service_config(slapd.url)
    config["hooks"]["registration"]["deadline_seconds"] = DEADLINE
    config["hooks"]["registration"]["min_lookup_seconds"] = MIN_LOOKUP
    service = start_service(config)
    assert answer_after(service.hook_port, 0.0)[0]["debugContext"]["outcome"] == "enriched"

    whole = request_bytes(HOOK, event("alice.wong@example.com"))  # not in the cache: a lookup is needed
    with connect(service.hook_port) as sock:
        service.process.send_signal(signal.SIGSTOP)
        try:
            sock.sendall(whole)
            time.sleep(0.8)  # 0.7 s of the 1.5 s left when the process runs again: less than 1.0
        finally:
            service.process.send_signal(signal.SIGCONT)
        received = b""
        while b"}" not in received.partition(b"\r\n\r\n")[2] or len(received.partition(b"\r\n\r\n")[2]) < _length(
            received
        ):
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    answer = json.loads(received.partition(b"\r\n\r\n")[2])
    assert answer["debugContext"]["outcome"] == "fallback_deadline", answer
    assert answer["debugContext"]["deadlineStage"] == "queue"
