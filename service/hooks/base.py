"""What every hook type shares: the kind of record a hook type is, and the machinery of the types that
enrich (look the user up, cache replay, deadline, fallback by the type's failure policy).

A hook type is one module of this package (``registration.py``, ``token.py``...): its event, its
settings, its commands and its answer step, described by one :class:`HookKind`; ``registry.py`` lists
them. This is the business logic, readable top to bottom; Okta's shared envelope is in ``service.okta``,
the directory in ``service.directory``, and what to do on failure in ``service.policy``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from service import mapping
from service.cache import CachePolicy, RecentAnswers
from service.directory import (
    CacheResult,
    CredentialDirectory,
    DeadlineExceeded,
    DirectoryError,
    DirectorySet,
    UserDirectory,
    UserQuery,
)
from service.federation import Federation, Person
from service.hooks.config import EnrichingSettings, HookSettings
from service.hooks.result import HookResult, Remembered, debug_context
from service.okta import (
    Document,
    EventShape,
    HookEvent,
    SubjectReader,
    UnsafeIdentifier,
    no_change,
    unsafe_identifier,
    with_debug_context,
)
from service.policy import Answer, FailurePolicy, HookAnswers, Outcome

S = TypeVar("S", bound=HookSettings)


class HookTypeRef(EventShape, Protocol):
    """A hook type as the hooks see it (``service.hooks.registry.HookType``): its name, its route, its
    events, and what its kind makes of its settings."""

    @property
    def value(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def answers(self) -> frozenset[Answer]: ...

    def peers(self) -> Iterable[HookAnswers]: ...

    def failure_policy(self, settings: HookSettings) -> FailurePolicy: ...

    def step(self, settings: EnrichingSettings) -> Step: ...


class Hook(Protocol):
    """One hook type's endpoint logic: event in, answer out, within the deadline."""

    type: HookTypeRef

    async def answer(self, event: HookEvent, received_at: float) -> HookResult:
        """Answer ``event`` within the deadline counted from ``received_at`` (:func:`time.monotonic`, the
        arrival of the request's first byte): time spent queued before the handler counts."""
        ...

    def forget_answers(self) -> None:
        """Drop whatever is remembered for Okta's retries (an operator's flush)."""
        ...


class LiveDirectory(UserDirectory, CredentialDirectory, Protocol):
    """The directory itself, never a cache: what password checks use, and what caches wrap."""


class Wiring(Protocol):
    """What the server hands a hook type to build its hook from."""

    @property
    def directories(self) -> DirectorySet:
        """Every configured directory, by name."""
        ...

    def live(self, name: str) -> LiveDirectory:
        """Directory ``name`` itself, never a cache."""
        ...

    def cached(self, hook_type: str, name: str, policy: CachePolicy, deadline_seconds: float) -> UserDirectory:
        """Directory ``name`` behind the hook type's own cache of it, or itself with the cache off."""
        ...


@dataclass(frozen=True)
class HookKind(Generic[S]):
    """Everything particular to one hook type, in one record: the registry's entries."""

    #: The name in configuration (``hooks.<name>``), metrics and logs; the route is ``/hooks/<name>``
    #: with dashes.
    name: str
    #: Okta's ``eventType`` for this hook type.
    event_type: str
    #: The section class of ``hooks.<name>``.
    settings: type[S]
    #: Where its events name the person: ``(event, event's data) -> Subject``; may raise ``EventError``.
    read_subject: SubjectReader
    #: The hook for a configured section.
    build: Callable[[HookTypeRef, S, Wiring], Hook]
    #: The answer step of an enriching type (what it makes of a found entry); None for the others.
    step: Callable[[S], Step] | None = None
    #: The (result, reason) pairs it counts in ``okta_hook_password_verifications_total``, declared at zero.
    verifications: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def build_enriching(hook_type: HookTypeRef, settings: EnrichingSettings, wiring: Wiring) -> Hook:
    """The ``build`` of every enriching hook type: its step over the directories its rules read, each
    behind the type's own cache of it."""

    def through_cache(name: str) -> UserDirectory:
        return wiring.cached(hook_type.value, name, settings.cache, settings.deadline_seconds)

    federation = Federation.plan(wiring.directories, reads(settings.rules()), through_cache)
    return EnrichingHook(hook_type, settings, federation)


def reads(rules: Iterable[mapping.MappingRule]) -> dict[str | None, UserQuery]:
    """What the rules read of each directory they name (None: the one that holds the person), as a
    query template. Its groups are in it (and so in the cache key): an entry read without the nested
    walk never answers a mapping that needs nested groups."""
    return {
        directory: UserQuery.of(
            "", mapping.required_attributes(group), mapping.resolutions(group), mapping.memberships(group)
        )
        for directory, group in mapping.by_directory(rules).items()
    }


class EnrichingHook:
    """The hook types that enrich (registration, token, SAML, user import): look the user up, map their
    entry with the type's :class:`Step`, or answer what the type's failure policy says."""

    def __init__(
        self, hook_type: HookTypeRef, settings: EnrichingSettings, directories: Federation | UserDirectory
    ) -> None:
        """``directories``: the directories the rules read (:func:`build_enriching`), or one directory
        that holds everyone and everything they read."""
        self.type = hook_type
        self.settings = settings
        if not isinstance(directories, Federation):
            directories = Federation.alone(directories, reads(settings.rules()))
        self._directories = directories
        self._step = hook_type.step(settings)
        self._policy = hook_type.failure_policy(settings)
        self._answered: RecentAnswers[bytes, Remembered] = RecentAnswers(settings.cache.replay_seconds)

    def forget_answers(self) -> None:
        """Drop the answers kept for Okta's retries (with the cache, on an operator's flush)."""
        self._answered.clear()

    async def answer(self, event: HookEvent, received_at: float) -> HookResult:
        """Answer ``event`` within the deadline, counted from ``received_at`` (:func:`time.monotonic`, the
        arrival of the request's first byte): time spent queued before the handler counts.

        An event answered from the directory's data shortly before (Okta's retry: the same body again,
        eventId included) gets that same answer again. A fallback is not repeated: the retry is a second
        chance."""
        key = self._replay_key(event)
        if key is not None:
            previous = self._answered.get(key)
            if previous is not None:
                return previous.replay(event.event_id)
        result = await self._answer(event, received_at)
        if key is not None and result.outcome in _REPLAYED:
            self._answered.put(key, Remembered.of(result))
        return result

    def _replay_key(self, event: HookEvent) -> bytes | None:
        """What identifies the event for Okta's retry: the digest of its body, None when nothing is
        replayed (no eventId, or ``replay_seconds: 0``).

        Not the eventId (with the user) alone: Okta's documented examples carry fixed eventIds, and an
        edited copy of one (another token requested, a claim already present) must not get the answer
        of the original. Everything else the answer depends on is fixed for this object: the hook type
        (one memory per :class:`Hook`) and the settings (read once at start; SIGHUP empties the memory).
        SHA-256: 4 us for Okta's 4 KB token and SAML examples, 1 us for its registration example (parsing
        them: 78 us and 18 us; best of 9, CPU with SHA instructions), and no sender can make two bodies
        share a digest."""
        if not event.event_id or not self._answered.enabled:
            return None
        return hashlib.sha256(event.raw).digest()

    async def _answer(self, event: HookEvent, received_at: float) -> HookResult:
        identifier = event.subject.pick(self.settings.subject)
        started = time.monotonic()
        unsafe = unsafe_identifier(identifier)
        # The values the directories compare, computed once for the request: the queries carry them on.
        values = self._directories.search_values(identifier) if unsafe is None else {}
        if not values:  # no lookup at all: no directory holds such a login, or could compare it safely
            unsafe = unsafe or UnsafeIdentifier.OUTSIDE_DOMAINS
            return self._fallback(event, Outcome.REFUSED_IDENTIFIER, None, unsafe=unsafe)
        deadline = received_at + self.settings.deadline_seconds
        # A lookup started after this could not finish in time: the directory sheds it (stage "queue").
        start_by = deadline - self.settings.min_lookup_seconds
        try:
            found = await self._directories.find(values, deadline, start_by)
        except DeadlineExceeded as exceeded:
            return self._fallback(event, Outcome.FALLBACK_DEADLINE, started, stage=exceeded.stage)
        except DirectoryError as error:
            return self._fallback(event, Outcome.FALLBACK_LDAP_ERROR, started, error_kind=error.kind)
        except Exception as error:  # a bug must not become a 500: Okta would deny the registration
            return self._fallback(event, Outcome.FALLBACK_INTERNAL_ERROR, started, error=error)
        person = found.person
        if person is None:
            return self._fallback(event, Outcome.NO_MATCH, started, cache=found.cache)
        cache, missing = person.cache, tuple(person.missing.items())
        if missing and self._policy.answer(Outcome.ENRICHED_PARTIAL) is Answer.DENY:
            return self._fallback(event, Outcome.ENRICHED_PARTIAL, started, cache=cache, missing=missing)
        mapper = Mapper(person)
        try:
            body = self._step.enrich(event, mapper)
        except Exception as error:
            return self._fallback(event, Outcome.FALLBACK_INTERNAL_ERROR, started, error=error, cache=cache)
        elapsed = time.monotonic() - started
        # Partial: a directory the rules read did not answer in time (person.missing says which, why).
        # Stale: a directory failed (person.error_kind says how) and an older answer was served.
        outcome = (
            Outcome.ENRICHED_PARTIAL if missing else Outcome.ENRICHED_STALE if cache == "stale" else Outcome.ENRICHED
        )
        context = debug_context(outcome, elapsed, error_kind=person.error_kind, cache=cache, missing=missing)
        if mapper.cut or mapper.incomplete:
            context["groupsTruncated"] = True
        body = with_debug_context(body, context)
        return HookResult(
            outcome,
            body,
            event.event_id,
            event.event_id_rejected,
            error_kind=person.error_kind,
            directory_seconds=elapsed,
            cache=cache,
            groups_cut=mapper.cut,
            groups_incomplete=mapper.incomplete,
            missing=missing,
        )

    def _fallback(
        self,
        event: HookEvent,
        outcome: Outcome,
        started: float | None,
        *,
        stage: str | None = None,
        error_kind: str | None = None,
        unsafe: UnsafeIdentifier | None = None,
        error: Exception | None = None,
        cache: CacheResult | None = None,
        missing: tuple[tuple[str, str], ...] = (),
    ) -> HookResult:
        if error is not None:
            error_kind = type(error).__name__
        deny = self._policy.answer(outcome) is Answer.DENY
        body = self._step.denial() if deny else no_change()
        elapsed = 0.0 if started is None else time.monotonic() - started  # None: no directory was asked
        reason = unsafe.value if unsafe is not None else None
        diagnostics = debug_context(
            outcome, elapsed, stage=stage, error_kind=error_kind, reason=reason, cache=cache, missing=missing
        )
        body = with_debug_context(body, diagnostics)
        return HookResult(
            outcome,
            body,
            event.event_id,
            event.event_id_rejected,
            denied=deny,
            stage=stage,
            error_kind=error_kind,
            unsafe_identifier=unsafe,
            directory_seconds=elapsed,
            exception=error,
            cache=cache,
            missing=missing,
        )


#: Answers made from the directory's data: what Okta's retry of the same event gets again.
_REPLAYED = frozenset({Outcome.ENRICHED, Outcome.ENRICHED_STALE, Outcome.NO_MATCH})


class Mapper:
    """Applies rule sets to one person's entries, each rule to the entry of the directory it reads, and
    remembers whether any group claim lost names on the way."""

    def __init__(self, person: Person) -> None:
        self._person = person
        self.cut = False
        self.incomplete = False

    def __call__(self, rules: mapping.Rules) -> dict[str, mapping.Value]:
        person = self._person
        directories = {rule.directory for rule in rules.values()}
        if len(directories) == 1:  # every rule reads one directory (always, with one directory)
            entry = person.entry(directories.pop())
            return self._mapped(rules, entry) if entry is not None else {}
        values: dict[str, mapping.Value] = {}
        for directory in directories:
            entry = person.entry(directory)
            if entry is not None:  # None: that directory's part is missing, Okta keeps what it has
                values.update(self._mapped({k: r for k, r in rules.items() if r.directory == directory}, entry))
        return {name: values[name] for name in rules if name in values}  # the rules' order

    def _mapped(self, rules: mapping.Rules, entry: mapping.Entry) -> dict[str, mapping.Value]:
        mapped = mapping.map_entry(rules, entry)
        self.cut = self.cut or bool(mapped.cut)
        self.incomplete = self.incomplete or bool(mapped.incomplete)
        return mapped.values


class Step(Protocol):
    """What one enriching hook type does with a found entry, with its own typed settings."""

    def enrich(self, event: HookEvent, apply: Mapper) -> Document:
        """Okta's commands for ``event``, from the values ``apply`` maps out of the entry."""
        ...

    def denial(self) -> Document:
        """The answer when the failure policy says deny (only registration's policy ever does)."""
        ...


class NoDenial:
    """The :meth:`Step.denial` of the types without a deny answer in Okta's contract: their policy never
    asks one, so the default action stands."""

    def denial(self) -> Document:
        return no_change()
