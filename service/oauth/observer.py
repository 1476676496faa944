"""The seam through which telemetry watches the key cache and the token checks without this package
knowing about metrics or log formats."""

from __future__ import annotations

from typing import Protocol


class OAuthObserver(Protocol):
    def keys_fetched(self, count: int) -> None:
        """The issuer's key set was fetched and holds ``count`` usable signing keys."""
        ...

    def fetch_failed(self, reason: str) -> None:
        """A fetch of the metadata or the key set failed; ``reason`` is one of ``FETCH_ERRORS``."""
        ...

    def token_refused(self, reason: str) -> None:
        """A bearer token was refused; ``reason`` is a :class:`~service.oauth.Rejection` value."""
        ...


class NullOAuthObserver:
    def keys_fetched(self, count: int) -> None:
        pass

    def fetch_failed(self, reason: str) -> None:
        pass

    def token_refused(self, reason: str) -> None:
        pass
