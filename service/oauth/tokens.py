"""Checking the bearer token of one hook call: signature, issuer, audience, lifetime, scope, client.

PyJWT (with its ``crypto`` extra, i.e. pyca/cryptography) does the JOSE work: it is the library Okta's own
guide names for Python, it is small with one dependency, it takes an explicit algorithm allow-list on every
decode, it refuses a token whose ``alg`` is outside it (``none``, HS*), and it checks ``exp``/``nbf``/``iat``
with a leeway and ``iss``/``aud`` itself. Keys come from :class:`~service.oauth.keys.IssuerKeys`.

The header and the claims are JSON read as strictly as an Okta event (:func:`service.okta.read_json`:
UTF-8 only, no duplicate key, no NaN), not with PyJWT's ``json.loads``: a repeated ``alg`` or ``exp`` must
not mean what the last copy says (another reader takes the first), and ``exp``/``nbf``/``iat`` must be
JSON numbers (RFC 7519 NumericDate), not strings PyJWT would read with ``int()``.

Refusals carry a reason from a fixed vocabulary (:class:`Rejection`) for logs and metrics; never the token,
nor any claim value.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import jwt
from jwt.exceptions import (
    DecodeError,
    ExpiredSignatureError,
    ImmatureSignatureError,
    InvalidAlgorithmError,
    InvalidAudienceError,
    InvalidIssuerError,
    InvalidKeyError,
    InvalidSignatureError,
    MissingRequiredClaimError,
    PyJWTError,
)

from service.oauth.config import ASYMMETRIC_ALGORITHMS, OAuthConfig
from service.oauth.keys import IssuerKeys
from service.oauth.observer import NullOAuthObserver, OAuthObserver
from service.okta import EventError, read_json

#: Okta's access tokens are 1-2 KB; a header value much larger is not one of them.
MAX_TOKEN_CHARS = 16 * 1024

_BEARER = re.compile(r"bearer +([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)", re.IGNORECASE)


class Rejection(StrEnum):
    NOT_BEARER = "not_bearer"  # no ``Authorization: Bearer`` header
    # not a compact JWS, header or claims not strict JSON (a duplicate key, not UTF-8...), or claims
    # that are not what the JWT spec says (``exp`` as a string...)
    MALFORMED = "malformed"
    BAD_ALGORITHM = "bad_algorithm"  # none, HMAC, or an algorithm the key does not pin
    UNKNOWN_KEY = "unknown_key"  # no published key has this kid (even after a refetch)
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"  # nbf or iat in the future
    WRONG_ISSUER = "wrong_issuer"
    WRONG_AUDIENCE = "wrong_audience"
    MISSING_CLAIM = "missing_claim"  # exp, iss or aud absent
    MISSING_SCOPE = "missing_scope"
    WRONG_CLIENT = "wrong_client"


_CLAIM_ERRORS: tuple[tuple[type[PyJWTError], Rejection], ...] = (
    # subclasses before their bases: InvalidSignatureError is a DecodeError
    (InvalidSignatureError, Rejection.BAD_SIGNATURE),
    (ExpiredSignatureError, Rejection.EXPIRED),
    (ImmatureSignatureError, Rejection.NOT_YET_VALID),
    (InvalidIssuerError, Rejection.WRONG_ISSUER),
    (InvalidAudienceError, Rejection.WRONG_AUDIENCE),
    (MissingRequiredClaimError, Rejection.MISSING_CLAIM),
    (InvalidAlgorithmError, Rejection.BAD_ALGORITHM),
    (InvalidKeyError, Rejection.BAD_ALGORITHM),
)


#: The claims RFC 7519 types as NumericDate: a JSON number, never a string, a boolean or null.
NUMERIC_DATES = ("exp", "nbf", "iat")


class _StrictJWT(jwt.PyJWT):
    """PyJWT with the claims read by the strict reader, after PyJWS has checked the signature over
    their bytes, and before PyJWT checks their values (``_decode_payload`` is PyJWT's hook for this)."""

    def _decode_payload(self, decoded: dict[str, Any]) -> dict[str, Any]:
        payload = _json_object(decoded["payload"])
        if payload is None:
            raise DecodeError("the claims are not a strict JSON object")
        for claim in NUMERIC_DATES:
            if claim in payload and not _is_number(payload[claim]):
                raise DecodeError("a NumericDate claim is not a JSON number")
        return payload


_JWT = _StrictJWT()


class BearerVerifier:
    """Accepts a hook call whose ``Authorization: Bearer`` token the configured issuer signed for this
    audience, with the required scopes (and client, when configured)."""

    def __init__(
        self,
        config: OAuthConfig,
        keys: IssuerKeys,
        observer: OAuthObserver | None = None,
        *,
        report_not_bearer: bool = True,
    ) -> None:
        self.keys = keys
        self._config = config
        self._observer = observer or NullOAuthObserver()
        # With a header secret configured too, a call without a bearer token was a secret attempt:
        # not an OAuth refusal worth counting.
        self._report_not_bearer = report_not_bearer
        self._required_scopes = frozenset(config.scopes)
        self._client_ids = frozenset(config.client_ids)

    async def verify(self, authorization: str | None) -> Rejection | None:
        """None when ``authorization`` (the header's value) carries an acceptable token, else why not;
        refusals are counted."""
        rejection = await self.check(authorization)
        if rejection is not None and (rejection is not Rejection.NOT_BEARER or self._report_not_bearer):
            self._observer.token_refused(rejection.value)
        return rejection

    async def check(self, value: str | None) -> Rejection | None:
        """None when the header value carries an acceptable token, else why not."""
        if value is None or not value[:7].lower().startswith("bearer"):
            return Rejection.NOT_BEARER
        match = _BEARER.fullmatch(value.strip()) if len(value) <= MAX_TOKEN_CHARS else None
        if match is None:
            return Rejection.MALFORMED
        token = match.group(1)
        header = _header(token)
        if header is None:
            return Rejection.MALFORMED
        algorithm = header.get("alg")
        if algorithm not in ASYMMETRIC_ALGORITHMS:
            return Rejection.BAD_ALGORITHM
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            return Rejection.MALFORMED
        key = await self.keys.key(kid)
        if key is None:
            return Rejection.UNKNOWN_KEY
        if key.algorithm is not None and key.algorithm != algorithm:
            return Rejection.BAD_ALGORITHM
        try:
            claims = _JWT.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=self._config.audience,
                issuer=self._config.issuer,
                leeway=self._config.leeway_seconds,
                options={"require": ["exp", "iss", "aud"], "enforce_minimum_key_length": True},
            )
        except PyJWTError as error:
            return next((reason for kind, reason in _CLAIM_ERRORS if isinstance(error, kind)), Rejection.MALFORMED)
        return self._check_grant(claims)

    def _check_grant(self, claims: Mapping[str, Any]) -> Rejection | None:
        if not self._required_scopes <= _scopes(claims):
            return Rejection.MISSING_SCOPE
        if self._client_ids:
            client = claims.get("cid", claims.get("client_id"))
            if not isinstance(client, str) or client not in self._client_ids:
                return Rejection.WRONG_CLIENT
        return None


def _header(token: str) -> dict[str, Any] | None:
    """The token's JOSE header read strictly, or None. (PyJWS reads it once more, with ``json.loads``,
    after this reading has refused any header on which the two could differ.)"""
    segment = token.partition(".")[0]
    try:
        text = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except ValueError:  # binascii.Error: a length no base64 text has
        return None
    return _json_object(text)


def _json_object(text: bytes) -> dict[str, Any] | None:
    try:
        document = read_json(text)
    except EventError:
        return None
    return document if isinstance(document, dict) else None


def _is_number(value: object) -> bool:
    """A JSON number: ``int`` or ``float`` (finite: the strict reader refuses NaN and 1e999), not ``bool``."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    """Okta's ``scp`` is a list; RFC 9068's ``scope`` is a space-separated string."""
    scp = claims.get("scp")
    if isinstance(scp, list):
        return frozenset(s for s in scp if isinstance(s, str))
    if isinstance(scp, str):
        return frozenset(scp.split())
    scope = claims.get("scope")
    if isinstance(scope, str):
        return frozenset(scope.split())
    return frozenset()
