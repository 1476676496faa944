"""Verifying that a hook request comes from Okta: the shared secret of Okta's HEADER auth scheme.

Okta sends ``<header>: <secret>`` verbatim on every call; HTTP Basic is the same with
``Authorization: Basic <base64>`` as the secret. Several secrets can be valid at once so that one can be
rotated in Okta without downtime, and a secret file's current content is what counts
(:mod:`service.secret_files`): adding the new secret and removing the old one are edits of the files. Each
accepted call names the configured source that accepted it (``auth.secret_files[1]``, never the value),
so an operator sees when the old secret is no longer used.

The presented value is hostile until proven otherwise: Sanic decodes header bytes as UTF-8 with
``surrogateescape``, so a value with bytes 0x80-0xff that are not UTF-8 arrives as a string holding lone
surrogates, which a plain ``.encode()`` turns into an exception quoting the value. It is compared as the
bytes that were sent, and it is never put into a message, a log or a span.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from typing import Protocol

from service.oauth import BearerVerifier, Rejection
from service.secret_files import Credential, Fixed, Reading, as_credential

#: Far above any secret Okta can hold; a longer value is refused before it is compared.
MAX_PRESENTED_LENGTH = 4096
#: The source named for a call accepted by its bearer token.
OAUTH_SOURCE = "auth.oauth"


class AuthRefusal(StrEnum):
    """Why a request gets a 401, for the log line (never the value itself)."""

    MISSING = "missing"  # no such header
    MISMATCH = "mismatch"  # a well-formed value that is not an accepted secret
    #: Not UTF-8, control characters, longer than any secret, or the header sent more than once
    #: (two values: which one would a proxy in front have checked?).
    MALFORMED = "malformed"


class SecretVerifier:
    """The header secret against every configured source's current value. A plain string is a fixed
    secret named like an environment variable's (``auth.secret_env[<position>]``)."""

    def __init__(self, header: str, secrets: Iterable[str | Credential]) -> None:
        self.header = header
        self._sources = tuple(as_credential(s, f"auth.secret_env[{i}]") for i, s in enumerate(secrets))
        #: The configured sources' names, in order: the bounded values of the "accepted by" label.
        self.sources = tuple(source.name for source in self._sources)
        #: Only what can change is read on a call (a fixed value costs nothing after this).
        self._changing = tuple(source for source in self._sources if not isinstance(source, Fixed))
        self._readings: list[Reading] = [source.read() for source in self._changing]
        self._secrets = self._encoded()
        if not self._secrets or not all(secret for secret, _ in self._secrets):
            raise ValueError("at least one non-empty hook secret is required")

    def why_refused(self, presented: Sequence[str]) -> AuthRefusal | None:
        """None when the request carries one of the accepted secrets, else why not (see :meth:`check`)."""
        return self.check(presented)[0]

    def check(self, presented: Sequence[str]) -> tuple[AuthRefusal | None, str | None]:
        """``(None, the accepting source's name)`` when the request carries one of the accepted secrets,
        else ``(why not, None)``. ``presented`` is every value of the header in the request. Every secret
        is compared, in constant time, whatever matches first, so timing tells nothing about which or
        how close."""
        if not presented:
            return AuthRefusal.MISSING, None
        if len(presented) > 1:
            return AuthRefusal.MALFORMED, None
        value = presented[0]
        if len(value) > MAX_PRESENTED_LENGTH or not _well_formed(value):
            return AuthRefusal.MALFORMED, None
        candidate = value.encode("utf-8")
        accepted: str | None = None
        for secret, source in self._current():
            if hmac.compare_digest(candidate, secret) and accepted is None:
                accepted = source
        return (None, accepted) if accepted is not None else (AuthRefusal.MISMATCH, None)

    def _current(self) -> tuple[tuple[bytes, str], ...]:
        """Every source's secret as bytes, encoded again only when a file's value changed. Each read of
        a file is a clock comparison; the file is looked at every few seconds (:mod:`service.secret_files`)."""
        if self._changing:
            readings = [source.read() for source in self._changing]
            if readings != self._readings:  # the same Reading objects while nothing changed: identity
                self._readings = readings
                self._secrets = self._encoded()
        return self._secrets

    def _encoded(self) -> tuple[tuple[bytes, str], ...]:
        return tuple((source.read().value.encode(), source.name) for source in self._sources)


class Headers(Protocol):
    """The request's headers, every value of a repeated one included (Sanic's ``Header`` is one)."""

    def getall(self, key: str, default: list[str]) -> list[str]: ...


class HookAuthenticator:
    """Okta's call is accepted when it carries one of the header secrets OR a valid bearer token (Okta's
    OAUTH channel). Configuring both lets a hook move from one channel to the other without downtime:
    the secret is compared first (constant time, no I/O); the token check may wait, bounded, for a key
    refetch."""

    def __init__(
        self,
        secret: SecretVerifier | None,
        bearer: BearerVerifier | None,
        accepted: Callable[[str], None] = lambda source: None,
    ) -> None:
        if secret is None and bearer is None:
            raise ValueError("a header secret or OAuth is required")
        self._secret = secret
        self._bearer = bearer
        #: Told the source that accepted each accepted call (a secret source's name, or auth.oauth).
        self._accepted = accepted

    async def why_refused(self, headers: Headers) -> str | None:
        """None when the call is Okta's, else why not, from a fixed vocabulary: :class:`AuthRefusal`
        for the header secret, :class:`~service.oauth.Rejection` for a bearer token that was tried."""
        secret_refusal: str | None = None
        if self._secret is not None:
            secret_refusal, source = self._secret.check(headers.getall(self._secret.header, []))
            if source is not None:
                self._accepted(source)
                return None
        if self._bearer is None:
            return secret_refusal
        presented = headers.getall("authorization", [])
        if len(presented) > 1:
            return AuthRefusal.MALFORMED
        rejection = await self._bearer.verify(presented[0] if presented else None)
        if rejection is None:
            self._accepted(OAUTH_SOURCE)
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
