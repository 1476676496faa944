"""What the hook answers when it cannot do its job: outcomes, and the failure policy of each hook type.

Okta fails closed for registration and password import (a timeout denies the user) and open for the
other types, so the service never lets Okta time out: it answers within its deadline with the answer its
policy gives for the outcome, and the outcome says why, for metrics and logs. Which answers a hook
type can give at all is that type's own (deny for registration only, UNVERIFIED for password import
only: ``answers`` in ``service/hooks/<type>.py``); which one each outcome gets is decided here, and
only here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Outcome(StrEnum):
    ENRICHED = "enriched"  # the directory (or a fresh cache entry) answered; mapped attributes returned
    ENRICHED_STALE = "enriched_stale"  # the directory failed; attributes from an older answer in the cache
    #: Several directories: the person was found, but a directory some rule reads failed, was too slow or
    #: is cooling down; the answer carries what arrived, and ``HookResult.missing`` says which part is
    #: missing and why. Counted as a risk beside the fallbacks (applications may authorize on that part).
    ENRICHED_PARTIAL = "enriched_partial"
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
    """What the configuration may choose (``on_unknown_user``, ``on_directory_error``): ``continue``
    lets Okta go on without enrichment; ``deny`` refuses the registration (where a hook type allows it,
    see :class:`HookAnswers`)."""

    CONTINUE = "continue"
    DENY = "deny"


class Answer(StrEnum):
    """What Okta is told when the hook cannot do its job."""

    CONTINUE = "continue"  # no command: Okta's default (registration allowed, token unchanged...)
    DENY = "deny"  # refuse the registration, with the configured message
    UNVERIFIED = "unverified"  # refuse the imported password: Okta asks again at the next sign-in


#: Outcomes about the person rather than the directory: the ``on_unknown_user`` answer.
PERSON_OUTCOMES = frozenset({Outcome.NO_MATCH, Outcome.REFUSED_IDENTIFIER, Outcome.UNVERIFIED})


class HookAnswers(Protocol):
    """What the policy needs to know of a hook type: its name and the answers it can give on failure.
    Registration is the only type with a deny answer in Okta's contract; password import has no
    "continue" (an unverified password must not pass), so it answers UNVERIFIED to everything."""

    @property
    def value(self) -> str: ...

    @property
    def answers(self) -> frozenset[Answer]: ...

    def peers(self) -> Iterable[HookAnswers]:
        """Every hook type, this one included: named in the message when an answer is not this one's."""
        ...


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    """What one hook type answers for each outcome that is not a success."""

    hook_type: str
    on_unknown_user: Answer
    on_directory_error: Answer
    #: For ``enriched_partial``: ``continue`` answers with what arrived; ``deny`` refuses the registration.
    on_missing_directory: Answer = Answer.CONTINUE

    @classmethod
    def of(
        cls,
        hook_type: HookAnswers,
        on_unknown_user: FailureAction = FailureAction.CONTINUE,
        on_directory_error: FailureAction = FailureAction.CONTINUE,
        on_missing_directory: FailureAction = FailureAction.CONTINUE,
    ) -> FailurePolicy:
        """The policy of ``hook_type`` with the configured actions; ValueError (naming the key) when the
        hook type cannot give that answer. Password import ignores the actions: always UNVERIFIED."""
        if hook_type.answers == {Answer.UNVERIFIED}:
            return cls(hook_type.value, Answer.UNVERIFIED, Answer.UNVERIFIED, Answer.UNVERIFIED)
        actions = (
            ("on_directory_error", on_directory_error),
            ("on_unknown_user", on_unknown_user),
            ("on_missing_directory", on_missing_directory),
        )
        for key, action in actions:
            answer = Answer(action.value)
            if answer not in hook_type.answers:
                allowed = ", ".join(other.value for other in hook_type.peers() if answer in other.answers)
                raise ValueError(f"{key}: {action.value} is only an answer for {allowed} hooks")
        return cls(
            hook_type.value,
            Answer(on_unknown_user.value),
            Answer(on_directory_error.value),
            Answer(on_missing_directory.value),
        )

    def answer(self, outcome: Outcome) -> Answer:
        """The answer for ``outcome`` (one that is not a full success)."""
        if outcome is Outcome.ENRICHED_PARTIAL:
            return self.on_missing_directory
        return self.on_unknown_user if outcome in PERSON_OUTCOMES else self.on_directory_error


def can_deny(hook_type: HookAnswers) -> bool:
    """Whether ``hook_type`` has a deny answer at all (its denials are counted, its config may ask one)."""
    return Answer.DENY in hook_type.answers


#: Reason label of a denial, by the outcome that caused it.
DENIAL_REASONS = {
    Outcome.NO_MATCH: "no_match",
    Outcome.REFUSED_IDENTIFIER: "refused_identifier",
    Outcome.FALLBACK_DEADLINE: "deadline",
    Outcome.FALLBACK_LDAP_ERROR: "ldap_error",
    Outcome.FALLBACK_INTERNAL_ERROR: "internal_error",
    Outcome.ENRICHED_PARTIAL: "missing_directory",
}
