"""Watching one directory's operations: a CLIENT span and a latency observation per LDAP operation,
its servers' health, and its service account's password; every series labelled by the directory's
configured name (``default`` for the one-directory form)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import structlog
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from service.directory import DirectoryError
from service.telemetry.logs import log_exception
from service.telemetry.metrics import Metrics


class DirectoryTelemetry:
    """Implements :class:`service.directory.DirectoryObserver` for the directory named ``name``. Spans
    carry the directory, the server and the outcome, never a filter, a DN or a value (there is no LDAP
    semantic convention; attribute names follow the OpenTelemetry Ruby ``net_ldap`` instrumentation)."""

    def __init__(self, metrics: Metrics, tracer: Tracer, name: str) -> None:
        self._metrics = metrics
        self._tracer = tracer
        self.name = name
        self._refused = metrics.bind_password_refused.labels(name)
        self._refused.set(0)

    def operation(self, name: str, server: str) -> AbstractContextManager[object]:
        return self._operation(name, server)

    @contextmanager
    def _operation(self, name: str, server: str) -> Iterator[None]:
        host, _, port = server.rpartition(":")
        attributes: dict[str, str | int] = {
            "server.address": host,
            "server.port": int(port),
            "network.transport": "tcp",
            "network.protocol.name": "ldap",
            "ldap.operation.type": name,
            "okta_hook.directory": self.name,
        }
        started = time.perf_counter()
        # Background work (health checks, prewarming) has no current span: metrics only, no orphan
        # root spans every few seconds.
        traced = trace.get_current_span().get_span_context().is_valid
        span_scope: AbstractContextManager[Span | None] = (
            self._tracer.start_as_current_span(
                f"LDAP {name}",
                kind=SpanKind.CLIENT,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            )
            if traced
            else nullcontext(None)
        )
        with span_scope as span:
            try:
                yield
            except DirectoryError as error:
                self._metrics.ldap_errors.labels(self.name, name, error.kind).inc()
                if span is not None:
                    span.set_attribute("error.type", error.kind)
                    span.set_status(Status(StatusCode.ERROR))
                raise
            finally:
                self._metrics.ldap_duration.labels(self.name, name).observe(time.perf_counter() - started)

    def server_up(self, server: str, up: bool) -> None:
        self._metrics.ldap_up.labels(self.name, server).set(1 if up else 0)

    def background_failed(self, task: str, error: Exception) -> None:
        log_exception("background_task_failed", error, task=task, directory=self.name)

    def password_refused(self, source: str, reason: str) -> None:
        self._refused.set(1)
        structlog.get_logger("okta_ldap_hook").error(
            "ldap_bind_password_refused",
            directory=self.name,
            source=source,
            reason=reason,
            retried_when="it changes, SIGHUP, restart",
        )

    def password_accepted(self, source: str) -> None:
        self._refused.set(0)
        structlog.get_logger("okta_ldap_hook").info("ldap_bind_password_accepted", directory=self.name, source=source)


def current_tracer(provider: trace.TracerProvider) -> Tracer:
    return provider.get_tracer("okta-ldap-hook")
