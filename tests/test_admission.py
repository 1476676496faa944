"""Admission before the lookup: when the lookups already waiting for a worker thread cannot all start
in time, a new request is answered with the fallback at once (stage ``queue``), not after waiting its
whole deadline in a queue that could not serve it. In process, against the real slapd behind a proxy
that makes every LDAP reply slow."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from admission_support import SlowDirectory
from connection_support import metric_value
from in_process import InProcessService
from okta_spec import registration_for
from support.config import directory_config, service_config

from service.demo.slapd import Slapd

DEADLINE = 2.0
REPLY_DELAY = 0.25  # per LDAP reply: a lookup (search, then the manager's entry) takes about 0.5 s
CONCURRENT = 12
#: As many people as calls: one person's concurrent calls would share one lookup.
PEOPLE = [
    "carol.chen@example.com",
    "rosario.jones@example.com",
    "alice.wong@example.com",
    "john.smith@example.com",
    "user@example.com",
    "jose.muller@example.com",
    "zoe.angstrom@example.com",
    "orphan.report@example.com",
    "plain.user@example.com",
    "administrator1@clouditude.net",
    "sally.admin@example.net",
    "Mixed.Case@Example.COM",
]
NO_CACHE = {"fresh_seconds": 0, "stale_seconds": 0, "negative_seconds": 0}


def event(email: str, number: int) -> dict:
    """A registration for ``email`` with an eventId of its own (a repeated one is Okta's retry)."""
    body = registration_for(email)
    body["eventId"] = f"admission{number}"
    return body


@pytest.fixture
def slow_directory(slapd: Slapd) -> Iterator[SlowDirectory]:
    proxy = SlowDirectory(int(slapd.url.rsplit(":", 1)[1]), REPLY_DELAY)
    yield proxy
    proxy.close()


def test_lookups_that_cannot_start_in_time_are_shed_at_once(
    slow_directory: SlowDirectory, start_in_process: Callable[..., InProcessService]
) -> None:
    config = service_config(slow_directory.url)
    config["directory"] = directory_config(slow_directory.url, pool_size=1, operation_timeout_seconds=2.0)
    config["hooks"]["registration"]["deadline_seconds"] = DEADLINE
    config["hooks"]["registration"]["min_lookup_seconds"] = 0.1
    config["hooks"]["registration"]["cache"] = NO_CACHE  # every call a lookup: this is about the queue
    service = start_in_process(config)
    secret = service.default_secret

    for number in range(2):  # the service learns how long a lookup takes
        warm = service.post("registration", event(PEOPLE[number], 100 + number))
        assert warm.json()["debugContext"]["outcome"] == "enriched", warm.text

    def post(number: int) -> dict:
        with httpx.Client(timeout=10) as client:
            response = client.post(
                f"{service.hook_url}/hooks/registration",
                json=event(PEOPLE[number], number),
                headers={"Authorization": secret},
            )
        assert response.status_code == 200, response.text
        return response.json()["debugContext"]

    # one thread, 0.5 s a lookup, 2 s to answer: a dozen at once cannot all be served in time
    with ThreadPoolExecutor(CONCURRENT) as clients:
        answers = list(clients.map(post, range(CONCURRENT)))

    outcomes = [answer["outcome"] for answer in answers]
    assert "enriched" in outcomes, outcomes  # those that could start in time were served
    shed = [answer for answer in answers if answer.get("deadlineStage") == "queue"]
    assert shed, answers  # the rest answered at once, without joining the queue
    # answered without a lookup: one through the proxy takes two replies, 500 ms at least
    assert all(answer["outcome"] == "fallback_deadline" and answer["directoryMs"] < 500 for answer in shed), shed

    metrics = service.metrics()
    queue = metric_value(metrics, "okta_hook_deadline_exceeded_total", hook_type="registration", stage="queue")
    assert queue == len(shed)
    # every answer arrived, within the deadline as the service timed it from the first byte
    labels = {"route": "/hooks/registration", "status_code": "200"}
    answered = metric_value(metrics, "http_server_request_duration_seconds_count", **labels)
    in_time = metric_value(metrics, "http_server_request_duration_seconds_bucket", le="2.5", **labels)
    assert answered == CONCURRENT + 2
    assert in_time == answered
