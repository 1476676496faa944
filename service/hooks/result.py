"""What one hook call did: the answer for Okta, and what happened on the way.

Every hook type makes one :class:`HookResult` per call; the server sends its ``body`` and telemetry
reads the rest (outcome counters, the log line, the span), so a new fact about a call is a new field
here and nowhere else. Standard library only, and nothing of the hook types: telemetry imports it.
"""

from __future__ import annotations

import marshal
from dataclasses import dataclass
from typing import Literal

from service.directory.protocol import CacheResult
from service.okta import JsonObject, UnsafeIdentifier
from service.policy import Outcome

CredentialResult = Literal["verified", "unverified", "error"]


@dataclass(slots=True)
class HookResult:
    """The answer for Okta and what happened on the way, for telemetry. Not changed once made, but not
    ``frozen``: a frozen dataclass sets each of these fields through ``object.__setattr__``, two
    thirds of the cost of making one, on every hook call."""

    outcome: Outcome
    body: JsonObject
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
    unsafe_identifier: UnsafeIdentifier | None = None
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
    credential: CredentialResult | None = None
    credential_reason: str | None = None
    #: The unexpected exception behind ``fallback_internal_error``: telemetry logs its type and frames.
    exception: Exception | None = None
    #: Several directories (outcome ``enriched_partial``): (directory name, reason) of each directory whose
    #: part the answer lacks; reason ``deadline`` or the directory error kind. Telemetry counts
    #: ``okta_hook_directory_missing_total`` and logs ``missing_directories`` from it. Not kept in
    #: :class:`Remembered`: a partial answer is not replayed.
    missing: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Remembered:
    """What is kept of an answer for Okta's retry of the same event: enough to give the same answer and
    count it the same way. The body is kept marshalled: a tenth of the memory of the body as dicts, for
    up to 10,000 remembered answers."""

    outcome: Outcome
    denied: bool
    error_kind: str | None
    groups_cut: bool
    groups_incomplete: bool
    body: bytes

    @classmethod
    def of(cls, result: HookResult) -> Remembered:
        return cls(
            result.outcome,
            result.denied,
            result.error_kind,
            result.groups_cut,
            result.groups_incomplete,
            marshal.dumps(result.body),
        )

    def replay(self, event_id: str) -> HookResult:
        """The remembered answer again, marked as a replay (``cache: replay``)."""
        return HookResult(
            self.outcome,
            marshal.loads(self.body),
            event_id,
            denied=self.denied,
            error_kind=self.error_kind,
            cache="replay",
            groups_cut=self.groups_cut,
            groups_incomplete=self.groups_incomplete,
        )


def debug_context(
    outcome: Outcome,
    elapsed: float,
    *,
    stage: str | None = None,
    error_kind: str | None = None,
    reason: str | None = None,
    cache: str | None = None,
    missing: tuple[tuple[str, str], ...] = (),
) -> dict[str, str | int]:
    """What Okta's System Log shows about an answer (its ``debugContext``): fixed vocabularies, the
    configured names of directories and a duration, nothing from the event or the directory entry.
    ``missingDirectories`` is one flat string (``hr:deadline,emea:connect``): the System Log shows flat
    values as they are."""
    context: dict[str, str | int] = {"outcome": outcome.value, "directoryMs": round(elapsed * 1000)}
    if reason:
        context["reason"] = reason
    if stage:
        context["deadlineStage"] = stage
    if error_kind:
        context["error"] = error_kind
    if cache:
        context["cache"] = cache
    if missing:
        context["missingDirectories"] = ",".join(f"{name}:{reason}" for name, reason in missing)
    return context
