"""One handler per hook type: look the user up, map the entry, answer Okta, or fall back.

This is the business logic, readable top to bottom; Okta's wire format is in ``service.okta``, the
directory in ``service.directory``, and what to do on failure in ``service.policy``.
"""

from __future__ import annotations

import marshal
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol

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
    IdentifierRefusal,
    denial,
    identifier_refusal,
    import_update,
    no_change,
    registration_update,
    saml_patch,
    token_patch,
    with_debug_context,
)
from service.policy import Answer, Outcome
from service.settings import (
    HookSettings,
    RegistrationSettings,
    SamlSettings,
    TokenSettings,
    UserImportSettings,
)


@dataclass(slots=True)
class HookResult:
    """The answer for Okta and what happened on the way, for telemetry. Not changed once made, but not
    ``frozen``: a frozen dataclass sets each of these fields through ``object.__setattr__``, two
    thirds of the cost of making one, on every hook call."""

    outcome: Outcome
    body: dict[str, Any]
    event_id: str = ""
    #: The event's ``eventId`` was not a short URL-safe string, so it is not logged.
    event_id_rejected: bool = False
    denied: bool = False
    #: Where the work was when the deadline hit: ``queue`` (too little time left to start a lookup),
    #: or the directory's ``pool_wait``, ``connect``, ``search``...
    stage: str | None = None
    #: The directory failure kind (``timeout``, ``connect``, ``ambiguous``...).
    error_kind: str | None = None
    #: Why the identifier was not looked up (outcome ``refused_identifier``).
    refusal: IdentifierRefusal | None = None
    directory_seconds: float = 0.0
    #: How the cache answered (``hit``, ``miss``, ``stale``, ``negative_hit``), ``replay`` for an event
    #: answered before (Okta's retry), None with no cache or when no lookup was made.
    cache: CacheResult | Literal["replay"] | None = None
    #: A group claim was cut to its rule's ``max``.
    groups_cut: bool = False
    #: A group claim came from a nested walk stopped by ``max_depth``/``max_groups``.
    groups_incomplete: bool = False
    #: Password import: ``verified``, ``unverified`` (the person's password was refused, or there is no
    #: such single person) or ``error`` (the directory could not say), and why, in a fixed vocabulary.
    credential: Literal["verified", "unverified", "error"] | None = None
    credential_reason: str | None = None
    #: The unexpected exception behind ``fallback_internal_error``: telemetry logs its type and frames.
    exception: Exception | None = None


class Hook:
    """The hook types that enrich (registration, token, SAML, user import): look the user up, map their
    entry with the type's :class:`Step`, or answer what the type's failure policy says."""

    def __init__(self, hook_type: HookType, settings: HookSettings, directory: UserDirectory) -> None:
        self.type = hook_type
        self.settings = settings
        self._directory = directory
        self._step = step_for(settings)
        self._policy = settings.failure_policy()
        rules = settings.rules()
        # The cache key: the groups are in it, so an entry read without the nested walk never answers
        # a mapping that needs nested groups.
        self._query = UserQuery.of(
            "", mapping.required_attributes(rules), mapping.resolutions(rules), mapping.memberships(rules)
        )
        self._answered: RecentAnswers[tuple[str, str], _Answered] = RecentAnswers(settings.cache.replay_seconds)

    def forget_answers(self) -> None:
        """Drop the answers kept for Okta's retries (with the cache, on an operator's flush)."""
        self._answered.clear()

    async def answer(self, event: HookEvent, received_at: float) -> HookResult:
        """Answer ``event`` within the deadline, counted from ``received_at`` (:func:`time.monotonic`, the
        arrival of the request's first byte): time spent queued before the handler counts.

        An event answered from the directory's data shortly before (Okta's retry: same eventId, same
        user) gets that same answer again. A fallback is not repeated: the retry is a second chance."""
        key = (event.event_id, event.subject.pick(self.settings.subject))
        if event.event_id:
            previous = self._answered.get(key)
            if previous is not None:
                outcome, denied, error_kind, groups_cut, groups_incomplete, body = previous
                return HookResult(
                    outcome,
                    marshal.loads(body),
                    event.event_id,
                    denied=denied,
                    error_kind=error_kind,
                    cache="replay",
                    groups_cut=groups_cut,
                    groups_incomplete=groups_incomplete,
                )
        result = await self._answer(event, received_at)
        if event.event_id and result.outcome in _REPLAYED:
            # marshal: a tenth of the memory of the body as dicts, for up to 10,000 remembered answers
            self._answered.put(
                key,
                (
                    result.outcome,
                    result.denied,
                    result.error_kind,
                    result.groups_cut,
                    result.groups_incomplete,
                    marshal.dumps(result.body),
                ),
            )
        return result

    async def _answer(self, event: HookEvent, received_at: float) -> HookResult:
        identifier = event.subject.pick(self.settings.subject)
        started = time.monotonic()
        refusal = identifier_refusal(identifier)
        # The value the directory compares, computed once for the request: the query carries it on.
        value = self._directory.search_value(identifier) if refusal is None else None
        if value is None:  # no lookup at all: the directory cannot be trusted to compare it
            refusal = refusal or IdentifierRefusal.OUTSIDE_DOMAINS
            return self._fallback(event, Outcome.REFUSED_IDENTIFIER, started, refusal=refusal)
        deadline = received_at + self.settings.deadline_seconds
        # A lookup started after this could not finish in time: the directory sheds it (stage "queue").
        start_by = deadline - self.settings.min_lookup_seconds
        try:
            lookup = await self._directory.find_user(self._query.with_value(value), deadline, start_by)
        except DeadlineExceeded as exceeded:
            return self._fallback(event, Outcome.FALLBACK_DEADLINE, started, stage=exceeded.stage)
        except DirectoryError as error:
            return self._fallback(event, Outcome.FALLBACK_LDAP_ERROR, started, error_kind=error.kind)
        except Exception as error:  # a bug must not become a 500: Okta would deny the registration
            return self._fallback(event, Outcome.FALLBACK_INTERNAL_ERROR, started, error=error)
        entry, cache = lookup.entry, lookup.cache
        if entry is None:
            return self._fallback(event, Outcome.NO_MATCH, started, cache=cache)
        mapper = _Mapper(entry)
        try:
            body = self._step.enrich(event, mapper)
        except Exception as error:
            return self._fallback(event, Outcome.FALLBACK_INTERNAL_ERROR, started, error=error, cache=cache)
        elapsed = time.monotonic() - started
        # Stale: the directory failed (lookup.error_kind says how) and an older answer was served.
        outcome = Outcome.ENRICHED_STALE if cache == "stale" else Outcome.ENRICHED
        context = _diagnostics(outcome, elapsed, error_kind=lookup.error_kind, cache=cache)
        if mapper.cut or mapper.incomplete:
            context["groupsTruncated"] = True
        body = with_debug_context(body, context)
        return HookResult(
            outcome,
            body,
            event.event_id,
            event.event_id_rejected,
            error_kind=lookup.error_kind,
            directory_seconds=elapsed,
            cache=cache,
            groups_cut=mapper.cut,
            groups_incomplete=mapper.incomplete,
        )

    def _fallback(
        self,
        event: HookEvent,
        outcome: Outcome,
        started: float,
        *,
        stage: str | None = None,
        error_kind: str | None = None,
        refusal: IdentifierRefusal | None = None,
        error: Exception | None = None,
        cache: CacheResult | None = None,
    ) -> HookResult:
        if error is not None:
            error_kind = type(error).__name__
        deny = self._policy.answer(outcome) is Answer.DENY
        body = self._step.denial() if deny else no_change()
        elapsed = time.monotonic() - started
        diagnostics = _diagnostics(outcome, elapsed, stage=stage, error_kind=error_kind, refusal=refusal, cache=cache)
        body = with_debug_context(body, diagnostics)
        return HookResult(
            outcome,
            body,
            event.event_id,
            event.event_id_rejected,
            denied=deny,
            stage=stage,
            error_kind=error_kind,
            refusal=refusal,
            directory_seconds=elapsed,
            exception=error,
            cache=cache,
        )


#: What is remembered of an answer for Okta's retry: outcome, denied, error kind, group claim cut,
#: group walk incomplete, body (marshal).
_Answered = tuple[Outcome, bool, str | None, bool, bool, bytes]

#: Answers made from the directory's data: what Okta's retry of the same event gets again.
_REPLAYED = frozenset({Outcome.ENRICHED, Outcome.ENRICHED_STALE, Outcome.NO_MATCH})


class _Mapper:
    """Applies rule sets to one entry and remembers whether any group claim lost names on the way."""

    def __init__(self, entry: DirectoryEntry) -> None:
        self._entry = entry
        self.cut = False
        self.incomplete = False

    def __call__(self, rules: mapping.Rules) -> dict[str, mapping.Value]:
        mapped = mapping.map_entry(rules, self._entry)
        self.cut = self.cut or bool(mapped.cut)
        self.incomplete = self.incomplete or bool(mapped.incomplete)
        return mapped.values


def _diagnostics(
    outcome: Outcome,
    elapsed: float,
    *,
    stage: str | None = None,
    error_kind: str | None = None,
    refusal: IdentifierRefusal | None = None,
    cache: str | None = None,
) -> dict[str, str | int]:
    """What Okta's System Log shows about this answer: fixed vocabularies and a duration, nothing from
    the event or the directory entry."""
    context: dict[str, str | int] = {"outcome": outcome.value, "directoryMs": round(elapsed * 1000)}
    if stage:
        context["deadlineStage"] = stage
    if error_kind:
        context["error"] = error_kind
    if refusal:
        context["reason"] = refusal.value
    if cache:
        context["cache"] = cache
    return context


class Step(Protocol):
    """What one enriching hook type does with a found entry, with its own typed settings."""

    def enrich(self, event: HookEvent, apply: _Mapper) -> dict[str, Any]:
        """Okta's commands for ``event``, from the values ``apply`` maps out of the entry."""
        ...

    def denial(self) -> dict[str, Any]:
        """The answer when the failure policy says deny (only registration's policy ever does)."""
        ...


@dataclass(frozen=True, slots=True)
class RegistrationStep:
    settings: RegistrationSettings

    def enrich(self, event: HookEvent, apply: _Mapper) -> dict[str, Any]:
        assert event.registration_kind is not None
        return registration_update(event.registration_kind, apply(self.settings.profile))

    def denial(self) -> dict[str, Any]:
        return denial(self.settings.deny_message)


@dataclass(frozen=True, slots=True)
class TokenStep:
    settings: TokenSettings

    def enrich(self, event: HookEvent, apply: _Mapper) -> dict[str, Any]:
        return token_patch(event, apply(self.settings.id_token), apply(self.settings.access_token))

    def denial(self) -> dict[str, Any]:
        return no_change()  # no deny answer in Okta's contract: the policy never asks one


@dataclass(frozen=True, slots=True)
class SamlStep:
    settings: SamlSettings

    def enrich(self, event: HookEvent, apply: _Mapper) -> dict[str, Any]:
        return saml_patch(event, apply(self.settings.attributes))

    def denial(self) -> dict[str, Any]:
        return no_change()


@dataclass(frozen=True, slots=True)
class UserImportStep:
    settings: UserImportSettings

    def enrich(self, event: HookEvent, apply: _Mapper) -> dict[str, Any]:
        return import_update(apply(self.settings.profile), apply(self.settings.app_user_profile))

    def denial(self) -> dict[str, Any]:
        return no_change()


def step_for(settings: HookSettings) -> Step:
    """The step of the hook type ``settings`` configures."""
    if isinstance(settings, RegistrationSettings):
        return RegistrationStep(settings)
    if isinstance(settings, TokenSettings):
        return TokenStep(settings)
    if isinstance(settings, SamlSettings):
        return SamlStep(settings)
    if isinstance(settings, UserImportSettings):
        return UserImportStep(settings)
    raise TypeError(f"no enrichment step for {type(settings).__name__}")
