"""One handler per hook type: look the user up, map the entry, answer Okta, or fall back.

This is the business logic, readable top to bottom; Okta's wire format is in ``service.okta``, the
directory in ``service.directory``, and what to do on failure in ``service.policy``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service import mapping
from service.directory import DeadlineExceeded, Directory, DirectoryEntry, DirectoryError
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
    #: A group claim was cut to its rule's ``max``.
    groups_cut: bool = False
    #: A group claim came from a nested walk stopped by ``max_depth``/``max_groups``.
    groups_incomplete: bool = False
    #: The unexpected exception behind ``fallback_internal_error``: telemetry logs its type and frames.
    exception: Exception | None = None


class Hook:
    def __init__(self, hook_type: HookType, settings: HookSettings, directory: Directory) -> None:
        self.type = hook_type
        self.settings = settings
        self._directory = directory
        self._enrich = _ENRICHERS[hook_type]
        # Only registration has a deny answer; settings validation refuses `deny` for the other types.
        self._deny_message = settings.deny_message if isinstance(settings, RegistrationSettings) else None
        self._attributes = mapping.required_attributes(settings.rules())
        self._resolve = mapping.resolutions(settings.rules())
        self._groups = mapping.memberships(settings.rules())

    async def answer(self, event: HookEvent, received_at: float) -> HookResult:
        """Answer ``event`` within the deadline, counted from ``received_at`` (:func:`time.monotonic`, the
        arrival of the request's first byte): time spent queued before the handler counts."""
        identifier = event.subject.pick(self.settings.subject)
        started = time.monotonic()
        refusal = identifier_refusal(identifier)
        if refusal is None and self._directory.search_value(identifier) is None:
            refusal = IdentifierRefusal.OUTSIDE_DOMAINS
        if refusal is not None:  # no lookup at all: the directory cannot be trusted to compare it
            return self._fallback(event, Outcome.REFUSED_IDENTIFIER, started, refusal=refusal)
        deadline = received_at + self.settings.deadline_seconds
        if deadline - started < self.settings.min_lookup_seconds + self._directory.queue_wait():
            # Queued too long behind other requests (overload), or too many lookups already waiting for
            # a worker thread: a lookup could not finish in time, and starting it would only delay the
            # requests queued behind this one. Answer now.
            return self._fallback(event, Outcome.FALLBACK_DEADLINE, started, stage="queue")
        try:
            entry = await self._directory.find_user(
                identifier,
                attributes=self._attributes,
                resolve=self._resolve,
                deadline=deadline,
                groups=self._groups,
            )
        except DeadlineExceeded as exceeded:
            return self._fallback(event, Outcome.FALLBACK_DEADLINE, started, stage=exceeded.stage)
        except DirectoryError as error:
            return self._fallback(event, Outcome.FALLBACK_LDAP_ERROR, started, error_kind=error.kind)
        except Exception as error:  # a bug must not become a 500: Okta would deny the registration
            return self._fallback(event, Outcome.FALLBACK_INTERNAL_ERROR, started, error=error)
        if entry is None:
            return self._fallback(event, Outcome.NO_MATCH, started)
        mapper = _Mapper(entry)
        try:
            body = self._enrich(self.settings, event, mapper)
        except Exception as error:
            return self._fallback(event, Outcome.FALLBACK_INTERNAL_ERROR, started, error=error)
        elapsed = time.monotonic() - started
        context = _diagnostics(Outcome.ENRICHED, elapsed)
        if mapper.cut or mapper.incomplete:
            context["groupsTruncated"] = True
        body = with_debug_context(body, context)
        return HookResult(
            Outcome.ENRICHED,
            body,
            event.event_id,
            event.event_id_rejected,
            directory_seconds=elapsed,
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
    ) -> HookResult:
        if error is not None:
            error_kind = type(error).__name__
        unknown = outcome in (Outcome.NO_MATCH, Outcome.REFUSED_IDENTIFIER)
        action = self.settings.on_unknown_user if unknown else self.settings.on_directory_error
        deny_message = self._deny_message if action is FailureAction.DENY else None
        deny = deny_message is not None
        body = denial(deny_message) if deny_message is not None else no_change()
        elapsed = time.monotonic() - started
        diagnostics = _diagnostics(outcome, elapsed, stage=stage, error_kind=error_kind, refusal=refusal)
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
        )


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
    return context


def _registration(settings: Any, event: HookEvent, apply: _Mapper) -> dict[str, Any]:
    s: RegistrationSettings = settings
    assert event.registration_kind is not None
    return registration_update(event.registration_kind, apply(s.profile))


def _token(settings: Any, event: HookEvent, apply: _Mapper) -> dict[str, Any]:
    s: TokenSettings = settings
    return token_patch(event, apply(s.id_token), apply(s.access_token))


def _saml(settings: Any, event: HookEvent, apply: _Mapper) -> dict[str, Any]:
    s: SamlSettings = settings
    return saml_patch(event, apply(s.attributes))


def _user_import(settings: Any, event: HookEvent, apply: _Mapper) -> dict[str, Any]:
    s: UserImportSettings = settings
    return import_update(apply(s.profile), apply(s.app_user_profile))


_ENRICHERS: dict[HookType, Callable[[Any, HookEvent, _Mapper], dict[str, Any]]] = {
    HookType.REGISTRATION: _registration,
    HookType.TOKEN: _token,
    HookType.SAML: _saml,
    HookType.USER_IMPORT: _user_import,
}
