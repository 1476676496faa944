"""Verifying that a hook request comes from Okta: the shared secret of Okta's HEADER auth scheme.

Okta sends ``<header>: <secret>`` verbatim on every call; HTTP Basic is the same with
``Authorization: Basic <base64>`` as the secret. Several secrets can be valid at once so that one can be
rotated in Okta without downtime.

The presented value is hostile until proven otherwise: Sanic decodes header bytes as UTF-8 with
``surrogateescape``, so a value with bytes 0x80-0xff that are not UTF-8 arrives as a string holding lone
surrogates, which a plain ``.encode()`` turns into an exception quoting the value. It is compared as the
bytes that were sent, and it is never put into a message, a log or a span.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Protocol

from service.oauth import BearerVerifier, Rejection

#: Far above any secret Okta can hold; a longer value is refused before it is compared.
MAX_PRESENTED_LENGTH = 4096


class AuthRefusal(StrEnum):
    """Why a request gets a 401, for the log line (never the value itself)."""

    MISSING = "missing"  # no such header
    MISMATCH = "mismatch"  # a well-formed value that is not an accepted secret
    #: Not UTF-8, control characters, longer than any secret, or the header sent more than once
    #: (two values: which one would a proxy in front have checked?).
    MALFORMED = "malformed"


class SecretVerifier:
    def __init__(self, header: str, secrets: Iterable[str]) -> None:
        self.header = header
        self._secrets = tuple(secret.encode() for secret in secrets)
        if not self._secrets or not all(self._secrets):
            raise ValueError("at least one non-empty hook secret is required")

    def why_refused(self, presented: Sequence[str]) -> AuthRefusal | None:
        """None when the request carries one of the accepted secrets, else why not. ``presented`` is
        every value of the header in the request. Every secret is compared, in constant time, whatever
        matches first, so timing tells nothing about which or how close."""
        if not presented:
            return AuthRefusal.MISSING
        if len(presented) > 1:
            return AuthRefusal.MALFORMED
        value = presented[0]
        if len(value) > MAX_PRESENTED_LENGTH or not _well_formed(value):
            return AuthRefusal.MALFORMED
        candidate = value.encode("utf-8")
        matched = False
        for secret in self._secrets:
            matched |= hmac.compare_digest(candidate, secret)
        return None if matched else AuthRefusal.MISMATCH


class Headers(Protocol):
    """The request's headers, every value of a repeated one included (Sanic's ``Header`` is one)."""

    def getall(self, key: str, default: list[str]) -> list[str]: ...


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

    async def why_refused(self, headers: Headers) -> str | None:
        """None when the call is Okta's, else why not, from a fixed vocabulary: :class:`AuthRefusal`
        for the header secret, :class:`~service.oauth.Rejection` for a bearer token that was tried."""
        secret_refusal: str | None = None
        if self._secret is not None:
            secret_refusal = self._secret.why_refused(headers.getall(self._secret.header, []))
            if secret_refusal is None:
                return None
        if self._bearer is None:
            return secret_refusal
        presented = headers.getall("authorization", [])
        if len(presented) > 1:
            return AuthRefusal.MALFORMED
        rejection = await self._bearer.verify(presented[0] if presented else None)
        if rejection is None:
            return None
        if rejection is Rejection.NOT_BEARER and secret_refusal is not None:
            return secret_refusal  # no token was tried: say why the secret failed
        return rejection.value


#: A character a header value must not hold: a control character but a tab (RFC 9110 field values),
#: or a surrogate (a byte that was not UTF-8, surrogate-escaped by Sanic).
_MALFORMED = re.compile("[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")


def _well_formed(value: str) -> bool:
    """Valid UTF-8 as sent and no control character but a tab. One regular-expression scan: this runs
    on every hook call."""
    return _MALFORMED.search(value) is None
