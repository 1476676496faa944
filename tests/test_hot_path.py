"""The per-request hot path made cheaper (issue 9 follow-up) and still saying the same things: the
strict JSON checks refuse exactly what they refused (same reasons, same order of faults), the prebuilt
JSON encoders write exactly what ``json.dumps`` writes, and a real service process still writes one
``hook_request`` line per request with the same fields, trace ids only when the caller sent a trace
context, and counts every request in its metrics."""

from __future__ import annotations

import datetime
import json
import re
import time
from typing import Any

import pytest
import structlog
from connection_support import log_lines, metric_value, wait_until
from okta_spec import example
from support.servers import RunningService

from service.hooks.registry import HookType
from service.json_text import encoder
from service.okta import EventError, parse_event
from service.okta.events import MAX_DEPTH, MAX_NUMBER_DIGITS
from service.telemetry.logs import UtcTimestamp

# -- strict JSON: the same refusals -----------------------------------------------------------------

_HEAD = '{"eventType": "com.okta.user.pre-registration", "data": {"userProfile": {"login": "a@example.com"}}'


def _reason(body: str) -> str | None:
    try:
        parse_event(body.encode(), HookType.REGISTRATION)
    except EventError as error:
        return error.reason.value
    return None


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


_DIGITS = "9" * MAX_NUMBER_DIGITS
_TOO_MANY = "9" * (MAX_NUMBER_DIGITS + 1)


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (f"{_DIGITS}", None),  # 32 digits: accepted
        (f"-{_DIGITS}", None),
        (f"{_TOO_MANY}", "number_too_large"),
        (f"-{_TOO_MANY}", "number_too_large"),
        (f"1.{_TOO_MANY}", "number_too_large"),  # a fraction of 33 digits
        (f"1e{_TOO_MANY}", "non_finite_number"),  # far beyond 1.8e308: refused as it is read
        (f"1e-{_TOO_MANY}", "number_too_large"),  # 0.0, but 33 digits in a row
        (f"1.{_DIGITS}e-{_DIGITS}", None),  # long, but no run over 32
        (f'"{_TOO_MANY}"', None),  # digits in a string are not a number
        ("9" * 5000, "number_too_large"),  # beyond int()'s own limit
        (_nested(MAX_DEPTH - 1), None),  # the event object is one level: 32 in all
        (_nested(MAX_DEPTH), "too_deep"),
        ('"' + "[" * 100 + "{" * 100 + '"', None),  # brackets in a string nest nothing
        ('"' + "]" * 40 + '", "y": ' + _nested(MAX_DEPTH), "too_deep"),  # nor hide a real nesting
        ("[" + ",".join(["{}"] * 200) + "]", None),  # many containers, shallow
        (f'{_TOO_MANY}, "x": 1', "duplicate_key"),  # a syntax fault is found first, as the decoder reads
        (f"{_TOO_MANY}, nope", "invalid_json"),
        (f'{_TOO_MANY}, "y": {_nested(40)}', "number_too_large"),  # numbers before depth
        ('"\\ud800"', "lone_surrogate"),
        (f'"\\ud800", "y": {_TOO_MANY}', "number_too_large"),
        ('"\\ud83d\\ude00"', None),  # a pair is fine
    ],
)
def test_strict_json_refuses_what_it_refused(extra: str, reason: str | None) -> None:
    assert _reason(_HEAD + ', "x": ' + extra + "}") == reason


@pytest.mark.parametrize("hook_type", list(HookType))
def test_okta_examples_still_parse(hook_type: HookType) -> None:
    event = parse_event(json.dumps(example(hook_type.value)).encode(), hook_type)
    assert event.subject.login or event.subject.email


# -- prebuilt encoders write what json.dumps writes --------------------------------------------------

_VALUES: list[Any] = [
    {"commands": [{"type": "com.okta.user.profile.update", "value": {"title": 'Ingénieur \u2028 "x"'}}]},
    {"debugContext": {"outcome": "enriched", "directoryMs": 0, "cache": "hit"}, "n": [1.5, -0.0, 1e300, None]},
    {"nested": [[[{"a": True, "b": False}]]], "big": 10**30},
    [],
    {},
    "text",
    3,
    None,
]


@pytest.mark.parametrize("value", _VALUES)
@pytest.mark.parametrize("separators", [(", ", ": "), (",", ":")])
def test_encoder_writes_what_json_dumps_writes(value: Any, separators: tuple[str, str]) -> None:
    assert encoder(separators=separators)(value) == json.dumps(value, separators=separators)


def test_encoder_uses_default_and_refuses_what_json_dumps_refuses() -> None:
    assert encoder(default=repr)({"x": set}) == json.dumps({"x": set}, default=repr)
    with pytest.raises(TypeError):
        encoder()({"x": object()})
    assert encoder()({"x": float("nan")}) == json.dumps({"x": float("nan")})  # NaN written, as json.dumps does


# -- a real process: the one line per request, the metrics, trace ids only when asked ---------------

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
LINE_FIELDS = {
    "event",
    "level",
    "timestamp",
    "event_id",
    "event_id_rejected",
    "hook_type",
    "outcome",
    "reason",
    "status",
    "denied",
    "stage",
    "error_kind",
    "cache",
    "groups_truncated",
    "missing_directories",
    "credential",
    "credential_reason",
    "duration_ms",
    "directory_ms",
}


def test_one_line_per_request_and_every_request_counted(service: RunningService) -> None:
    event = example("registration")
    before = service.metrics()
    plain = service.post("registration", {**event, "eventId": "plainCall1"})
    traced = service.post("registration", {**event, "eventId": "tracedCall1"}, headers={"traceparent": TRACEPARENT})
    refused = service.post("registration", b"{nope")
    assert plain.status_code == traced.status_code == 200
    assert refused.status_code == 400
    assert plain.json()["commands"] == traced.json()["commands"]

    def lines() -> list[dict[str, Any]]:
        return [line for line in log_lines(service.log()) if line.get("event") == "hook_request"]

    assert wait_until(lambda: len(lines()) >= 3)
    by_id = {line.get("event_id"): line for line in lines()}
    assert len(lines()) == 3
    untraced, with_trace = by_id["plainCall1"], by_id["tracedCall1"]
    # tracing is off (no exporter): no ids, unless the caller sent its trace context
    assert "trace_id" not in untraced and "span_id" not in untraced
    assert with_trace["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert with_trace["span_id"] == "b7ad6b7169203331"
    assert set(untraced) == set(with_trace) - {"trace_id", "span_id"} == LINE_FIELDS  # the same fields
    assert untraced["outcome"] == with_trace["outcome"] == "enriched"
    assert untraced["level"] == "info" and untraced["timestamp"].endswith("Z")
    assert by_id[None]["outcome"] == "bad_request" and by_id[None]["reason"] == "invalid_json"

    after = service.metrics()

    def delta(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert delta("okta_hook_requests_total", hook_type="registration", outcome="enriched") == 2
    assert delta("okta_hook_requests_total", hook_type="registration", outcome="bad_request") == 1
    route = "/hooks/registration"
    assert delta("http_server_request_duration_seconds_count", route=route, status_code="200") == 2
    assert delta("http_server_request_duration_seconds_count", route=route, status_code="400") == 1
    assert delta("okta_hook_refusals_total", route=route, reason="invalid_json") == 1
    assert metric_value(after, "http_server_requests_in_flight") == 0


# -- the log line's timestamp: TimeStamper(fmt="iso", utc=True)'s text, formatted once per second ----


@pytest.mark.parametrize(
    "nanoseconds",
    [1_795_000_000_000_000_000, 1_795_000_000_000_001_000, 1_795_000_000_999_999_999, 1_795_000_059_123_456_789],
)
def test_log_timestamp_is_structlogs_iso_utc_text(nanoseconds: int, monkeypatch: pytest.MonkeyPatch) -> None:
    stamp = UtcTimestamp()
    stamp(None, "info", {})  # another second first: the cached text is replaced, not reused
    monkeypatch.setattr(time, "time_ns", lambda: nanoseconds)
    second, rest = divmod(nanoseconds, 1_000_000_000)
    moment = datetime.datetime.fromtimestamp(second, datetime.UTC).replace(microsecond=rest // 1000)
    assert stamp(None, "info", {})["timestamp"] == moment.isoformat().replace("+00:00", "Z")
    monkeypatch.undo()
    now = stamp(None, "info", {})["timestamp"]
    reference = structlog.processors.TimeStamper(fmt="iso", utc=True)(None, "info", {})["timestamp"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", now)
    assert abs(datetime.datetime.fromisoformat(now) - datetime.datetime.fromisoformat(reference)).total_seconds() < 5
