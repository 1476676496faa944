"""Assertions on the answers the service gives Okta."""

from __future__ import annotations

from typing import Any


def unchanged(body: dict[str, Any]) -> dict[str, Any]:
    """Assert an answer asks Okta to change nothing (only diagnostics); return those diagnostics."""
    assert set(body) == {"debugContext"}, body
    return body["debugContext"]
