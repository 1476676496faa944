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

    def background_failed(self, task: str, error: Exception) -> None:
        """An unexpected exception in background work (``health_check``, ``prewarm``): a bug. The work
        goes on; the observer makes it visible."""
        ...

    def password_refused(self, source: str, reason: str) -> None:
        """The directory refused the service account's password from ``source`` (its configuration key),
        for ``reason`` (a :class:`~service.directory.protocol.PasswordRejection` value): it is not sent
        again until it changes (:mod:`~service.directory.service_account`)."""
        ...

    def password_accepted(self, source: str) -> None:
        """The service account bound with a new password from ``source``, or again after a refusal."""
        ...


class NullObserver:
    def operation(self, name: str, server: str) -> AbstractContextManager[object]:
        return nullcontext()

    def server_up(self, server: str, up: bool) -> None:
        pass

    def background_failed(self, task: str, error: Exception) -> None:
        pass

    def password_refused(self, source: str, reason: str) -> None:
        pass

    def password_accepted(self, source: str) -> None:
        pass
