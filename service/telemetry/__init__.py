"""Telemetry beside the hook logic: metrics, traces and logs, wired in from the outside.

The hook handlers never open spans or touch metrics. The server calls :class:`RequestTelemetry` from
its request/response middleware, and each directory reports through a :class:`DirectoryTelemetry`
observer of its own (:meth:`Telemetry.directory_observer`), the OAuth key cache and token checks through
the :class:`OAuthTelemetry` observer. Directory-related series carry a ``directory`` label: the
configured name (``default`` for the one-directory form), a small set fixed by the configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import get_args

import structlog
from opentelemetry.trace import TracerProvider

from service.directory.config import DirectoryRole
from service.directory.errors import ErrorKind
from service.okta import UnsafeIdentifier
from service.policy import DENIAL_REASONS, Outcome
from service.telemetry.cache import CacheTelemetry, FeedTelemetry
from service.telemetry.credentials import CredentialFileTelemetry, accepted_counter
from service.telemetry.directory import DirectoryTelemetry, current_tracer
from service.telemetry.logs import configure_logging
from service.telemetry.metrics import Metrics
from service.telemetry.oauth import OAuthTelemetry
from service.telemetry.requests import RequestTelemetry
from service.telemetry.tracing import provider_from_environment, shutdown

#: Where a deadline can hit: ``queue`` before the lookup starts (load shedding), then the directory's stages.
STAGES = ("queue", "pool_wait", "connect", "bind", "search", "resolve", "groups", "user_bind")
GROUP_LIMITS = ("claim_max", "walk_bound")
#: Refusals declared at zero on every hook route (the handler and Sanic may use finer reasons too).
ROUTE_REFUSALS = ("unauthorized", "bad_request", "method_not_allowed", "too_large", "request_timeout", "client_closed")
#: Why a directory's part is missing from an answer (``okta_hook_directory_missing_total{reason}``, Okta's
#: ``debugContext.missingDirectories``): the deadline passed, or the directory failed with this kind.
MISSING_REASONS: tuple[str, ...] = ("deadline", *get_args(ErrorKind))


class Telemetry:
    def __init__(self, metrics: Metrics | None = None, tracer_provider: TracerProvider | None = None) -> None:
        self.metrics = metrics or Metrics()
        self.tracer_provider = tracer_provider or provider_from_environment()
        tracer = current_tracer(self.tracer_provider)
        self._tracer = tracer
        self.requests = RequestTelemetry(self.metrics, tracer)
        self.oauth = OAuthTelemetry(self.metrics)
        self.credential_files = CredentialFileTelemetry(self.metrics)
        self._directories: dict[str, DirectoryTelemetry] = {}

    def directory_observer(self, name: str) -> DirectoryTelemetry:
        """The observer of the directory configured as ``name`` (one per name: asked again, the same
        one), its series labelled ``directory=name``."""
        observer = self._directories.get(name)
        if observer is None:
            observer = self._directories[name] = DirectoryTelemetry(self.metrics, self._tracer, name)
        return observer

    def declare(self, hook_types: Mapping[str, bool], servers: Mapping[str, Iterable[str]]) -> None:
        """Create the labelled series at zero, so that the first fallback is a visible increase and
        dashboards show every hook type and directory before it is called. ``hook_types``: each served
        hook type, and whether it can deny (its denials are counted); ``servers``: each configured
        directory's name and its servers (``host:port``)."""
        m = self.metrics
        for hook_type, denies in hook_types.items():
            for outcome in Outcome:
                m.hook_requests.labels(hook_type, outcome.value)
            for stage in STAGES:
                m.deadline_exceeded.labels(hook_type, stage)
            for limit in GROUP_LIMITS:
                m.groups_truncated.labels(hook_type, limit)
            for refusal in UnsafeIdentifier:
                m.refused_identifiers.labels(hook_type, refusal.value)
            if denies:
                for reason in DENIAL_REASONS.values():
                    m.denials.labels(hook_type, reason)
        for directory, names in servers.items():
            for server in names:
                m.ldap_up.labels(directory, server)
            for hook_type in hook_types:
                for reason in MISSING_REASONS:
                    m.directory_missing.labels(hook_type, directory, reason)

    def declare_password_verifications(self, reasons: Mapping[str, Iterable[str]]) -> None:
        """Create every (result, reason) series of the password import checks at zero."""
        for result, names in reasons.items():
            for reason in names:
                self.metrics.password_verifications.labels(result, reason)

    def declare_routes(self, routes: Iterable[str]) -> None:
        """Create the refusal series of each hook route at zero, for the reasons any caller can cause."""
        for route in routes:
            for reason in ROUTE_REFUSALS:
                self.metrics.refusals.labels(route, reason)

    def count_accepted(self, sources: Iterable[str]) -> Callable[[str], None]:
        """The counter of accepted hook calls by source (``okta_hook_auth_accepted_total``)."""
        return accepted_counter(self.metrics, sources)

    def watch_pool(self, directory: str, state: Callable[[], tuple[int, int, int]]) -> None:
        """Read a directory's connection pool's (size, in use, waiting) when Prometheus scrapes, rather
        than updating gauges on every lookup."""
        self.metrics.pool_size.labels(directory).set_function(lambda: state()[0])
        self.metrics.pool_in_use.labels(directory).set_function(lambda: state()[1])
        self.metrics.pool_waiting.labels(directory).set_function(lambda: state()[2])

    def watch_directory(self, directory: str, role: DirectoryRole, up: Callable[[], bool]) -> None:
        """Read whether a directory is up (at least one of its servers passed its last check) when
        Prometheus scrapes: ``okta_hook_directory_up``. ``role`` tells the alert what an outage costs:
        every answer for an ``accounts`` directory's people (a page), one part of them for a ``joined`` one."""
        self.metrics.directory_up.labels(directory, role).set_function(lambda: 1.0 if up() else 0.0)

    def cache(self, hook_type: str, directory: str) -> CacheTelemetry:
        """The observer of the cache of one hook type and directory."""
        self.metrics.replayed_answers.labels(hook_type)
        return CacheTelemetry(self.metrics, hook_type, directory)

    def change_feed(self, directory: str, lag: Callable[[], float], current: Callable[[], bool]) -> FeedTelemetry:
        """The observer of a directory's change feed; ``lag`` and ``current`` are read at each scrape."""
        return FeedTelemetry(self.metrics, directory, lag, current)

    def watch_cache(self, hook_type: str, directory: str, size: Callable[[], int]) -> None:
        """Read the number of entries of the cache of one hook type and directory when Prometheus scrapes."""
        self.metrics.cache_entries.labels(hook_type, directory).set_function(size)

    def cache_flushed(self, entries: int, rearmed_bind: bool = False) -> None:
        """SIGHUP: ``entries`` forgotten; ``rearmed_bind``: a refused bind password may be tried once more."""
        self.metrics.cache_flushes.inc()
        structlog.get_logger("okta_ldap_hook").info("cache_flushed", entries=entries, rearmed_bind=rearmed_bind)

    def shutdown(self) -> None:
        shutdown(self.tracer_provider)


__all__ = ["MISSING_REASONS", "DirectoryTelemetry", "Metrics", "Telemetry", "configure_logging"]
