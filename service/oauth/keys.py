"""The issuer's signing keys: fetched in the background, cached in memory, refetched on an unknown ``kid``.

A hook call never waits on the network for long: keys are fetched at startup and then periodically by a
background task; a call whose token names a ``kid`` the cache lacks waits at most one fetch timeout for a
refetch (one at a time, and at most once per ``min_refetch_interval_seconds``). When the issuer cannot be
reached, the cached keys keep working. The stdlib's urllib (in a thread) is the HTTP client: two GETs an
hour need no extra dependency, and it honours the usual ``HTTPS_PROXY``/``NO_PROXY`` variables.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from jwt import PyJWK
from jwt.exceptions import PyJWTError

from service import __version__
from service.oauth.config import ASYMMETRIC_ALGORITHMS, OAuthConfig, check_url
from service.oauth.observer import NullOAuthObserver, OAuthObserver

#: Reasons a fetch fails (the ``reason`` label of the fetch-error metric); ``other`` is a bug of ours.
FETCH_ERRORS = ("timeout", "connect", "http_status", "invalid_document", "other")

#: A metadata document or key set larger than this is refused (Okta's are a few KB).
MAX_DOCUMENT_BYTES = 512 * 1024

#: While no fetch has succeeded, or after a failed periodic refresh, the background task tries again
#: this often instead of waiting a whole refresh interval.
RETRY_SECONDS = 15.0

#: Key types that carry asymmetric keys; ``oct`` (a shared secret) is never used.
_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})

Fetch = Callable[[str, float], bytes]


@dataclass(frozen=True)
class SigningKey:
    """One public key of the issuer, and the algorithm its JWK pins (``alg``), if it pins one."""

    key: Any  # a cryptography public key object
    algorithm: str | None


class KeyFetchError(Exception):
    """A fetch failed; ``reason`` is one of :data:`FETCH_ERRORS`. The message names no URL content."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _NoDowngrade(urllib.request.HTTPRedirectHandler):
    """Follows redirects, except from https to anything else: keys read in clear text could be swapped."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        if urlsplit(req.full_url).scheme == "https" and urlsplit(newurl).scheme != "https":
            return None  # urllib then raises the 3xx as an HTTPError
        return super().redirect_request(req, fp, code, msg, headers, newurl)


#: urllib's default handlers (proxies from HTTPS_PROXY/NO_PROXY included) with the redirect rule above.
_OPENER = urllib.request.build_opener(_NoDowngrade)


def fetch_url(url: str, timeout: float) -> bytes:
    """GET ``url`` (a JSON document) with a socket timeout; blocking, so called in a thread."""
    request = urllib.request.Request(
        url, headers={"Accept": "application/json", "User-Agent": f"okta-ldap-hook/{__version__}"}
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            body: bytes = response.read(MAX_DOCUMENT_BYTES + 1)
    except urllib.error.HTTPError as error:
        error.close()
        raise KeyFetchError("http_status") from None
    except urllib.error.URLError as error:
        raise KeyFetchError("timeout" if isinstance(error.reason, TimeoutError) else "connect") from None
    except TimeoutError:
        raise KeyFetchError("timeout") from None
    except (OSError, http.client.HTTPException):
        raise KeyFetchError("connect") from None
    if len(body) > MAX_DOCUMENT_BYTES:
        raise KeyFetchError("invalid_document")
    return body


class IssuerKeys:
    """The key set of one issuer, by ``kid``."""

    def __init__(
        self,
        config: OAuthConfig,
        observer: OAuthObserver | None = None,
        fetch: Fetch = fetch_url,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._observer = observer or NullOAuthObserver()
        self._fetch = fetch
        self._clock = clock
        self._jwks_uri = config.jwks_uri
        self._keys: dict[str | None, SigningKey] = {}
        self._in_flight: asyncio.Task[bool] | None = None
        self._last_refetch = float("-inf")

    @property
    def loaded(self) -> bool:
        return bool(self._keys)

    @property
    def count(self) -> int:
        return len(self._keys)

    def cached(self, kid: str | None) -> SigningKey | None:
        """The cached key named ``kid``; a token without ``kid`` gets the only key, if there is one."""
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    async def key(self, kid: str | None) -> SigningKey | None:
        """The key named ``kid``, refetching the set once if it is unknown (rate-limited, waiting at most
        one fetch timeout: a refetch that takes longer goes on in the background)."""
        key = self.cached(kid)
        if key is not None:
            return key
        if self._in_flight is None or self._in_flight.done():
            now = self._clock()
            if now - self._last_refetch < self._config.min_refetch_interval_seconds:
                return None
            self._last_refetch = now
        try:
            await asyncio.wait_for(asyncio.shield(self.refresh()), self._config.fetch_timeout_seconds)
        except TimeoutError:
            return None
        return self.cached(kid)

    def refresh(self) -> asyncio.Future[bool]:
        """Fetch the key set now, or join the fetch already under way; True when it succeeded."""
        if self._in_flight is None or self._in_flight.done():
            self._in_flight = asyncio.get_running_loop().create_task(self._refresh())
        return self._in_flight

    def start(self) -> asyncio.Task[None]:
        """Start the first fetch now (a call arriving meanwhile joins it rather than starting its own)
        and the periodic refresh after it; the caller cancels the returned task at shutdown."""
        self.refresh()
        return asyncio.get_running_loop().create_task(self.run())

    async def run(self) -> None:
        """Fetch at once (or join the fetch under way), then every refresh interval (sooner while
        failing)."""
        while True:
            ok = await self.refresh()
            await asyncio.sleep(self._config.refresh_interval_seconds if ok else RETRY_SECONDS)

    async def _refresh(self) -> bool:
        # Two fetches at most (metadata, then the key set), each bounded by the socket timeout; the
        # overall bound also covers a server that trickles bytes.
        budget = 2 * self._config.fetch_timeout_seconds + 0.5
        try:
            keys = await asyncio.wait_for(asyncio.to_thread(self._load), budget)
        except TimeoutError:
            self._observer.fetch_failed("timeout")
            return False
        except KeyFetchError as error:
            self._observer.fetch_failed(error.reason)
            return False
        except Exception:  # never let a surprise fail the hook calls waiting on this fetch
            self._observer.fetch_failed("other")
            return False
        self._keys = keys
        self._observer.keys_fetched(len(keys))
        return True

    def _load(self) -> dict[str | None, SigningKey]:
        timeout = self._config.fetch_timeout_seconds
        if self._jwks_uri is None:
            metadata = _json_object(self._fetch(self._config.metadata_url, timeout))
            jwks_uri = metadata.get("jwks_uri")
            # RFC 8414 §3.3: the metadata must name the issuer it was asked for.
            if metadata.get("issuer") != self._config.issuer or not isinstance(jwks_uri, str):
                raise KeyFetchError("invalid_document")
            try:
                check_url("jwks_uri", jwks_uri, query=True)
            except ValueError:
                raise KeyFetchError("invalid_document") from None
            self._jwks_uri = jwks_uri
        keys = parse_key_set(_json_object(self._fetch(self._jwks_uri, timeout)))
        if not keys:
            raise KeyFetchError("invalid_document")
        return keys


def parse_key_set(document: Mapping[str, Any]) -> dict[str | None, SigningKey]:
    """The usable signing keys of a JWK Set: asymmetric, for signatures, with an algorithm this service
    accepts. Others (encryption keys, ``oct`` secrets, unknown curves) are skipped, not fatal."""
    found: dict[str | None, SigningKey] = {}
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise KeyFetchError("invalid_document")
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") not in _KEY_TYPES or entry.get("use", "sig") != "sig":
            continue
        if "alg" in entry and entry["alg"] not in ASYMMETRIC_ALGORITHMS:
            continue
        try:
            key = PyJWK(entry).key
        except (PyJWTError, ValueError, TypeError, KeyError):
            continue
        kid = entry.get("kid")
        found[kid if isinstance(kid, str) else None] = SigningKey(key, entry.get("alg"))
    return found


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError:
        raise KeyFetchError("invalid_document") from None
    if not isinstance(document, dict):
        raise KeyFetchError("invalid_document")
    return document
