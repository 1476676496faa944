"""Okta's OAUTH channel: the hook call carries ``Authorization: Bearer <JWT>``, an access token that Okta
obtained from an authorization server (``client_secret_post`` or ``private_key_jwt``). This package checks
such tokens against that server's published keys; :mod:`service.auth` composes it with the header secret.
"""

from service.oauth.config import ASYMMETRIC_ALGORITHMS, OAuthConfig
from service.oauth.keys import FETCH_ERRORS, IssuerKeys, KeyFetchError
from service.oauth.observer import NullOAuthObserver, OAuthObserver
from service.oauth.tokens import BearerVerifier, Rejection

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "FETCH_ERRORS",
    "BearerVerifier",
    "IssuerKeys",
    "KeyFetchError",
    "NullOAuthObserver",
    "OAuthConfig",
    "OAuthObserver",
    "Rejection",
]
