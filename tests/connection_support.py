"""Raw-socket clients for the connection tests: what a dropped, half-sent or trickling request looks like
on the wire, which an HTTP client library would never send."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Callable
from typing import Any

from support.config import SECRET


def request_bytes(
    path: str, body: dict[str, Any] | bytes, secret: str = SECRET, content_length: int | None = None
) -> bytes:
    """A complete HTTP/1.1 POST; ``content_length`` overrides the header (to announce more than is sent)."""
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    length = len(payload) if content_length is None else content_length
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: {secret}\r\nContent-Length: {length}\r\n\r\n"
    )
    return head.encode() + payload


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def send_and_drop(port: int, data: bytes, wait: float = 0.0) -> None:
    """Send ``data``, wait, then close the connection without reading anything."""
    with connect(port) as sock:
        sock.sendall(data)
        time.sleep(wait)


def closed_by_server(
    sock: socket.socket, within: float, feed: Callable[[], bytes | None] | None = None
) -> float | None:
    """Seconds until the server closed ``sock`` (EOF or reset), or None if it was still open after
    ``within``. ``feed`` is called about every 0.5 s and what it returns is sent (a trickling client)."""
    started = time.monotonic()
    sock.settimeout(0.5)
    while time.monotonic() - started < within:
        if feed is not None:
            chunk = feed()
            if chunk:
                try:
                    sock.sendall(chunk)
                except OSError:
                    return time.monotonic() - started
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
        if not data:
            return time.monotonic() - started
    return None


def metric_value(metrics: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in metrics.splitlines():
        match = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if not match:
            continue
        present = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1) or ""))
        if all(present.get(key) == value for key, value in labels.items()):
            total += float(match.group(2))
    return total


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def log_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                lines.append(json.loads(line))
    return lines
