"""Watching the OAuth key cache and bearer-token refusals: metrics and log lines with bounded reasons,
never a token, a claim value or a URL."""

from __future__ import annotations

import time

import structlog

from service.telemetry.metrics import Metrics

log = structlog.get_logger("okta_ldap_hook")


class OAuthTelemetry:
    """Implements :class:`service.oauth.OAuthObserver`."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def declare(self, fetch_errors: tuple[str, ...], rejections: tuple[str, ...]) -> None:
        """Series at zero, so the first failure is a visible increase (only when OAuth is configured)."""
        for reason in fetch_errors:
            self._metrics.oauth_fetch_errors.labels(reason)
        for reason in rejections:
            self._metrics.oauth_rejections.labels(reason)

    def keys_fetched(self, count: int) -> None:
        self._metrics.oauth_keys.set(count)
        self._metrics.oauth_last_fetch.set(time.time())
        log.info("oauth_keys_fetched", keys=count)

    def fetch_failed(self, reason: str) -> None:
        self._metrics.oauth_fetch_errors.labels(reason).inc()
        log.warning("oauth_keys_fetch_failed", reason=reason)

    def token_refused(self, reason: str) -> None:
        self._metrics.oauth_rejections.labels(reason).inc()
        log.info("oauth_token_refused", reason=reason)
