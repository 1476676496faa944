"""The service account's bind: the password its file holds now, read again at once when the directory
refuses it, and never sent twice once refused.

Rotation as it happens: the password changes in the directory, and in the file (a Kubernetes Secret's
update reaches the pod a minute or two later, or earlier). Bound connections stay bound on most
directories; a new connection binds with the password in hand. When the directory answers
invalidCredentials (49), the file is read again at once and, when it holds another value, the bind is
tried once more with it on the same connection, inside the same ``bind`` operation: a rotation the
re-read fixes is neither an LDAP error nor a server fault. Never more than that one retry.

A value the directory refused (the file was not updated yet, or holds a wrong password) is not sent
again: each refused bind counts towards the account's lockout, on every pod. New connections then fail
at once, without a connection, until the file holds another value (looked at every few seconds), an
operator sends SIGHUP (:meth:`ServiceAccount.forget_refusal`: the password was set in the directory
after the file), or the process restarts. Bound connections keep serving meanwhile. The refusal is
reported to the observer (a log line naming the reason, a gauge); readiness does not change: every pod
has the same password, and taking them all out of the Service would turn fallback answers into
connection errors.

The first bind with a value not yet accepted is made by one thread at a time, so that pool threads
opening connections at once after a rotation try a wrong value once, not once each; the others wait for
its answer (milliseconds), at most one operation timeout (a server that does not answer refuses
nothing). A value that did bind is then used concurrently. Several threads binding at once with the
accepted value when the directory changes it can still each be refused once: at most ``pool_size`` + 1
failures per pod.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import ldap3

from service.directory.config import DirectoryConfig
from service.directory.connections import run_bind
from service.directory.credentials import rejection_reason
from service.directory.errors import DirectoryError, ErrorKind
from service.directory.observer import DirectoryObserver
from service.secret_files import Credential, Reading

INVALID_CREDENTIALS = 49
#: Refusals that are about the account, not the server: invalidCredentials, inappropriateAuthentication,
#: insufficientAccessRights, unwillingToPerform.
_REFUSED = frozenset({INVALID_CREDENTIALS, 48, 50, 53})

#: The message of a bind not even tried: the password in hand was refused already.
REFUSED_BEFORE = "the directory refused the service account's password; it is not sent again until it changes"


class ServiceAccount:
    """Implements :class:`~service.directory.connections.Binder` for the configured ``bind_dn`` and its
    password (a file's, read again when it changes, or a fixed one)."""

    def __init__(self, config: DirectoryConfig, password: Credential, observer: DirectoryObserver) -> None:
        self._dn = config.bind_dn
        self._password = password
        self._observer = observer
        #: One bind at a time with a value not yet accepted, waited for at most one operation timeout.
        self._trial = threading.Lock()
        self._trial_wait = config.operation_timeout_seconds
        self._lock = threading.Lock()
        self._accepted: int | None = None  # the newest generation that bound
        self._refused: int | None = None  # a generation the directory refused: never sent again
        self._reported = False  # a refusal was reported and no bind has succeeded since

    def ready(self) -> None:
        if self._password.read().generation == self._refused:
            raise DirectoryError("bind_failed", REFUSED_BEFORE)

    def retired(self, generation: int) -> bool:
        accepted = self._accepted
        return accepted is not None and generation < accepted

    def forget_refusal(self) -> bool:
        """Allow one more bind with a refused value (SIGHUP: the operator set it in the directory after
        the file); whether there was one."""
        with self._lock:
            refused, self._refused = self._refused, None
        return refused is not None

    def bind(self, conn: ldap3.Connection) -> int:
        reading = self._password.read()
        for retry in (False, True):
            with self._turn(reading) as reading:
                if reading.generation == self._refused:
                    raise DirectoryError("bind_failed", REFUSED_BEFORE)
                conn.password = reading.value.encode("utf-8") if self._dn else None  # the exact bytes
                ok, result = run_bind(conn)
                if ok:
                    self._accept(reading)
                    return reading.generation
                code = result.get("result")
                if code != INVALID_CREDENTIALS:
                    kind: ErrorKind = "bind_failed" if code in _REFUSED else "server_error"
                    raise DirectoryError(kind, f"bind refused with LDAP result code {code}")
                newer = None if retry else self._newer_than(reading)
                if newer is None:
                    self._refuse(reading, rejection_reason(result).value)
                    raise DirectoryError("bind_failed", f"bind refused with LDAP result code {code}")
            reading = newer
        raise AssertionError("unreachable: the second try returns or raises")

    def _newer_than(self, reading: Reading) -> Reading | None:
        """The file's value now, read at once, when it is not the one refused (rotated meanwhile)."""
        current = self._password.refresh_now() or self._password.read()  # or another thread read it
        return current if current.generation != reading.generation else None

    @contextmanager
    def _turn(self, reading: Reading) -> Iterator[Reading]:
        """The reading to bind with: ``reading`` at once when it bound before; else, holding the trial
        lock, the current one (another thread may have tried a value meanwhile)."""
        if reading.generation == self._accepted:
            yield reading
            return
        if not self._trial.acquire(timeout=self._trial_wait):
            # The other try is stuck on a server that does not answer: no answer is no refusal, and
            # waiting longer would only make this lookup later. Go on without it.
            yield self._password.read()
            return
        try:
            yield self._password.read()
        finally:
            self._trial.release()

    def _accept(self, reading: Reading) -> None:
        with self._lock:
            rotated = reading.generation > 0 and self._accepted != reading.generation
            if self._accepted is None or reading.generation > self._accepted:
                self._accepted = reading.generation
            if self._refused is not None and self._refused <= reading.generation:
                self._refused = None
            report, self._reported = rotated or self._reported, False
        if report:
            self._observer.password_accepted(self._password.name)

    def _refuse(self, reading: Reading, reason: str) -> None:
        with self._lock:
            first = self._refused != reading.generation
            self._refused = reading.generation
            self._reported = True
        if first:
            self._observer.password_refused(self._password.name, reason)
