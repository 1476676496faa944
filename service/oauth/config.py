"""Which authorization server's tokens Okta's hook calls may carry (the ``auth.oauth:`` section).

A plain dataclass like :mod:`service.directory.config`: the settings module validates it from YAML
(``__pydantic_config__`` forbids unknown keys, ``__post_init__`` checks the values and names the key).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

#: Signature algorithms a token may use: asymmetric only. ``none`` and the HMAC family (HS*) are never
#: accepted, so a published public key can never be used as an HMAC secret by whoever forges a token.
ASYMMETRIC_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)

#: Each fetch of the metadata or the key set gives up after at most this long: a hook call that waits
#: for a refetch (unknown ``kid``) must still answer within the hook deadline (2.5 s).
MAX_FETCH_TIMEOUT_SECONDS = 1.5


@dataclass(frozen=True)
class OAuthConfig:
    """The authorization server Okta's inline hook gets its access tokens from (the ``tokenUrl`` of the
    hook's OAUTH channel), and what a token must say to be accepted."""

    __pydantic_config__ = {"extra": "forbid"}  # noqa: RUF012 (read by pydantic, not by us)

    #: ``iss`` of the tokens, e.g. ``https://acme.okta.com/oauth2/ausHookAS0001`` (a custom authorization
    #: server: the org server's keys are not published for third parties).
    issuer: str
    #: ``aud`` the tokens must name (the authorization server's audience, e.g. ``api://okta-ldap-hook``).
    audience: str
    #: Scopes the token must all carry (``scp``, or a space-separated ``scope``): the custom scope created
    #: for the hook, e.g. ``okta.hooks.invoke``.
    scopes: tuple[str, ...]
    #: When not empty, the client ids (``cid`` or ``client_id``) allowed: the hook's service app.
    client_ids: tuple[str, ...] = ()
    #: Where the keys are; by default read from ``<issuer>/.well-known/oauth-authorization-server``.
    jwks_uri: str | None = None
    #: Clock skew tolerated on ``exp``, ``nbf`` and ``iat``.
    leeway_seconds: float = 30.0
    #: Timeout of one fetch of the metadata or the key set, and the longest a hook call waits for one.
    fetch_timeout_seconds: float = 1.0
    #: How often the keys are fetched again in the background (keys rotate; revoked ones disappear).
    refresh_interval_seconds: float = 3600.0
    #: An unknown ``kid`` triggers a refetch at most this often (a flood of forged tokens must not turn
    #: into a flood of requests to the issuer).
    min_refetch_interval_seconds: float = 60.0

    def __post_init__(self) -> None:
        check_url("issuer", self.issuer)
        if self.jwks_uri is not None:
            check_url("jwks_uri", self.jwks_uri, query=True)
        if not self.audience.strip():
            raise ValueError("audience must not be empty")
        if not self.scopes:
            raise ValueError("scopes: name at least one scope the token must carry")
        for scope in (*self.scopes, *self.client_ids):
            if not scope or any(c.isspace() for c in scope):
                raise ValueError("scopes and client_ids must be non-empty and hold no whitespace")
        if not 0 <= self.leeway_seconds <= 300:
            raise ValueError("leeway_seconds must be between 0 and 300")
        if not 0 < self.fetch_timeout_seconds <= MAX_FETCH_TIMEOUT_SECONDS:
            raise ValueError(f"fetch_timeout_seconds must be above 0 and at most {MAX_FETCH_TIMEOUT_SECONDS}")
        if self.refresh_interval_seconds < 60:
            raise ValueError("refresh_interval_seconds must be at least 60")
        if self.min_refetch_interval_seconds < 1:
            raise ValueError("min_refetch_interval_seconds must be at least 1")

    @property
    def metadata_url(self) -> str:
        """Okta's form (the issuer with the well-known suffix appended), which is also what RFC 8414
        gives for an issuer without a path."""
        return self.issuer.rstrip("/") + "/.well-known/oauth-authorization-server"


def check_url(key: str, url: str, *, query: bool = False) -> None:
    """Raises ValueError unless ``url`` is https, or plain http on a loopback address (tests, a local
    sidecar): keys fetched in clear text over a network could be swapped by anyone on the path."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or (parts.query and not query) or parts.fragment:
        raise ValueError(f"{key} must be an https:// URL" + ("" if query else " without query or fragment"))
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ValueError(f"{key} must use https:// (plain http only on a loopback address)")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
