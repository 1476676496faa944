"""structlog configuration: JSON lines in production, readable lines on a terminal.

Sanic's own stdlib loggers go through the same processors. Events carry only what the service puts in
them on purpose (event ids, hook types, outcomes, durations): request bodies, logins, DNs and secrets are
never passed to a logger, and the keys that would name a secret (:data:`SECRET_KEYS`, the configured
secret header) are redacted as a second line of defence.
Exceptions are logged as type and frames only (:func:`safe_traceback`): their messages and frame locals
can hold user data.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any

import structlog
from opentelemetry import trace

from service import json_text

#: Keys whose value is redacted, compared whole (lower case, ``-`` read as ``_``): the password, the
#: secrets, bearer tokens, cookies. Whole keys, not parts: ``credential`` and ``credential_reason`` (the
#: password check's result and reason, fixed vocabularies) are what a log line is for.
SECRET_KEYS = frozenset(
    {
        "password",
        "bind_password",
        "secret",
        "hook_secret",
        "client_secret",
        "authorization",
        "proxy_authorization",
        "bearer",
        "token",
        "access_token",
        "id_token",
        "refresh_token",
        "cookie",
        "set_cookie",
    }
)


def add_trace_ids(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Trace and span ids of the current span, so a log line leads to its trace."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event


class UtcTimestamp:
    """The ``timestamp`` of a log line: what ``structlog.processors.TimeStamper(fmt="iso", utc=True)``
    writes (``2026-11-29T14:57:37.123456Z``, no fraction at a whole second), with the date and the time
    to the second formatted once per second rather than on every line."""

    __slots__ = ("_second",)

    def __init__(self) -> None:
        #: (the Unix second, its ISO text): one tuple, swapped whole, so threads never see half of it
        self._second: tuple[int, str] = (-1, "")

    def __call__(self, _: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        second, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
        cached, text = self._second
        if second != cached:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, text)
        microseconds = nanoseconds // 1000
        event["timestamp"] = f"{text}.{microseconds:06d}Z" if microseconds else f"{text}Z"
        return event


class Redact:
    """Replaces the value of every key in :data:`SECRET_KEYS` or named like the secret header."""

    __slots__ = ("_keys", "_known")

    def __init__(self, secret_header: str = "Authorization") -> None:
        self._keys = SECRET_KEYS | {_normal(secret_header)}
        #: key -> whether it is redacted. Keys come from the code, a small fixed set: checking each once
        #: instead of on every log line matters at thousands of hook calls per second.
        self._known: dict[str, bool] = {}

    def __call__(self, _: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        known = self._known
        for key in event:
            secret = known.get(key)
            if secret is None:
                secret = _normal(key) in self._keys
                if len(known) < 4096:
                    known[key] = secret
            if secret:
                event[key] = "[REDACTED]"
        return event


def _normal(key: str) -> str:
    return key.lower().replace("-", "_")


#: Frames kept per exception, innermost last: enough to find the line, bounded so one log line stays small.
MAX_FRAMES = 30


def safe_traceback(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Render ``exc_info`` as the exception's type and its frames (file, line, function), without the
    exception's message or any local variable: a ``KeyError`` or an LDAP error can carry a login or a
    DN in its message, and frame locals hold the request. Causes are kept the same way."""
    exc_info = event.pop("exc_info", None)
    if exc_info is None or exc_info is False:
        return event
    if exc_info is True:
        exc_info = sys.exc_info()
    elif isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    error = exc_info[1] if isinstance(exc_info, tuple) else None
    if isinstance(error, BaseException):
        event["exception"] = describe_exception(error)
    return event


def describe_exception(error: BaseException) -> list[dict[str, Any]]:
    """The chain of ``error`` (outermost first): type and frames of each, never a message or a value."""
    chain: list[dict[str, Any]] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(chain) < 5:
        seen.add(id(current))
        chain.append({"type": _qualified_name(type(current)), "frames": _frames(current.__traceback__)})
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return chain


def log_exception(event: str, error: BaseException, **fields: Any) -> None:
    """One error line for an exception nobody expected: its type and frames, no message (see
    :func:`safe_traceback`). ``fields`` must hold fixed-vocabulary values only."""
    structlog.get_logger("okta_ldap_hook").error(event, exc_info=error, error_type=type(error).__name__, **fields)


def _qualified_name(kind: type[BaseException]) -> str:
    module = kind.__module__
    return kind.__qualname__ if module in ("builtins", "__main__") else f"{module}.{kind.__qualname__}"


def _frames(tb: TracebackType | None) -> list[dict[str, Any]]:
    summary = traceback.extract_tb(tb)[-MAX_FRAMES:]
    return [{"file": frame.filename, "line": frame.lineno, "function": frame.name} for frame in summary]


@functools.cache
def _encoder(default: Any) -> Callable[[Any], str]:
    return json_text.encoder(default=default)


def _dumps(event: dict[str, Any], default: Any = None) -> str:
    """What ``json.dumps(event, default=default)`` returns, with one encoder built once per ``default``
    (structlog's renderer passes the same fallback every time) instead of one per log line."""
    return _encoder(default)(event)


def configure_logging(level: str = "info", output: str = "auto", secret_header: str = "Authorization") -> None:
    """Configure structlog and route the stdlib loggers (Sanic, asyncio) through it. ldap3's own
    logging stays off: at its detailed levels it logs requests, i.e. filters and credentials.
    ``secret_header`` (``auth.header``) is redacted as a key too."""
    renderer: Any
    if output == "console" or (output == "auto" and sys.stdout.isatty()):
        renderer = structlog.dev.ConsoleRenderer()
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_dumps)
    # No merge_contextvars: nothing binds structlog context variables (a line's trace ids come from the
    # current span), and every processor runs on every hook call.
    shared: list[Any] = [
        structlog.processors.add_log_level,
        UtcTimestamp(),
        add_trace_ids,
        Redact(secret_header),
        safe_traceback,
    ]
    numeric_level = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        # one write and one flush per line (PrintLogger's print() writes the line and its newline apart)
        logger_factory=structlog.WriteLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    for name in ("sanic.root", "sanic.error", "sanic.server", "sanic.websockets"):
        sanic_logger = logging.getLogger(name)
        sanic_logger.handlers[:] = []
        sanic_logger.propagate = True
    logging.getLogger("sanic.access").disabled = True  # one summary line per hook request instead
    logging.getLogger("ldap3").disabled = True
