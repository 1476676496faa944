"""Bound ldap3 connections: opening them with failover and TLS, keeping them for reuse.

ldap3 has a ServerPool, but it keeps server health per connection (one connection learning a server
is down does not help the others) and its restartable strategies can sleep for seconds. So this module
keeps its own process-wide server health and a LIFO stack of idle, already-bound connections. All
methods run in worker threads.

Credentials are read when a connection opens, not once: the service account binds through a
:class:`Binder` (:mod:`~service.directory.service_account`: the password its file holds now), and TLS
trusts the CA bundle's current content (``directory.ca_file``, read again when it changes). Each
connection remembers the password generation it bound with; once a newer one has bound, older
connections are replaced as they come back to the pool, one at a time.
"""

from __future__ import annotations

import math
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import ldap3
from ldap3.core import exceptions as ldap_errors

from service.directory.config import DirectoryConfig, ServerAddress
from service.directory.errors import DirectoryError, StageReporter
from service.directory.observer import DirectoryObserver
from service.secret_files import Credential, ca_bundle

T = TypeVar("T")


class Server:
    """One configured directory server and whether it is currently worth trying."""

    def __init__(self, address: ServerAddress, config: DirectoryConfig, ca: Credential | None = None) -> None:
        self.address = address
        self.name = address.name
        self._uses_tls = address.tls or config.start_tls
        if ca is None and config.ca_file and self._uses_tls:
            ca = ca_bundle(config.ca_file)
        self._ca = ca
        #: The ldap3 TLS settings and the CA generation they trust, replaced when the bundle changes.
        self._tls: tuple[int, ldap3.Tls] | None = None
        self._connect_timeout = config.connect_timeout_seconds
        self._down_until = 0.0

    def tls(self) -> ldap3.Tls | None:
        """TLS settings trusting the CA bundle as it is now (the system store without ``ca_file``).
        ldap3 builds an SSL context from them for every connection; they are rebuilt only when the
        bundle's content changed. Two threads rebuilding at once build the same thing."""
        if not self._uses_tls:
            return None
        reading = self._ca.read() if self._ca is not None else None
        generation = reading.generation if reading is not None else 0
        current = self._tls
        if current is None or current[0] != generation:
            tls = ldap3.Tls(
                validate=ssl.CERT_REQUIRED,
                version=ssl.PROTOCOL_TLS_CLIENT,
                ca_certs_data=reading.value if reading is not None else None,
            )
            current = self._tls = (generation, tls)
        return current[1]

    def ldap3_server(self) -> ldap3.Server:
        """A fresh ldap3 Server per connection: ldap3 remembers failed addresses inside the Server
        object and refuses them for a while ("invalid server address"), a second, hidden cooldown that
        would outlast ours and delay recovery after a directory restart."""
        return ldap3.Server(
            self.address.host,
            port=self.address.port,
            use_ssl=self.address.tls,
            tls=self.tls(),
            connect_timeout=self._connect_timeout,
            get_info=ldap3.NONE,  # no schema read: it costs a round trip and is not thread-safe (ldap3#1174)
        )

    def available(self, now: float) -> bool:
        return now >= self._down_until

    def mark_down(self, cooldown: float) -> None:
        self._down_until = time.monotonic() + cooldown

    def mark_up(self) -> None:
        self._down_until = 0.0


@dataclass(eq=False)
class Connection:
    server: Server
    ldap3_connection: ldap3.Connection = field(repr=False)  # its repr shows the bind password
    opened_at: float = field(default_factory=time.monotonic)
    reused: bool = False
    #: The generation of the service account's password it bound with (:class:`Binder`).
    generation: int = 0


class Binder(Protocol):
    """How a new pooled connection is bound as the service account
    (:class:`~service.directory.service_account.ServiceAccount`)."""

    def ready(self) -> None:
        """Raise :class:`DirectoryError` (``bind_failed``) when the password in hand was refused by the
        directory already: nothing is sent, not even a connection opened."""
        ...

    def bind(self, conn: ldap3.Connection) -> int:
        """Bind ``conn`` (open, TLS started) as the service account; the password generation it bound
        with. Raises :class:`DirectoryError`."""
        ...

    def retired(self, generation: int) -> bool:
        """Whether a connection bound with ``generation`` is to be replaced (a newer password bound)."""
        ...


def new_connection(
    server: Server, config: DirectoryConfig, user: str | None, password: bytes | None
) -> ldap3.Connection:
    """An unopened ldap3 connection to ``server`` as ``user``: the service account's pooled ones and a
    person's own for a password check are made alike.

    ``password`` is bytes, sent as they are: a simple bind's credentials are an octet string (RFC 4511)
    that the directory alone compares. Given a ``str``, ldap3 runs SASLprep (RFC 4013) on it first
    (NFKC, a no-break space made a space, soft hyphens and variation selectors dropped; control,
    private-use and mixed-direction text refused with an exception), which checks other bytes than the
    person typed. ``user`` (a DN) is sent as its UTF-8 bytes: ldap3 leaves a bind's name alone."""
    return ldap3.Connection(
        server.ldap3_server(),
        user=user,
        password=password,
        # SYNC leaves each answer on the connection, which is lent to one thread at a time (the pool,
        # or a password check's own connection): SAFE_SYNC would deep-copy every result and entry for
        # its caller, about a tenth of a lookup's instructions. Answers are read through run_search()
        # and run_bind() below.
        client_strategy=ldap3.SYNC,
        # ldap3 packs this into SO_RCVTIMEO as whole seconds; the exact timeout is set by open_session.
        receive_timeout=math.ceil(config.operation_timeout_seconds),
        read_only=True,
        raise_exceptions=False,
        return_empty_attributes=False,
        auto_referrals=False,
        auto_escape=False,  # the filter value is escaped once, by the caller (filter_value); never again
        # With check_names ldap3 rewrites every search base through its own DN parser (safe_dn), which
        # refuses valid DNs ("ou=People, dc=example, dc=com", "2.5.4.11=people,...") and changes the
        # meaning of others (a BER "#04..." value escaped into text). There is no schema to check names
        # against (get_info=NONE): the DNs go to the directory as configured or as it returned them.
        check_names=False,
    )


#: What RFC 4515 requires escaping in an assertion value, and whitespace at either end of it.
_FILTER_ESCAPED = re.compile(r"[\\*()\x00]|\A\s+|\s+\Z")


def filter_value(value: str) -> str:
    """``value`` escaped for a filter string handed to ldap3, which turns each ``\\XX`` back into
    that byte: the directory gets exactly the UTF-8 bytes of ``value``. Applied once, by whoever builds
    the filter. Besides RFC 4515's five characters, whitespace at either end is escaped too: ldap3
    strips every assertion value it parses (Python's ``str.strip``, Unicode whitespace: a no-break
    space, an em space, the separators \\x1c-\\x1f), so ``"alice@example.com\\u00a0"`` would be sent
    as ``"alice@example.com"``."""
    return _FILTER_ESCAPED.sub(_escape_bytes, value)


def _escape_bytes(match: re.Match[str]) -> str:
    return "".join(f"\\{byte:02x}" for byte in match.group().encode("utf-8"))


def run_search(conn: ldap3.Connection, base: str, query: str, **options: Any) -> tuple[dict[str, Any], list[Any]]:
    """One search on a connection this thread holds: ldap3's result (its ``result`` code...) and the
    answer's items (entries, references). Both are emptied first, so that no path through ldap3 can
    leave the previous search's entries (another person's) to be read as this one's."""
    conn.result = conn.response = None
    conn.search(base, query, **options)
    return conn.result or {}, conn.response or []


def run_bind(conn: ldap3.Connection, **options: Any) -> tuple[bool, dict[str, Any]]:
    """Bind on a connection this thread holds: whether it succeeded, and ldap3's result. ldap3 keeps
    the last request on the connection, decoded: for a bind, the password in clear. It is dropped here,
    so that a person's password does not outlive the check on a connection object."""
    ok = conn.bind(**options)
    conn.request = None
    return bool(ok), conn.result or {}


def open_session(conn: ldap3.Connection, config: DirectoryConfig) -> None:
    """Open the socket with the operation timeout and, with ``start_tls``, upgrade it before any bind.

    Nagle's algorithm is off: each LDAP request is one write and its answer is awaited, so there is
    nothing to coalesce. Left on, the first request after a TLS 1.3 handshake (a password check's bind)
    waited for the server's delayed ACK of the handshake's last message: 43 ms per bind against the
    test slapd, 2.6 ms without."""
    conn.open(read_server_info=False)
    conn.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.socket.settimeout(config.operation_timeout_seconds)
    if config.start_tls:
        # A refusal by the server raises LDAPStartTLSError (classified ``tls``).
        started = conn.start_tls(read_server_info=False)
        if not started:
            raise DirectoryError("tls", "StartTLS was refused by the server")
        # the TLS socket does not inherit the timeout (ldap3#356)
        conn.socket.settimeout(config.operation_timeout_seconds)


class ConnectionPool:
    """At most ``pool_size`` bound connections, each used by one thread at a time."""

    def __init__(
        self, config: DirectoryConfig, account: Binder, observer: DirectoryObserver, ca: Credential | None = None
    ) -> None:
        self._config = config
        self._account = account
        self._observer = observer
        if ca is None and config.ca_file:
            ca = ca_bundle(config.ca_file)
        self.servers = [Server(address, config, ca) for address in config.servers]
        self._idle: list[Connection] = []
        self._lent: set[Connection] = set()  # lent to a lookup, or being opened
        self._in_use = 0
        self.waiting = 0
        self._lock = threading.Lock()

    # -- lending ---------------------------------------------------------------------------------

    def acquire(self, on_stage: StageReporter) -> Connection:
        """An idle connection young enough to trust, or a new one (failing over between servers). An
        idle connection bound with an older password than the newest that bound is replaced by a new
        one: one per call, so that a rotation costs each lookup at most one bind."""
        too_old = time.monotonic() - self._config.connection_max_age_seconds
        stale: list[Connection] = []
        with self._lock:
            connection = None
            while self._idle:
                candidate = self._idle.pop()
                if candidate.opened_at < too_old:
                    stale.append(candidate)
                    continue
                if self._account.retired(candidate.generation):
                    stale.append(candidate)  # bound with an older password: replaced, one per lookup
                    break
                connection = candidate
                break
            self._in_use += 1
        for old in stale:
            _close(old)
        if connection is None:
            try:
                connection = self.open(on_stage)
            except BaseException:
                with self._lock:
                    self._in_use -= 1
                raise
        else:
            connection.reused = True
        with self._lock:
            self._lent.add(connection)
        return connection

    def release(self, connection: Connection, reusable: bool) -> None:
        with self._lock:
            self._in_use -= 1
            self._lent.discard(connection)
            keep = (
                reusable
                and len(self._idle) + self._in_use < self._config.pool_size
                and not self._account.retired(connection.generation)
            )
            if keep:
                self._idle.append(connection)
        if not keep:
            _close(connection)

    def retire(self, connection: Connection) -> None:
        """Close a connection :meth:`open` made for a holder of its own (the change feed's), never lent."""
        with self._lock:
            self._lent.discard(connection)
        _close(connection)

    def discard_idle(self, server: Server) -> None:
        """Drop the idle connections to ``server``: after one died mid-operation (server restarted, idle
        timeout), its siblings are very likely dead too."""
        with self._lock:
            dead = [c for c in self._idle if c.server is server]
            self._idle = [c for c in self._idle if c.server is not server]
        for connection in dead:
            _close(connection)

    def close(self) -> None:
        """Close idle connections, and cut the sockets of lent ones so that threads stuck on a hung
        server return now instead of at their socket timeout (which would delay the process exit)."""
        with self._lock:
            idle, self._idle = self._idle, []
            lent = list(self._lent)
        for connection in idle:
            _close(connection)
        for connection in lent:
            with suppress(OSError, AttributeError):
                connection.ldap3_connection.socket.shutdown(socket.SHUT_RDWR)

    def adjust_waiting(self, delta: int) -> None:
        with self._lock:
            self.waiting += delta

    def prewarm(self) -> None:
        """Open the pool's connections ahead of the first requests; failures are left to requests."""
        while True:
            with self._lock:
                if len(self._idle) + self._in_use >= self._config.pool_size:
                    return
                self._in_use += 1
            try:
                connection = self.open(lambda stage: None)
            except DirectoryError:
                with self._lock:
                    self._in_use -= 1
                return
            self.release(connection, reusable=True)

    # -- opening ---------------------------------------------------------------------------------

    def open(self, on_stage: StageReporter) -> Connection:
        """Connect and bind to the first available server. A server that cannot be reached is skipped
        for the cooldown; wrong credentials are not a server fault and end the attempt at once."""
        self._account.ready()
        now = time.monotonic()
        candidates = [server for server in self.servers if server.available(now)]
        if not candidates:
            raise DirectoryError("connect", "every directory server is in its failure cooldown")
        last: DirectoryError | None = None
        for server in candidates:
            try:
                return self._open_on(server, on_stage)
            except DirectoryError as error:
                if error.kind == "bind_failed":
                    raise
                server.mark_down(self._config.server_cooldown_seconds)
                last = error
        assert last is not None
        raise last

    def check(self, server: Server) -> bool:
        """Bind on a fresh connection to ``server`` and close it: the background health check. A
        failure puts the server in its cooldown, a success ends it; a refused bind is reported but, as
        in :meth:`open`, is not the server's fault (a cooldown would hide the real error from lookups)."""
        error = self.try_bind(server)
        if error is not None:
            if error.kind != "bind_failed":
                server.mark_down(self._config.server_cooldown_seconds)
            return False
        server.mark_up()
        return True

    def try_bind(self, server: Server) -> DirectoryError | None:
        """Why a fresh bind to ``server`` fails, or None when it succeeds; leaves the server's health
        as it was (``check-config --probe`` reports, it does not cause cooldowns)."""
        try:
            self._account.ready()
            connection = self._open_on(server, lambda stage: None)
        except DirectoryError as error:
            return error
        with self._lock:
            self._lent.discard(connection)
        _close(connection)
        return None

    def _open_on(self, server: Server, on_stage: StageReporter) -> Connection:
        conn = new_connection(server, self._config, self._config.bind_dn or None, None)  # the binder sets it
        connection = Connection(server, conn)
        with self._lock:
            self._lent.add(connection)
        try:
            on_stage("connect")
            with self.operation("connect", server):
                open_session(conn, self._config)
            on_stage("bind")
            with self.operation("bind", server):
                connection.generation = self._account.bind(conn)
        except BaseException:
            with self._lock:
                self._lent.discard(connection)
            _close(connection)
            raise
        return connection

    @contextmanager
    def operation(self, name: str, server: Server) -> Iterator[None]:
        """Run one LDAP operation, translating ldap3's exceptions into :class:`DirectoryError`, inside
        the observer's span and timer."""
        with self._observer.operation(name, server.name):
            try:
                yield
            except DirectoryError:
                raise
            except Exception as error:
                raise classify(error) from None

    def state(self) -> tuple[int, int, int]:
        """Connections open, connections lent out, lookups waiting for a worker thread."""
        with self._lock:
            return len(self._idle) + self._in_use, self._in_use, self.waiting


def classify(error: BaseException) -> DirectoryError:
    """Map an ldap3 or socket exception to a kind. The message names the kind only: ldap3's messages
    can quote filters and DNs."""
    if isinstance(error, socket.timeout | TimeoutError | ldap_errors.LDAPResponseTimeoutError):
        return DirectoryError("timeout", "the directory did not answer in time")
    if isinstance(error, ssl.SSLError | ldap_errors.LDAPCertificateError | ldap_errors.LDAPStartTLSError):
        return DirectoryError("tls", "TLS negotiation with the directory failed")
    if isinstance(error, ldap_errors.LDAPSocketOpenError):
        return DirectoryError("connect", "could not connect to the directory")
    if isinstance(
        error,
        ldap_errors.LDAPSessionTerminatedByServerError
        | ldap_errors.LDAPSocketReceiveError
        | ldap_errors.LDAPSocketSendError
        | ldap_errors.LDAPSocketCloseError
        | ConnectionError,
    ):
        return DirectoryError("session_lost", "the directory closed the connection")
    return DirectoryError("other", f"unexpected {type(error).__name__} from the LDAP client")


def _close(connection: Connection) -> None:
    with suppress(Exception):
        connection.ldap3_connection.unbind()
