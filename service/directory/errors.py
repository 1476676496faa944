"""Directory failures, classified into a small fixed set of kinds.

The kind is what callers branch on and what metrics count; the message never holds a DN, a filter or
a value from the request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

ErrorKind = Literal["timeout", "connect", "tls", "bind_failed", "session_lost", "ambiguous", "server_error", "other"]
Stage = Literal["queue", "pool_wait", "connect", "bind", "search", "resolve", "groups", "user_bind"]
#: Told each stage a lookup reaches, before its operation starts: the thread bridge
#: (:mod:`service.directory.worker`) records it for :class:`DeadlineExceeded`, and raises
#: :class:`Abandoned` there once nobody waits for the answer any more.
StageReporter = Callable[[Stage], None]


class DirectoryError(Exception):
    """The directory could not answer. ``kind`` is one of :data:`ErrorKind`."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind


class DeadlineExceeded(Exception):
    """The lookup did not finish within its deadline; ``stage`` says what it was doing."""

    def __init__(self, stage: Stage) -> None:
        super().__init__(f"deadline exceeded during {stage}")
        self.stage: Stage = stage


class Abandoned(Exception):
    """Raised by a :data:`StageReporter` between two operations: the caller stopped waiting (deadline
    passed, client gone), so the thread stops there. The connection in hand is still sound."""
