"""Watching the cache: lookups by result, evictions by cause, refreshes, and a log line when a refresh
fails; and the directory's change feed that evicts from the caches: changes seen, polls, lag, and a log
line when the caches fall back to their short fresh time or come back."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import structlog

from service.cache import EVICTION_CAUSES, EvictionCause
from service.directory import CacheResult, Changes
from service.telemetry.metrics import Metrics

log = structlog.get_logger("okta_ldap_hook")

CACHE_RESULTS: tuple[CacheResult, ...] = ("hit", "miss", "stale", "negative_hit")


class CacheTelemetry:
    """Implements :class:`service.cache.CacheObserver` for the cache of one hook type and directory.
    Labels are the hook type, the directory's configured name and fixed vocabularies; never the query."""

    def __init__(self, metrics: Metrics, hook_type: str, directory: str) -> None:
        self._hook_type = hook_type
        self._directory = directory
        self._lookups = {result: metrics.cache_lookups.labels(hook_type, directory, result) for result in CACHE_RESULTS}
        self._evictions = {
            cause: metrics.cache_evictions.labels(hook_type, directory, cause) for cause in EVICTION_CAUSES
        }
        self._refreshes = metrics.cache_refreshes
        self._refreshes.labels(hook_type, directory, "ok")

    def looked_up(self, result: CacheResult) -> None:
        self._lookups[result].inc()

    def evicted(self, cause: EvictionCause, count: int = 1) -> None:
        self._evictions[cause].inc(count)

    def refreshed(self, error_kind: str | None) -> None:
        self._refreshes.labels(self._hook_type, self._directory, error_kind or "ok").inc()
        if error_kind is not None:
            # the entry is still served (fresh, then stale while the directory fails); worth knowing why
            log.warning(
                "cache_refresh_failed", hook_type=self._hook_type, directory=self._directory, error_kind=error_kind
            )


#: Why a poll of the change feed failed: slower than the feed may lag, or a directory error kind.
FEED_FAILURES = ("behind", "timeout", "connect", "tls", "bind_failed", "session_lost", "server_error", "other")


class FeedTelemetry:
    """Watches one directory's change feed (the server's wiring reports each poll). Labels are the
    directory's configured name and fixed vocabularies; logs name no entry (a DN is personal data)."""

    def __init__(self, metrics: Metrics, directory: str, lag: Callable[[], float], current: Callable[[], bool]) -> None:
        self._directory = directory
        self._lag = lag
        self._changes = {kind: metrics.change_feed_changes.labels(directory, kind) for kind in ("changed", "deleted")}
        self._poll_counter = metrics.change_feed_polls
        self._polls = {
            result: metrics.change_feed_polls.labels(directory, result) for result in ("ok", "resync", *FEED_FAILURES)
        }
        metrics.change_feed_lag.labels(directory).set_function(lag)
        metrics.change_feed_current.labels(directory).set_function(lambda: 1.0 if current() else 0.0)

    def polled(self, changes: Changes, evictions: Mapping[EvictionCause, int], was_current: bool) -> None:
        deleted = len(changes.deleted)
        self._changes["changed"].inc(len(changes.entries) - deleted)
        self._changes["deleted"].inc(deleted)
        self._polls["resync" if changes.resync else "ok"].inc()
        if changes.resync:
            # first poll, another server, or more changes than one answer holds: entries read before
            # live fresh_seconds, as without the feed, until they are read again
            log.info(
                "change_feed_resync",
                directory=self._directory,
                changes=len(changes.entries),
                evictions=sum(evictions.values()),
            )
        if not was_current:
            log.info("change_feed_current", directory=self._directory)

    def failed(self, kind: str, was_current: bool) -> None:
        polls = self._polls.get(kind) or self._poll_counter.labels(self._directory, kind)
        polls.inc()
        if was_current:
            log.warning(
                "change_feed_behind", directory=self._directory, error_kind=kind, lag_seconds=round(self._lag(), 1)
            )
