"""Credentials read from files, and read again when the files change: the hook secrets
(``auth.secret_files``), the service account's password (``directory.bind_password_file``) and the
directory's CA bundle (``directory.ca_file``). Rotating one is an edit of the file, or of the Kubernetes
Secret mounted there; no restart.

How a change is noticed: the kubelet updates a mounted Secret by writing the new files into a fresh
timestamped directory and swapping the ``..data`` symlink to it with one rename, so the path the
configuration names (``<mount>/<key>`` -> ``..data/<key>``) resolves to a new file. A
:class:`SecretFile` stats that path (following the links: the device, inode, size, mtime and ctime of
the file it reaches) when it is used and ``interval`` seconds have passed since the last look; the file
is read only when the stat differs. Between two looks a use costs a clock read and a comparison, so the
hook secrets can be asked on every call.

A value is never taken from a partial read. A file is accepted only when the stat of the path, the stat
of the opened file before and after the read, and the number of bytes read all agree; a file changed in
place (same inode: an editor, ``echo new > file``) must also have been still for ``SETTLE_SECONDS`` (the
kubelet's swap is atomic and is taken at once). An empty, unreadable, non-UTF-8 or (for the CA) invalid
file keeps the previous value: reported once per state of the file to the :class:`FileObserver` (a log
line and a metric, never the value), and looked at again at the next check.

Each accepted change of value increments the reading's ``generation``: the connection pool binds with
the newest password and retires connections bound with an older one. Standard library only.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from stat import S_ISREG
from typing import Protocol

#: Seconds between two looks at a file (on use). The kubelet takes up to a minute or two to project a
#: changed Secret; a few seconds more here are nothing, and a stat every few seconds costs nothing.
CHECK_INTERVAL_SECONDS = 2.0
#: A file changed in place is taken only once it has been still this long (a writer may be mid-way).
SETTLE_SECONDS = 1.0
#: Far above any secret or CA bundle (a whole system trust store is about 200 KB).
MAX_BYTES = 1 << 20


class Unusable(StrEnum):
    """Why the content of a file was not taken (the previous value stays in use)."""

    EMPTY = "empty"  # nothing but line ends
    UNREADABLE = "unreadable"  # missing, no permission...
    NOT_UTF8 = "not_utf8"
    CHANGING = "changing"  # the file changed while it was read: a partial read
    INVALID = "invalid"  # not a regular file, too large, or (the CA bundle) not PEM certificates


@dataclass(frozen=True, slots=True)
class Reading:
    """A credential's value, and how many changes of it were taken since the start (0: the value read
    at start). ``repr`` never shows the value."""

    value: str
    generation: int

    def __repr__(self) -> str:
        return f"Reading(generation={self.generation})"


class Credential(Protocol):
    """A secret as its users see it: an environment variable's value (:class:`Fixed`) or a file's
    current content (:class:`SecretFile`)."""

    @property
    def name(self) -> str:
        """Where it is configured (``auth.secret_files[1]``, ``directory.bind_password_file``): for logs
        and metric labels; never the value, nor a path."""
        ...

    def read(self) -> Reading:
        """The value in use, the file looked at again when ``interval`` has passed."""
        ...

    def refresh_now(self) -> Reading | None:
        """Look at the file now, whatever the interval: the new reading when its value changed, else
        None (for the directory's "invalid credentials", which may mean the password was rotated)."""
        ...


class Fixed:
    """A value that never changes (an environment variable: read once, at start)."""

    def __init__(self, value: str, name: str) -> None:
        self.name = name
        self._reading = Reading(value, 0)

    def read(self) -> Reading:
        return self._reading

    def refresh_now(self) -> Reading | None:
        return None


def as_credential(value: str | Credential, name: str) -> Credential:
    """``value`` as a :class:`Credential`: a plain string is a :class:`Fixed` one named ``name``."""
    return Fixed(value, name) if isinstance(value, str) else value


class FileObserver(Protocol):
    """Told about each state of a file, once: telemetry counts and logs it (the name, never the value)."""

    def accepted(self, name: str, changed: bool) -> None:
        """The file is usable: ``changed``, its new value is in use; else it is usable again with the
        value in use (after a refusal)."""
        ...

    def unusable(self, name: str, reason: Unusable) -> None:
        """The file's content was not taken; the previous value stays in use."""
        ...


class NullFileObserver:
    def accepted(self, name: str, changed: bool) -> None:
        pass

    def unusable(self, name: str, reason: Unusable) -> None:
        pass


class SecretFileError(Exception):
    """A file cannot be used at start. The message names the path and the reason, never the content."""

    def __init__(self, reason: Unusable, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Stamp:
    """What a stat says of the file a path reaches; a new one means "read it again"."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int
    regular: bool
    #: The path the links lead to (the kubelet's timestamped directory): a new one is a new file, even
    #: when its inode is the number of one deleted earlier (tmpfs hands them out again at once).
    target: str = ""

    @classmethod
    def of(cls, stat: os.stat_result, target: str = "") -> _Stamp:
        regular = S_ISREG(stat.st_mode)
        return cls(stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, regular, target)

    @classmethod
    def at(cls, path: str) -> _Stamp:
        """The stamp of the file ``path`` leads to. Raises OSError."""
        try:
            target = os.path.realpath(path)
            return cls.of(os.stat(target), target)
        except FileNotFoundError:  # the links led to a file removed since (the kubelet's swap): again
            target = os.path.realpath(path)
            return cls.of(os.stat(target), target)

    def same_file(self, other: _Stamp | None) -> bool:
        """Whether ``other`` is this file changed in place (not another file put there)."""
        return other is not None and (self.device, self.inode, self.target) == (other.device, other.inode, other.target)


#: Checks a file's text before it is taken: None when usable, else what is wrong (no content quoted).
Validator = Callable[[str], str | None]


class SecretFile:
    """One credential file: its value as last accepted, looked at again on use every ``interval``
    seconds. Safe to use from the event loop and from worker threads at once: a use never waits for
    another thread's look at the file (it gets the value in use)."""

    def __init__(
        self,
        path: str,
        name: str,
        *,
        validate: Validator | None = None,
        interval: float = CHECK_INTERVAL_SECONDS,
        settle: float = SETTLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.name = name
        self._validate = validate
        self._interval = interval
        self._settle = settle
        self._clock = clock
        self._observer: FileObserver = NullFileObserver()
        self._lock = threading.Lock()
        stamp, value = self._first_load()
        self._reading = Reading(value, 0)
        self._accepted = stamp  # the state of the file whose value is in use
        self._pending: tuple[_Stamp, float] | None = None  # an in-place change waiting to settle, since
        self._unusable: _Stamp | Unusable | None = None  # the state last refused (reported once)
        self._next_check = clock() + interval

    def watch(self, observer: FileObserver) -> None:
        """Report to ``observer`` from now on (telemetry exists after the secrets are read)."""
        self._observer = observer

    def read(self) -> Reading:
        if self._clock() < self._next_check:
            return self._reading
        if self._lock.acquire(blocking=False):  # another thread is looking: use the value in use
            try:
                self._check()
            finally:
                self._lock.release()
        return self._reading

    def refresh_now(self) -> Reading | None:
        with self._lock:
            before = self._reading
            self._check()
            return None if self._reading is before else self._reading

    # -- looking at the file -------------------------------------------------------------------------

    def _first_load(self) -> tuple[_Stamp, str]:
        """The value at start: any problem is an error (there is no previous value to keep). A writer
        at work right then gets one more chance."""
        for _ in range(2):
            try:
                stamp = _Stamp.at(self.path)
            except OSError as error:
                raise SecretFileError(Unusable.UNREADABLE, f"cannot read {self.path} ({error.strerror})") from None
            loaded = _load(stamp)
            if loaded is not Unusable.CHANGING:
                break
            time.sleep(0.1)
        return stamp, self._usable(loaded)

    def _usable(self, loaded: str | Unusable) -> str:
        if isinstance(loaded, Unusable):
            raise SecretFileError(loaded, f"{self.path} {_MESSAGES[loaded]}")
        problem = self._validate(loaded) if self._validate is not None else None
        if problem is not None:
            raise SecretFileError(Unusable.INVALID, f"{self.path} {problem}")
        return loaded

    def _check(self) -> None:
        """Look at the file (the caller holds the lock) and take its value when it changed and is
        complete and usable; else keep the value in use."""
        now = self._clock()
        self._next_check = now + self._interval
        stamp, loaded = self._look(now)
        if stamp is None or loaded is None:
            return
        if isinstance(loaded, Unusable):
            if loaded is Unusable.CHANGING:
                self._next_check = now + self._settle
            self._report_unusable(loaded, stamp)
            return
        if self._validate is not None and self._validate(loaded) is not None:
            self._report_unusable(Unusable.INVALID, stamp)  # a broken CA bundle would fail every new connection
            return
        self._accepted, self._pending = stamp, None
        if loaded == self._reading.value:
            self._usable_again()  # the same value in a new file (the kubelet swaps every key at once)
            return
        self._reading = Reading(loaded, self._reading.generation + 1)
        self._unusable = None
        self._observer.accepted(self.name, changed=True)

    def _look(self, now: float) -> tuple[_Stamp | None, str | Unusable | None]:
        """The file's stamp and its content when it is to be read now (None: nothing to take). A file
        swapped between the stat and the read (the stamped one gone, or another) is looked at once more."""
        stamp: _Stamp | None = None
        loaded: str | Unusable | None = None
        for _ in range(2):
            try:
                stamp = _Stamp.at(self.path)
            except OSError:
                self._report_unusable(Unusable.UNREADABLE, Unusable.UNREADABLE)
                return None, None
            if stamp == self._accepted:
                self._usable_again()
                return None, None
            if stamp.same_file(self._accepted) and not self._settled(stamp, now):
                return None, None
            loaded = _load(stamp)
            if loaded is not Unusable.CHANGING:
                break
        return stamp, loaded

    def _settled(self, stamp: _Stamp, now: float) -> bool:
        """Whether a file changed in place has been still long enough to be read: its mtime is
        ``settle`` seconds old, or this same state was seen that long ago (the clock of a network file
        system may disagree with ours)."""
        if self._pending is not None and self._pending[0] == stamp:
            return now - self._pending[1] >= self._settle
        self._pending = (stamp, now)
        if time.time() - stamp.mtime_ns / 1e9 >= self._settle:
            return True
        self._next_check = now + self._settle
        return False

    def _report_unusable(self, reason: Unusable, state: _Stamp | Unusable) -> None:
        if self._unusable != state:
            self._unusable = state
            self._observer.unusable(self.name, reason)

    def _usable_again(self) -> None:
        if self._unusable is not None:
            self._unusable = None
            self._observer.accepted(self.name, changed=False)


_MESSAGES = {
    Unusable.EMPTY: "is empty",
    Unusable.UNREADABLE: "cannot be read",
    Unusable.NOT_UTF8: "is not UTF-8 text",
    Unusable.CHANGING: "kept changing while it was read",
    Unusable.INVALID: f"is not a regular file of at most {MAX_BYTES} bytes",
}


def _load(stamp: _Stamp) -> str | Unusable:
    """The text of the file ``stamp`` describes (line ends at its end removed) when it is whole: the
    file opened is unchanged from the stat to the end of the read, and every byte of its size was read.
    Else why not."""
    if not stamp.regular:  # a directory, a FIFO (opening one would wait for a writer), a device
        return Unusable.INVALID
    try:
        with open(stamp.target, "rb") as file:  # the file stamped: a swap since is seen at the next look
            before = _Stamp.of(os.fstat(file.fileno()), stamp.target)
            data = file.read(MAX_BYTES + 1)
            after = _Stamp.of(os.fstat(file.fileno()), stamp.target)
    except FileNotFoundError:
        return Unusable.CHANGING  # there at the stat, gone now: the kubelet swapped and removed it
    except OSError:
        return Unusable.UNREADABLE
    if len(data) > MAX_BYTES:
        return Unusable.INVALID
    if before != stamp or after != stamp or len(data) != stamp.size:
        return Unusable.CHANGING
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return Unusable.NOT_UTF8
    text = text.rstrip("\r\n")
    return text if text else Unusable.EMPTY


def ca_bundle_problem(text: str) -> str | None:
    """None when ``text`` is a PEM bundle of at least one certificate that TLS can trust, else what is
    wrong. A bundle cut in the middle of a certificate is refused here (its last one is malformed)."""
    try:  # raises for text without a certificate too ("no start line")
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=text)
    except (ssl.SSLError, ValueError):
        return "is not a PEM bundle of certificates"
    return None


def ca_bundle(path: str) -> SecretFile:
    """The CA bundle at ``path`` (``directory.ca_file``), checked as a PEM bundle before it is taken."""
    return SecretFile(path, "directory.ca_file", validate=ca_bundle_problem)
