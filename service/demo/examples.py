"""``okta-ldap-hook try``: send Okta's example event of every hook type to a running service and print
each answer, so that ``make run`` in one terminal and ``make try`` in another show every hook at work.

The events are Okta's own documented examples (``service/demo/data/*-event.json``, copied unmodified
from the inline-hook OpenAPI spec); their users exist in the demo directory. Each event goes to the
endpoint its ``eventType`` names, with the secret the demo uses (``$OKTA_HOOK_SECRET``, else the demo's
default), exactly as the demo's printed curl sends it. Standard library only: this is a client.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.demo.run import DEMO_SECRET
from service.hooks.registry import HookType

SECRET_ENV = "OKTA_HOOK_SECRET"
_BY_EVENT_TYPE = {hook_type.event_type: hook_type for hook_type in HookType}


@dataclass(frozen=True, slots=True)
class Example:
    """One example event and where it goes."""

    name: str
    hook_type: HookType
    request_type: str | None
    body: bytes


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any] | None
    seconds: float


def examples(directory: Path | None = None) -> list[Example]:
    """Every ``*-event.json`` of the demo data (or of ``directory``), in file-name order."""
    root = directory or Path(str(importlib.resources.files("service.demo") / "data"))
    found = []
    for path in sorted(root.glob("*-event.json")):
        body = path.read_bytes()
        event = json.loads(body)
        hook_type = _BY_EVENT_TYPE.get(event.get("eventType"))
        if hook_type is None:
            raise ValueError(f"{path.name}: eventType is not one this service answers")
        found.append(Example(path.name, hook_type, event.get("requestType"), body))
    return found


def send(example: Example, url: str, header: str, secret: str, timeout: float = 10.0) -> Answer:
    """POST one example as Okta would; an HTTP error status is an answer too, a refused connection is not."""
    request = urllib.request.Request(
        url.rstrip("/") + example.hook_type.path,
        data=example.body,
        method="POST",
        headers={header: secret, "Content-Type": "application/json", "Accept": "application/json"},
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # only http(s): try_all checks the URL
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    seconds = time.perf_counter() - started
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    return Answer(status, body if isinstance(body, dict) else None, seconds)


def describe(example: Example, answer: Answer) -> Iterator[str]:
    """The answer as a reader wants it: status, outcome, then each command Okta would apply."""
    kind = f" ({example.request_type})" if example.request_type else ""
    body = answer.body or {}
    outcome = body.get("debugContext", {}).get("outcome", "-")
    yield f"{example.hook_type.value}{kind}  [{example.name}]"
    milliseconds = answer.seconds * 1000
    yield f"  POST {example.hook_type.path} -> HTTP {answer.status} in {milliseconds:.0f} ms, outcome: {outcome}"
    for command in body.get("commands", []):
        yield f"  {command.get('type')}"
        value = command.get("value")
        operations = value if isinstance(value, list) else [value]
        for operation in operations:
            yield "    " + json.dumps(operation, ensure_ascii=False)
    if answer.status != 200 and "message" in body:
        yield f"  refused: {body['message']}"
    if "error" in body:
        yield f"  error: {json.dumps(body['error'], ensure_ascii=False)}"
    if answer.status == 200 and not body.get("commands") and "error" not in body:
        yield "  no commands: Okta goes on with its default action"


def try_all(url: str, header: str, secret: str | None = None, out: Callable[[str], None] = print) -> int:
    """Send every example to the service at ``url``; 0 when each one was answered with HTTP 200."""
    if not url.startswith(("http://", "https://")):
        print(f"okta-ldap-hook try: --url must start with http:// or https://, got {url!r}", file=sys.stderr)
        return 2
    secret = secret if secret is not None else os.environ.get(SECRET_ENV, DEMO_SECRET)
    failures = 0
    for example in examples():
        try:
            answer = send(example, url, header, secret)
        except OSError as error:
            reason = getattr(error, "reason", error)
            message = f"okta-ldap-hook try: nothing answers at {url} ({reason}); start the service first (make run)"
            print(message, file=sys.stderr)
            return 1
        for line in describe(example, answer):
            out(line)
        out("")
        failures += answer.status != 200
    return 1 if failures else 0
