"""Watching hook requests from the outside: the server span, the RED histogram, the outcome counters
and one summary log line per request."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from contextvars import Token
from dataclasses import dataclass, field
from typing import Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import NoOpTracer, Span, SpanKind, Status, StatusCode, Tracer
from prometheus_client.metrics import MetricWrapperBase

from service.hooks.result import HookResult
from service.policy import DENIAL_REASONS, Outcome
from service.telemetry.metrics import Metrics

log = structlog.get_logger("okta_ldap_hook")

#: The one header the server span's parent is read from, when it is a well-formed W3C traceparent.
#: Nothing else reaches OpenTelemetry's propagators: its baggage propagator raises on a non-UTF-8 value
#: (a 500 before authentication) and, like its tracestate parser, logs malformed values verbatim.
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def trace_context(headers: Mapping[str, str]) -> dict[str, str]:
    """The request's trace context as a carrier for :func:`propagate.extract`: its ``traceparent``
    when well-formed, else nothing (``tracestate`` and ``baggage`` are not read)."""
    value = headers.get("traceparent")
    return {"traceparent": value} if value is not None and _TRACEPARENT.fullmatch(value) else {}


@dataclass
class RequestObservation:
    method: str
    route: str
    hook_type: str | None
    #: :func:`time.monotonic` when the request's first byte arrived (or when observation began).
    started: float = field(default_factory=time.monotonic)
    span: Span | None = None
    token: Token[Context] | None = None
    #: Why the request was refused (401/400), from a fixed vocabulary.
    reason: str | None = None


class _Children:
    """The labelled children of one metric, resolved once per combination of label values:
    ``labels()`` takes the metric's lock and validates its arguments on every call, a cost paid on every
    hook request otherwise. Label values come from fixed vocabularies, so the mapping stays small."""

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: MetricWrapperBase) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


class RequestTelemetry:
    def __init__(self, metrics: Metrics, tracer: Tracer) -> None:
        self._metrics = metrics
        self._tracer = tracer
        #: No exporter configured: a request without a ``traceparent`` has no span to open or make
        #: current (the no-op tracer would return the invalid span). With one, the no-op tracer still
        #: carries the caller's trace context, so that log lines name the caller's trace.
        self._untraced = isinstance(tracer, NoOpTracer)
        self._durations = _Children(metrics.request_duration)
        self._outcomes = _Children(metrics.hook_requests)
        self._missing = _Children(metrics.directory_missing)

    def started(
        self,
        method: str,
        route: str,
        hook_type: str | None,
        headers: Mapping[str, str],
        received_at: float | None = None,
    ) -> RequestObservation:
        """Open the SERVER span (child of an incoming ``traceparent``) and make it current. The request's
        duration counts from ``received_at`` (:func:`time.monotonic` of its first byte) when given: time
        queued before the handler is part of what Okta waits."""
        self._metrics.in_flight.inc()
        observation = RequestObservation(method, route, hook_type)
        if received_at is not None:
            observation.started = received_at
        carrier = trace_context(headers)
        if self._untraced and not carrier:
            return observation
        parent = propagate.extract(carrier)
        span = self._tracer.start_span(
            f"{method} {route}" if route != "unmatched" else method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.scheme": "http", "http.route": route}
            if route != "unmatched"
            else {"http.request.method": method, "url.scheme": "http"},
        )
        observation.span = span
        observation.token = otel_context.attach(trace.set_span_in_context(span, parent))
        return observation

    def finished(
        self,
        observation: RequestObservation,
        status: int,
        outcome: Outcome | None,
        result: HookResult | None,
        reason: str | None = None,
    ) -> None:
        """Record everything about one finished request. ``result`` is the hook's
        :class:`~service.hooks.HookResult` when the hook ran; ``reason`` says why a request was refused
        (a fixed vocabulary: ``not_found``, ``client_closed``...), for every refusal, hook route or not.
        Status 499 (the client closed the connection first) is recorded as such, apart from 5xx."""
        elapsed = time.monotonic() - observation.started
        reason = reason or observation.reason
        self._metrics.in_flight.dec()
        span = observation.span
        exemplar = None
        if span is not None:
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
                span.set_attribute("error.type", str(status))
            if outcome is not None:
                span.set_attribute("okta_hook.outcome", outcome.value)
            if outcome is Outcome.FALLBACK_DEADLINE:
                span.add_event("okta_hook.deadline_exceeded")
            if result is not None and result.missing:
                span.set_attribute("okta_hook.missing_directories", [directory for directory, _ in result.missing])
            context = span.get_span_context()
            if context.is_valid and context.trace_flags.sampled:
                exemplar = {"trace_id": format(context.trace_id, "032x")}
        self._durations(observation.method, observation.route, str(status)).observe(elapsed, exemplar=exemplar)
        if reason is not None:
            self._metrics.refusals.labels(observation.route, reason).inc()
        hook_type = observation.hook_type
        if hook_type is not None and outcome is not None:
            self._outcomes(hook_type, outcome.value).inc()
            if result is not None:
                self._count(hook_type, outcome, result)
        if hook_type is not None:
            _log_hook_request(hook_type, status, outcome, result, reason, elapsed)
        elif reason is not None or status >= 500:
            # not a hook's route: its template (or "unmatched"), never the requested path
            log.info(
                "http_request",
                method=observation.method,
                route=observation.route,
                status=status,
                reason=reason,
                duration_ms=round(elapsed * 1000, 2),
            )
        if span is not None:
            span.end()
        if observation.token is not None:
            otel_context.detach(observation.token)

    def _count(self, hook_type: str, outcome: Outcome, result: HookResult) -> None:
        """The counters a hook's answer feeds besides its outcome."""
        metrics = self._metrics
        if result.denied and outcome in DENIAL_REASONS:
            metrics.denials.labels(hook_type, DENIAL_REASONS[outcome]).inc()
        if result.cache == "replay":
            metrics.replayed_answers.labels(hook_type).inc()
        elif result.stage is not None:
            metrics.deadline_exceeded.labels(hook_type, result.stage).inc()
        if result.groups_cut:
            metrics.groups_truncated.labels(hook_type, "claim_max").inc()
        if result.groups_incomplete:
            metrics.groups_truncated.labels(hook_type, "walk_bound").inc()
        if result.credential is not None:
            metrics.password_verifications.labels(result.credential, result.credential_reason or "").inc()
        if result.unsafe_identifier is not None:
            metrics.refused_identifiers.labels(hook_type, result.unsafe_identifier.value).inc()
        for directory, reason in result.missing:
            self._missing(hook_type, directory, reason).inc()


def _log_hook_request(
    hook_type: str, status: int, outcome: Outcome | None, result: HookResult | None, reason: str | None, elapsed: float
) -> None:
    """The ``hook_request`` line: the same fields on every line (null when they do not apply), so that
    log queries never depend on which path a request took."""
    if result is None:  # refused before the hook ran (401, 400...)
        log.info(
            "hook_request",
            event_id=None,
            event_id_rejected=None,
            hook_type=hook_type,
            outcome=outcome.value if outcome else None,
            reason=reason,
            status=status,
            denied=False,
            stage=None,
            error_kind=None,
            cache=None,
            credential=None,
            credential_reason=None,
            groups_truncated=False,
            missing_directories=None,
            duration_ms=round(elapsed * 1000, 2),
            directory_ms=0.0,
        )
        return
    exception = result.exception
    unsafe = result.unsafe_identifier
    # a bug answered with a fallback: the same line, at error level, with the traceback (type and
    # frames only: see telemetry.logs.safe_traceback)
    (log.info if exception is None else log.error)(
        "hook_request",
        exc_info=exception,
        event_id=result.event_id or None,
        event_id_rejected=result.event_id_rejected or None,
        hook_type=hook_type,
        outcome=outcome.value if outcome else None,
        reason=reason or (unsafe.value if unsafe is not None else None),
        status=status,
        denied=result.denied,
        stage=result.stage,
        error_kind=result.error_kind,
        cache=result.cache,
        credential=result.credential,
        credential_reason=result.credential_reason,
        groups_truncated=result.groups_cut or result.groups_incomplete,
        # several directories: which directory's part the answer lacks, and why ({"hr": "deadline"})
        missing_directories=dict(result.missing) if result.missing else None,
        duration_ms=round(elapsed * 1000, 2),
        directory_ms=round(result.directory_seconds * 1000, 2),
    )
