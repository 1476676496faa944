"""One handler per hook type: look the user up, map the entry, answer Okta, or fall back.

This is the business logic, readable top to bottom; Okta's wire format is in ``service.okta``, the
directory in ``service.directory``, and what to do on failure in ``service.policy``.
"""

from __future__ import annotations

import marshal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from service import mapping
from service.cache import RecentAnswers
from service.directory import (
    CacheResult,
    DeadlineExceeded,
    DirectoryEntry,
    DirectoryError,
    UserDirectory,
    UserQuery,
)
from service.okta import (
    HookEvent,
    HookType,
    denial,
    import_update,
    no_change,
    registration_update,
    saml_patch,
    token_patch,
    with_debug_context,
)
from service.policy import FailureAction, Outcome
from service.settings import (
    HookSettings,
    RegistrationSettings,
    SamlSettings,
    TokenSettings,
    UserImportSettings,
)


@dataclass(frozen=True, slots=True)
class HookResult:
    """The answer for Okta and what happened on the way, for telemetry."""

    outcome: Outcome
    body: dict[str, Any]
    event_id: str = ""
    denied: bool = False
    #: Where the directory work was when the deadline hit (``pool_wait``, ``search``...).
    stage: str | None = None
    #: The directory failure kind (``timeout``, ``connect``, ``ambiguous``...).
    error_kind: str | None = None
    directory_seconds: float = 0.0
    #: How the cache answered (``hit``, ``miss``, ``stale``, ``negative_hit``), ``replay`` for an event
    #: answered before (Okta's retry), None with no cache or when no lookup was made.
    cache: CacheResult | Literal["replay"] | None = None


class Hook:
    def __init__(self, hook_type: HookType, settings: HookSettings, directory: UserDirectory) -> None:
        self.type = hook_type
        self.settings = settings
        self._directory = directory
        self._enrich = _ENRICHERS[hook_type]
        # Only registration has a deny answer; settings validation refuses `deny` for the other types.
        self._deny_message = settings.deny_message if isinstance(settings, RegistrationSettings) else None
        self._query = UserQuery.of(
            "", mapping.required_attributes(settings.rules()), mapping.resolutions(settings.rules())
        )
        self._answered: RecentAnswers[tuple[str, str], _Answered] = RecentAnswers(settings.cache.replay_seconds)

    def forget_answers(self) -> None:
        """Drop the answers kept for Okta's retries (with the cache, on an operator's flush)."""
        self._answered.clear()

    async def answer(self, event: HookEvent, received_at: float) -> HookResult:
        """Answer ``event``, received at ``received_at`` (:func:`time.monotonic`), within the deadline.

        An event answered from the directory's data shortly before (Okta's retry: same eventId, same
        user) gets that same answer again. A fallback is not repeated: the retry is a second chance."""
        key = (event.event_id, event.subject.pick(self.settings.subject))
        if event.event_id:
            previous = self._answered.get(key)
            if previous is not None:
                outcome, denied, error_kind, body = previous
                return HookResult(
                    outcome, marshal.loads(body), event.event_id, denied, error_kind=error_kind, cache="replay"
                )
        result = await self._answer(event, received_at)
        if event.event_id and result.outcome in _REPLAYED:
            # marshal: a tenth of the memory of the body as dicts, for up to 10,000 remembered answers
            self._answered.put(key, (result.outcome, result.denied, result.error_kind, marshal.dumps(result.body)))
        return result

    async def _answer(self, event: HookEvent, received_at: float) -> HookResult:
        identifier = event.subject.pick(self.settings.subject)
        started = time.monotonic()
        try:
            lookup = await self._directory.find_user(
                self._query.with_identifier(identifier), received_at + self.settings.deadline_seconds
            )
        except DeadlineExceeded as exceeded:
            return self._fallback(event, Outcome.FALLBACK_DEADLINE, started, stage=exceeded.stage)
        except DirectoryError as error:
            return self._fallback(event, Outcome.FALLBACK_LDAP_ERROR, started, error_kind=error.kind)
        except Exception as error:  # a bug must not become a 500: Okta would deny the registration
            return self._fallback(event, Outcome.FALLBACK_INTERNAL_ERROR, started, error_kind=type(error).__name__)
        entry, cache = lookup.entry, lookup.cache
        if entry is None:
            return self._fallback(event, Outcome.NO_MATCH, started, cache=cache)
        try:
            body = self._enrich(self.settings, event, entry)
        except Exception as error:
            return self._fallback(
                event, Outcome.FALLBACK_INTERNAL_ERROR, started, error_kind=type(error).__name__, cache=cache
            )
        elapsed = time.monotonic() - started
        # Stale: the directory failed (lookup.error_kind says how) and an older answer was served.
        outcome = Outcome.ENRICHED_STALE if cache == "stale" else Outcome.ENRICHED
        body = with_debug_context(body, _diagnostics(outcome, elapsed, error_kind=lookup.error_kind, cache=cache))
        return HookResult(
            outcome, body, event.event_id, error_kind=lookup.error_kind, directory_seconds=elapsed, cache=cache
        )

    def _fallback(
        self,
        event: HookEvent,
        outcome: Outcome,
        started: float,
        *,
        stage: str | None = None,
        error_kind: str | None = None,
        cache: CacheResult | None = None,
    ) -> HookResult:
        action = self.settings.on_unknown_user if outcome is Outcome.NO_MATCH else self.settings.on_directory_error
        deny_message = self._deny_message if action is FailureAction.DENY else None
        deny = deny_message is not None
        body = denial(deny_message) if deny_message is not None else no_change()
        elapsed = time.monotonic() - started
        body = with_debug_context(body, _diagnostics(outcome, elapsed, stage=stage, error_kind=error_kind, cache=cache))
        return HookResult(
            outcome,
            body,
            event.event_id,
            denied=deny,
            stage=stage,
            error_kind=error_kind,
            directory_seconds=elapsed,
            cache=cache,
        )


#: What is remembered of an answer for Okta's retry: outcome, denied, error kind, body (marshal).
_Answered = tuple[Outcome, bool, str | None, bytes]

#: Answers made from the directory's data: what Okta's retry of the same event gets again.
_REPLAYED = frozenset({Outcome.ENRICHED, Outcome.ENRICHED_STALE, Outcome.NO_MATCH})


def _diagnostics(
    outcome: Outcome,
    elapsed: float,
    *,
    stage: str | None = None,
    error_kind: str | None = None,
    cache: str | None = None,
) -> dict[str, str | int]:
    """What Okta's System Log shows about this answer: fixed vocabularies and a duration, nothing from
    the event or the directory entry."""
    context: dict[str, str | int] = {"outcome": outcome.value, "directoryMs": round(elapsed * 1000)}
    if stage:
        context["deadlineStage"] = stage
    if error_kind:
        context["error"] = error_kind
    if cache:
        context["cache"] = cache
    return context


def _registration(settings: Any, event: HookEvent, entry: DirectoryEntry) -> dict[str, Any]:
    s: RegistrationSettings = settings
    assert event.registration_kind is not None
    return registration_update(event.registration_kind, mapping.apply(s.profile, entry))


def _token(settings: Any, event: HookEvent, entry: DirectoryEntry) -> dict[str, Any]:
    s: TokenSettings = settings
    return token_patch(event, mapping.apply(s.id_token, entry), mapping.apply(s.access_token, entry))


def _saml(settings: Any, event: HookEvent, entry: DirectoryEntry) -> dict[str, Any]:
    s: SamlSettings = settings
    return saml_patch(event, mapping.apply(s.attributes, entry))


def _user_import(settings: Any, event: HookEvent, entry: DirectoryEntry) -> dict[str, Any]:
    s: UserImportSettings = settings
    return import_update(mapping.apply(s.profile, entry), mapping.apply(s.app_user_profile, entry))


_ENRICHERS: dict[HookType, Callable[[Any, HookEvent, DirectoryEntry], dict[str, Any]]] = {
    HookType.REGISTRATION: _registration,
    HookType.TOKEN: _token,
    HookType.SAML: _saml,
    HookType.USER_IMPORT: _user_import,
}
