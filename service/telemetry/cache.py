"""Watching the cache: lookups by result, evictions, refreshes, and a log line when a refresh fails."""

from __future__ import annotations

import structlog

from service.directory import CacheResult
from service.telemetry.metrics import Metrics

log = structlog.get_logger("okta_ldap_hook")

CACHE_RESULTS: tuple[CacheResult, ...] = ("hit", "miss", "stale", "negative_hit")


class CacheTelemetry:
    """Implements :class:`service.cache.CacheObserver` for the cache of one hook type. Labels are the
    hook type and fixed vocabularies; never the query."""

    def __init__(self, metrics: Metrics, hook_type: str) -> None:
        self._hook_type = hook_type
        self._lookups = {result: metrics.cache_lookups.labels(hook_type, result) for result in CACHE_RESULTS}
        self._evictions = metrics.cache_evictions.labels(hook_type)
        self._refreshes = metrics.cache_refreshes
        self._refreshes.labels(hook_type, "ok")

    def looked_up(self, result: CacheResult) -> None:
        self._lookups[result].inc()

    def evicted(self) -> None:
        self._evictions.inc()

    def refreshed(self, error_kind: str | None) -> None:
        self._refreshes.labels(self._hook_type, error_kind or "ok").inc()
        if error_kind is not None:
            # the entry is still served (fresh, then stale while the directory fails); worth knowing why
            log.warning("cache_refresh_failed", hook_type=self._hook_type, error_kind=error_kind)
