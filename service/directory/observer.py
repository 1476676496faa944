"""The seam through which telemetry watches the directory without the directory knowing about it."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Protocol


class DirectoryObserver(Protocol):
    def operation(self, name: str, server: str) -> AbstractContextManager[object]:
        """Wraps one LDAP operation (``connect``, ``bind``, ``search``, ``resolve``, ``groups``). A
        :class:`~service.directory.DirectoryError` raised inside it is the operation's failure."""
        ...

    def server_up(self, server: str, up: bool) -> None:
        """Result of the background check of one server."""
        ...


class NullObserver:
    def operation(self, name: str, server: str) -> AbstractContextManager[object]:
        return nullcontext()

    def server_up(self, server: str, up: bool) -> None:
        pass
