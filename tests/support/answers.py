"""Assertions on the answers the service gives Okta."""

from __future__ import annotations

import time
from typing import Any

from okta_spec import example


def unchanged(body: dict[str, Any]) -> dict[str, Any]:
    """Assert an answer asks Okta to change nothing (only diagnostics); return those diagnostics."""
    assert set(body) == {"debugContext"}, body
    return body["debugContext"]


def token_answer(service: Any, event_prefix: str, **profile: str) -> dict[str, Any]:
    """The token hook's answer to Okta's example for the person ``profile`` names (``login=``,
    ``email=``), under a new eventId each time (no retry answered again): its claims by name, with its
    ``cache`` and ``outcome``. ``service`` is an in-process service (its ``post``)."""
    event = example("token")
    event["data"]["context"]["user"]["profile"].update(profile)
    event["eventId"] = f"{event_prefix}-{time.monotonic_ns()}"
    response = service.post("token", event)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    found: dict[str, Any] = {"cache": body["debugContext"].get("cache"), "outcome": body["debugContext"]["outcome"]}
    for command in body.get("commands", ()):
        for operation in command["value"]:
            found[operation["path"].rsplit("/", 1)[1]] = operation["value"]
    return found
