"""structlog configuration: JSON lines in production, readable lines on a terminal.

Sanic's own stdlib loggers go through the same processors. Events carry only what the service puts in
them on purpose (event ids, hook types, outcomes, durations): request bodies, logins, DNs and secrets are
never passed to a logger, and keys that sound secret are redacted as a second line of defence.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from opentelemetry import trace

_REDACTED_KEYS = ("password", "secret", "token", "authorization", "cookie", "credential")


def add_trace_ids(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Trace and span ids of the current span, so a log line leads to its trace."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event


#: key -> whether it sounds secret. Keys come from the code, a small fixed set: checking each once
#: instead of on every log line matters at thousands of hook calls per second.
_SECRET_SOUNDING: dict[str, bool] = {}


def redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in event:
        secret = _SECRET_SOUNDING.get(key)
        if secret is None:
            secret = any(word in key.lower() for word in _REDACTED_KEYS)
            if len(_SECRET_SOUNDING) < 4096:
                _SECRET_SOUNDING[key] = secret
        if secret:
            event[key] = "[REDACTED]"
    return event


def configure_logging(level: str = "info", output: str = "auto") -> None:
    """Configure structlog and route the stdlib loggers (Sanic, asyncio) through it. ldap3's own
    logging stays off: at its detailed levels it logs requests, i.e. filters and credentials."""
    renderer: Any
    if output == "console" or (output == "auto" and sys.stdout.isatty()):
        renderer = structlog.dev.ConsoleRenderer()
    else:
        renderer = structlog.processors.JSONRenderer()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_ids,
        redact,
    ]
    numeric_level = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[*shared, structlog.processors.dict_tracebacks, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
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
