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
from typing import ClassVar

from service.directory import DEFAULT_NAME, CredentialDirectory, DeadlineExceeded, DirectoryError, DirectorySet
from service.federation import PasswordHolders
from service.hooks.base import HookKind, HookTypeRef, Wiring
from service.hooks.config import DirectoryProblem, HookSettings
from service.hooks.result import CredentialResult, HookResult, debug_context
from service.okta import (
    Document,
    HookEvent,
    JsonObject,
    Subject,
    UnsafeIdentifier,
    member,
    text,
    unsafe_identifier,
)
from service.policy import Answer, Outcome


class PasswordImportSettings(HookSettings):
    """Password import: Okta's ``username`` is looked up (never through the cache), then the password
    is checked by a bind as the user's DN. Every failure answers UNVERIFIED (Okta asks again at the next
    sign-in), so there is no failure action to choose. Needs TLS to the directory."""

    #: No "continue": an unverified password must not pass. UNVERIFIED to every failure.
    answers: ClassVar[frozenset[Answer]] = frozenset({Answer.UNVERIFIED})

    def directory_problem(self, directories: DirectorySet) -> DirectoryProblem | None:
        """A password import sends the person's password in a bind to the directory that holds them
        (any without ``join``): never in clear."""
        for name in directories.accounts():
            directory = directories.named[name]
            if not directory.start_tls and any(not server.tls for server in directory.servers):
                key = directories.key(name)
                return "", f"passwords go to the directory only over TLS; use ldaps:// URLs or set {key}.start_tls"
        return None


def read_subject(document: JsonObject, data: JsonObject) -> Subject:
    """What the person typed at sign-in: their Okta login (Okta's Users API caps it at 100 characters)."""
    return Subject(text(member(member(data, "context"), "credential"), "username"), None)


def password_of(event: HookEvent) -> str:
    """The cleartext password of a password import event (``data.context.credential.password``);
    empty when absent or not a string. Never log, store or repeat it."""
    value = member(member(event.data, "context"), "credential").get("password")
    return value if isinstance(value, str) else ""


def credential_verdict(verified: bool) -> Document:
    """The password import answer: Okta stores the password it was sent when ``VERIFIED``, and refuses
    the sign-in (asking again next time) when ``UNVERIFIED``. Always explicit, never an empty body."""
    value = "VERIFIED" if verified else "UNVERIFIED"
    return {"commands": [{"type": "com.okta.action.update", "value": {"credential": value}}]}


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

    def __init__(
        self,
        hook_type: HookTypeRef,
        settings: PasswordImportSettings,
        directories: PasswordHolders | CredentialDirectory,
    ) -> None:
        """``directories``: those that hold people (:func:`build`), or one that holds everyone."""
        self.type = hook_type
        self.settings = settings
        if not isinstance(directories, PasswordHolders):
            directories = PasswordHolders({DEFAULT_NAME: directories})
        self._directories = directories

    def forget_answers(self) -> None:
        """Nothing is remembered: a credential check is never replayed nor cached."""

    async def answer(self, event: HookEvent, received_at: float) -> HookResult:
        """Answer ``event`` within the deadline counted from ``received_at`` (:func:`time.monotonic`)."""
        started = time.monotonic()
        identifier = event.subject.pick(self.settings.subject)
        unsafe = unsafe_identifier(identifier)
        # The values the directories compare, computed once for the request: the queries carry them on.
        values = self._directories.search_values(identifier) if unsafe is None else {}
        if not values:
            unsafe = unsafe or UnsafeIdentifier.OUTSIDE_DOMAINS
            return _result(event, Outcome.REFUSED_IDENTIFIER, "unverified", "refused_identifier", None, unsafe=unsafe)
        password = password_of(event)
        if not password:  # a simple bind with a DN and no password is an anonymous bind: never sent
            return _result(event, Outcome.UNVERIFIED, "unverified", "empty_password", None)
        deadline = received_at + self.settings.deadline_seconds
        if deadline - started < self.settings.min_lookup_seconds:
            return _result(event, Outcome.FALLBACK_DEADLINE, "error", "deadline", started, stage="queue")
        try:
            check = await self._directories.verify(values, password, deadline)
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
        if check.rejection is not None:
            return _result(event, Outcome.UNVERIFIED, "unverified", check.rejection.value, started)
        return _result(event, Outcome.VERIFIED, "verified", "ok", started)


def _result(
    event: HookEvent,
    outcome: Outcome,
    credential: CredentialResult,
    reason: str,
    started: float | None,
    *,
    stage: str | None = None,
    error_kind: str | None = None,
    unsafe: UnsafeIdentifier | None = None,
    exception: Exception | None = None,
) -> HookResult:
    elapsed = 0.0 if started is None else time.monotonic() - started  # None: no directory was asked
    context = debug_context(outcome, elapsed, stage=stage, error_kind=error_kind, reason=reason)
    # Password import's failure policy (service.policy) has one answer for every outcome but VERIFIED.
    body = {**credential_verdict(outcome is Outcome.VERIFIED), "debugContext": context}
    return HookResult(
        outcome,
        body,
        event.event_id,
        event.event_id_rejected,
        stage=stage,
        error_kind=error_kind,
        unsafe_identifier=unsafe,
        directory_seconds=elapsed,
        exception=exception,
        credential=credential,
        credential_reason=reason,
    )


def build(hook_type: HookTypeRef, settings: PasswordImportSettings, wiring: Wiring) -> PasswordImportHook:
    """The directories that hold people, themselves: a credential check never goes through a cache."""
    holders = {name: wiring.live(name) for name in wiring.directories.accounts()}
    return PasswordImportHook(hook_type, settings, PasswordHolders(holders))


KIND = HookKind(
    name="password_import",
    event_type="com.okta.user.credential.password.import",
    settings=PasswordImportSettings,
    read_subject=read_subject,
    build=build,
    verifications=VERIFICATION_REASONS,
)
