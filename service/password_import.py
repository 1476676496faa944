"""The password import hook: is this the password the directory knows for this person?

Okta sends a migrated person's username and the cleartext password they typed at their first
sign-in; VERIFIED makes Okta keep that password and stop asking. Unlike the other hook types nothing is
mapped: the user is found with the service account (the same identifier checks as every hook, and
never through the cache: a credential check must see the directory as it is now, a disabled or moved
account included), then the directory itself judges the password in a bind as that user.

Every answer other than VERIFIED is UNVERIFIED: Okta refuses that sign-in and asks again at the next
one, so a directory failure costs one sign-in, never a wrong password let through. Failures are told
apart in the ``credential`` result (``unverified`` for the person, ``error`` for the directory).

The password is read from the event here and handed to the directory's bind, nowhere else: it is
not in the result, the answer, the debugContext, a log line, a span or a metric. The bind sends its
exact UTF-8 bytes (no SASLprep, no normalization): the directory alone says whether they are right.
"""

from __future__ import annotations

import time
from typing import Literal

from service.directory import CredentialDirectory, DeadlineExceeded, DirectoryError
from service.hooks import HookResult
from service.okta import HookEvent, HookType, IdentifierRefusal, credential_verdict, identifier_refusal
from service.policy import Outcome
from service.settings import PasswordImportSettings

CredentialResult = Literal["verified", "unverified", "error"]

#: Every (result, reason) pair ``okta_hook_password_verifications_total`` can count: declared at zero.
#: ``unverified`` reasons are about the person, ``error`` reasons about the directory.
VERIFICATION_REASONS: dict[str, tuple[str, ...]] = {
    "verified": ("ok",),
    "unverified": (
        "invalid_credentials",
        "not_permitted_now",
        "workstation",
        "password_expired",
        "account_disabled",
        "account_expired",
        "must_change_password",
        "locked",
        "empty_password",
        "unknown_user",
        "ambiguous_user",
        "refused_identifier",
    ),
    "error": ("deadline", "directory_error", "internal_error"),
}


class PasswordImportHook:
    """The step of the ``password_import`` hook type: event in, VERIFIED or UNVERIFIED out, in time."""

    type = HookType.PASSWORD_IMPORT

    def __init__(self, settings: PasswordImportSettings, directory: CredentialDirectory) -> None:
        self.settings = settings
        self._directory = directory

    def forget_answers(self) -> None:
        """Nothing is remembered: a credential check is never replayed nor cached."""

    async def answer(self, event: HookEvent, received_at: float) -> HookResult:
        """Answer ``event`` within the deadline counted from ``received_at`` (:func:`time.monotonic`)."""
        started = time.monotonic()
        identifier = event.subject.pick(self.settings.subject)
        refusal = identifier_refusal(identifier)
        if refusal is None and self._directory.search_value(identifier) is None:
            refusal = IdentifierRefusal.OUTSIDE_DOMAINS
        if refusal is not None:
            return _result(
                event, Outcome.REFUSED_IDENTIFIER, "unverified", "refused_identifier", started, refusal=refusal
            )
        password = event.password()
        if not password:  # a simple bind with a DN and no password is an anonymous bind: never sent
            return _result(event, Outcome.UNVERIFIED, "unverified", "empty_password", started)
        deadline = received_at + self.settings.deadline_seconds
        if deadline - started < self.settings.min_lookup_seconds:
            return _result(event, Outcome.FALLBACK_DEADLINE, "error", "deadline", started, stage="queue")
        try:
            check = await self._directory.verify_password(identifier, password, deadline)
        except DeadlineExceeded as exceeded:
            return _result(event, Outcome.FALLBACK_DEADLINE, "error", "deadline", started, stage=exceeded.stage)
        except DirectoryError as error:
            if error.kind == "ambiguous":  # several people: binding as one of them could let the wrong one in
                return _result(
                    event, Outcome.FALLBACK_LDAP_ERROR, "unverified", "ambiguous_user", started, error_kind=error.kind
                )
            return _result(
                event, Outcome.FALLBACK_LDAP_ERROR, "error", "directory_error", started, error_kind=error.kind
            )
        except Exception as error:  # a bug must not become a 500
            return _result(
                event,
                Outcome.FALLBACK_INTERNAL_ERROR,
                "error",
                "internal_error",
                started,
                error_kind=type(error).__name__,
                exception=error,
            )
        if not check.found:
            return _result(event, Outcome.NO_MATCH, "unverified", "unknown_user", started)
        if check.refusal is not None:
            return _result(event, Outcome.UNVERIFIED, "unverified", check.refusal.value, started)
        return _result(event, Outcome.VERIFIED, "verified", "ok", started)


def _result(
    event: HookEvent,
    outcome: Outcome,
    credential: CredentialResult,
    reason: str,
    started: float,
    *,
    stage: str | None = None,
    error_kind: str | None = None,
    refusal: IdentifierRefusal | None = None,
    exception: Exception | None = None,
) -> HookResult:
    elapsed = time.monotonic() - started
    context: dict[str, str | int] = {"outcome": outcome.value, "directoryMs": round(elapsed * 1000), "reason": reason}
    if stage:
        context["deadlineStage"] = stage
    if error_kind:
        context["error"] = error_kind
    # Password import's failure policy (service.policy) has one answer for every outcome but VERIFIED.
    body = {**credential_verdict(outcome is Outcome.VERIFIED), "debugContext": context}
    return HookResult(
        outcome,
        body,
        event.event_id,
        event.event_id_rejected,
        stage=stage,
        error_kind=error_kind,
        refusal=refusal,
        directory_seconds=elapsed,
        exception=exception,
        credential=credential,
        credential_reason=reason,
    )
