"""Is a listening port free? Asked before anything is printed or started, so that a port another
process holds ends in one line naming it, not in a traceback after the demo banner has already
told the reader which curl to paste.

The check binds the way Sanic's listener does (``SO_REUSEADDR``, so a port left in TIME_WAIT by the
previous run counts as free) and closes at once. Another process can still take the port between
this check and the real bind; that rare case still fails at the bind, as before.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping


def busy_port(host: str, ports: Iterable[int]) -> int | None:
    """The first of ``ports`` that cannot be bound on ``host``, or None when all of them can."""
    for port in ports:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                return port
    return None


def busy_message(host: str, ports: Mapping[str, int]) -> str | None:
    """A one-line message naming the first taken port and the setting that chose it, or None."""
    taken = busy_port(host, ports.values())
    if taken is None:
        return None
    name = next(name for name, port in ports.items() if port == taken)
    return f"port {taken} ({name}) on {host} is already in use: stop what listens there or choose another port"
