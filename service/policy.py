"""What the hook answers when it cannot enrich: outcomes and the failure policy per hook type.

Okta fails closed for registration (a timeout denies the user) and open for the other types, so the
service never lets Okta time out: it answers within its deadline with the configured action, and the
outcome says why, for metrics and logs.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    ENRICHED = "enriched"  # the directory (or a fresh cache entry) answered; mapped attributes returned
    ENRICHED_STALE = "enriched_stale"  # the directory failed; attributes from an older answer in the cache
    NO_MATCH = "no_match"  # the user is not in the directory
    VERIFIED = "verified"  # password import: the directory accepted the person's password
    UNVERIFIED = "unverified"  # password import: the directory refused it (wrong, empty, locked, expired...)
    #: The event's identifier cannot be a real login (control characters, too long, a foreign domain...):
    #: never looked up, answered like an unknown user (``on_unknown_user``).
    REFUSED_IDENTIFIER = "refused_identifier"
    FALLBACK_DEADLINE = "fallback_deadline"  # the directory did not answer within the deadline
    FALLBACK_LDAP_ERROR = "fallback_ldap_error"  # the directory failed, or several entries matched
    FALLBACK_INTERNAL_ERROR = "fallback_internal_error"  # a bug in the service: still an answer, not a 500
    UNAUTHORIZED = "unauthorized"  # missing or wrong hook secret
    BAD_REQUEST = "bad_request"  # not an Okta event of this hook's type, too large, too slow to arrive
    CLIENT_CLOSED = "client_closed"  # the caller went away before the answer (status 499): nothing was received
    SERVER_ERROR = "server_error"  # a 5xx: a bug the handler did not catch (never expected)


class FailureAction(StrEnum):
    """``continue``: let Okta go on without enrichment. ``deny``: refuse the registration (the only hook
    type where a deny is an answer; for the others Okta's own default is to continue)."""

    CONTINUE = "continue"
    DENY = "deny"


#: Reason label of a denial, by the outcome that caused it.
DENIAL_REASONS = {
    Outcome.NO_MATCH: "no_match",
    Outcome.REFUSED_IDENTIFIER: "refused_identifier",
    Outcome.FALLBACK_DEADLINE: "deadline",
    Outcome.FALLBACK_LDAP_ERROR: "ldap_error",
    Outcome.FALLBACK_INTERNAL_ERROR: "internal_error",
}
