"""Verifying that a hook request comes from Okta: the shared secret of Okta's HEADER auth scheme.

Okta sends ``<header>: <secret>`` verbatim on every call; HTTP Basic is the same with
``Authorization: Basic <base64>`` as the secret. Several secrets can be valid at once so that one can be
rotated in Okta without downtime.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping

from service.oauth import BearerVerifier


class SecretVerifier:
    def __init__(self, header: str, secrets: Iterable[str]) -> None:
        self.header = header
        self._secrets = tuple(secret.encode() for secret in secrets)
        if not self._secrets or not all(self._secrets):
            raise ValueError("at least one non-empty hook secret is required")

    def verify(self, headers: Mapping[str, str]) -> bool:
        """True when the request carries one of the accepted secrets. Every secret is compared, in
        constant time, whatever matches first, so timing tells nothing about which or how close."""
        presented = headers.get(self.header)
        if presented is None:
            return False
        candidate = presented.encode()
        matched = False
        for secret in self._secrets:
            matched |= hmac.compare_digest(candidate, secret)
        return matched


class HookAuthenticator:
    """Okta's call is accepted when it carries one of the header secrets OR a valid bearer token (Okta's
    OAUTH channel). Configuring both lets a hook move from one channel to the other without downtime:
    the secret is compared first (constant time, no I/O); the token check may wait, bounded, for a key
    refetch."""

    def __init__(self, secret: SecretVerifier | None, bearer: BearerVerifier | None) -> None:
        if secret is None and bearer is None:
            raise ValueError("a header secret or OAuth is required")
        self._secret = secret
        self._bearer = bearer

    async def verify(self, headers: Mapping[str, str]) -> bool:
        if self._secret is not None and self._secret.verify(headers):
            return True
        return self._bearer is not None and await self._bearer.verify(headers)
