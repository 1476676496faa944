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
from collections.abc import Iterable, Sequence
from enum import StrEnum

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

    def refusal(self, presented: Sequence[str]) -> AuthRefusal | None:
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


def _well_formed(value: str) -> bool:
    """Valid UTF-8 as sent (no surrogate-escaped bytes) and no control character but a tab (RFC 9110
    field values)."""
    return not any(
        ("\ud800" <= character <= "\udfff") or (character < " " and character != "\t") or character == "\x7f"
        for character in value
    )
