"""A throwaway OpenLDAP server (slapd) for the demo (`make run`), the tests and the benchmark.

    with Slapd(tmp_path / "ldap", demo_ldif()) as ldap:
        ...  # ldap.url, ldap.ldaps_url, ldap.ca_file, SERVICE_BIND_DN / SERVICE_BIND_PASSWORD

Everything lives in `workdir`: a generated `slapd.conf` (no cn=config, /etc/ldap/slapd.d is never read),
copies of the schemas, a server certificate signed by a CA (`ca`, or one made in `workdir/ca`), the mdb
database and `slapd.log`. The LDIF is loaded offline with slapadd on the first start; slapd then runs in the
foreground as a child process listening on 127.0.0.1 only (ldap:// with StartTLS, and ldaps://).

memberOf on the members of the groupOfNames entries of the LDIF, two ways (`memberof=`):
- "overlay" (default): the memberof overlay. It only sees online adds, so on the first start the
  groupOfNames records of the LDIF are held back from slapadd and added with ldapadd once slapd is up
  (+ ~10 ms). memberOf values are the group DNs as written: cn=Équipe Paris,ou=groups,dc=example,dc=com.
- "dynlist": the dynlist overlay computes memberOf at search time, so groups are slapadd-ed too. But
  OpenLDAP 2.5 returns the *normalized* group DN: cn=équipe paris,ou=groups,dc=example,dc=com.
Both answer (memberOf=<group DN>) filters. Works as root and as a normal user.
"""

from __future__ import annotations

import atexit
import base64
import ctypes
import hashlib
import importlib.resources
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

__all__ = [
    "ADMIN_PASSWORD",
    "DEFAULT_SUFFIX",
    "DEMO_USER_PASSWORD",
    "SERVICE_BIND_DN",
    "SERVICE_BIND_PASSWORD",
    "CertificateAuthority",
    "Slapd",
    "SlapdError",
    "SlapdNotInstalled",
    "demo_ldif",
    "free_port",
    "make_ca",
]

DEFAULT_SUFFIX = "dc=example,dc=com"
SERVICE_BIND_DN = f"cn=okta-hook,ou=services,{DEFAULT_SUFFIX}"
SERVICE_BIND_PASSWORD = "demo-bind-password"
ADMIN_PASSWORD = "admin-password"
# userPassword of every person in demo.ldif and in directory_data.generate_users() (bind as the user works).
DEMO_USER_PASSWORD = "demo-user-password"

SCHEMAS = ("core", "cosine", "inetorgperson", "nis", "dyngroup")
START_TIMEOUT_SECONDS = 5.0
# SIGTERM takes ~5 ms in the foreground; SIGKILL is a fallback only (committed mdb data survives it anyway).
STOP_GRACE_SECONDS = 2.0

_INSTALL_HINT = "run `apt-get install -y slapd ldap-utils` (as root) or `make setup`"
_SCHEMA_DIRS = ("/etc/ldap/schema", "/etc/openldap/schema", "/usr/local/etc/openldap/schema")
_MODULE_DIRS = (
    "/usr/lib/ldap",
    "/usr/lib/openldap",
    "/usr/lib64/openldap",
    "/usr/libexec/openldap",
    "/usr/local/libexec/openldap",
)
# An anonymous simple bind (messageID 1, LDAPv3, empty name and password): the readiness probe.
_ANONYMOUS_BIND = bytes.fromhex("300c020101600702010304008000")


MemberOfMode = Literal["dynlist", "overlay"]
_GROUP_LINE = re.compile(r"^objectClass:[ \t]*groupOfNames[ \t]*$", re.IGNORECASE | re.MULTILINE)


def _split_groups(ldif: str) -> tuple[str, str]:
    """Split LDIF text into (records that are not groupOfNames, groupOfNames records)."""
    others: list[str] = []
    groups: list[str] = []
    for record in re.split(r"\n[ \t]*\n(?=[^ ])", ldif.replace("\r\n", "\n")):
        if not record.strip():
            continue
        unfolded = record.replace("\n ", "")
        is_group = _GROUP_LINE.search(unfolded)
        (groups if is_group else others).append(record.strip("\n") + "\n")
    return "\n".join(others), "\n".join(groups)


class SlapdNotInstalled(RuntimeError):
    """slapd (or its schema files) cannot be found on this machine."""

    def __init__(self, what: str = "slapd") -> None:
        super().__init__(f"OpenLDAP {what} not found: {_INSTALL_HINT}")


class SlapdError(RuntimeError):
    """slapd, slapadd or openssl failed; the message carries their output."""


@dataclass(frozen=True)
class CertificateAuthority:
    cert_file: Path  # PEM of the CA certificate
    key_file: Path


# --------------------------------------------------------------------------------------------- helpers


def _run(argv: list[str], what: str, *, cwd: Path | None = None) -> None:
    try:
        proc = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    except FileNotFoundError as exc:
        if Path(argv[0]).name == "openssl":
            raise SlapdError("openssl not found: run `apt-get install -y openssl` (as root)") from exc
        raise
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip()
        raise SlapdError(f"{what} failed (exit {proc.returncode}): {' '.join(argv)}\n{output}")


def _openssl_value(value: str) -> str:
    """Escape a value for an openssl config file (`#` starts a comment, `$` expands a variable)."""
    return re.sub(r'([\\$#"\'])', r"\\\1", value)


def _find_slapd() -> str:
    for candidate in ("/usr/sbin/slapd", "/usr/local/sbin/slapd", "/usr/local/libexec/slapd"):
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("slapd")
    if found is None:
        raise SlapdNotInstalled("slapd")
    return found


def _find_schema_dir() -> Path:
    for directory in _SCHEMA_DIRS:
        if all(Path(directory, f"{name}.schema").is_file() for name in SCHEMAS):
            return Path(directory)
    raise SlapdNotInstalled(f"schema files ({', '.join(s + '.schema' for s in SCHEMAS)})")


def _find_module_dir() -> Path | None:
    """Where back_mdb/dynlist modules live; None if slapd has them built in (not on Debian)."""
    for directory in _MODULE_DIRS:
        if any(Path(directory).glob("back_mdb.*")):
            return Path(directory)
    return None


def _ssha(password: str) -> str:
    """The {SSHA} hash slappasswd makes (salted SHA-1), for the rootpw line."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode("utf-8") + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode("ascii")


def _conf_quote(value: str | Path) -> str:
    text = str(value)
    if any(c in text for c in '"\\\n'):
        raise SlapdError(f"unsupported character in slapd.conf value: {text!r}")
    return f'"{text}"'


def _answers_bind(port: int, timeout: float = 0.5, host: str = "127.0.0.1") -> bool:
    """True when something on host:port answers an anonymous LDAP bind with success."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(_ANONYMOUS_BIND)
            reply = sock.recv(64)
    except OSError:
        return False
    # BindResponse (APPLICATION 1 = 0x61) whose resultCode (ENUMERATED 0x0a, length 1) is success (0).
    return reply[:1] == b"\x30" and b"\x61" in reply[:8] and b"\x0a\x01\x00" in reply


def _tls_problem(port: int, ca_file: Path, timeout: float = 0.5, host: str = "127.0.0.1") -> str | None:
    """None when host:port completes a TLS handshake with a certificate that `ca_file` validates."""
    context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            _close_tls(tls)
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _close_tls(tls: ssl.SSLSocket) -> None:
    """close_notify, so that slapd does not log a truncated connection. Samba answers it by closing the
    socket, which is no TLS problem: the handshake verified the certificate already."""
    try:
        tls.unwrap()
    except ssl.SSLEOFError:
        return


def _port_open(port: int, timeout: float = 0.2, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# ----------------------------------------------------------------------------------------- public API


def demo_ldif() -> str:
    """The demo directory (service/demo/data/demo.ldif), suffix dc=example,dc=com."""
    return (importlib.resources.files("service.demo") / "data" / "demo.ldif").read_text(encoding="utf-8")


_handed_out_ports: set[int] = set()
_ports_lock = threading.Lock()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (and not handed out before by this process).

    Picked at random below the kernel's ephemeral range when there is room (20000..ephemeral-1), so that
    outgoing client connections of other processes cannot grab it before the server binds it; otherwise
    the kernel picks one.
    """
    low = _ephemeral_low()
    rng = random.SystemRandom()
    with _ports_lock:
        for attempt in range(200):
            candidate = rng.randrange(20000, low) if low > 21000 and attempt < 150 else 0
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind(("127.0.0.1", candidate))
                except OSError:
                    continue
                port = int(sock.getsockname()[1])
            if port not in _handed_out_ports:
                _handed_out_ports.add(port)
                return port
    raise SlapdError("no free TCP port found on 127.0.0.1")


def make_ca(directory: Path, name: str = "okta-ldap-hook test CA") -> CertificateAuthority:
    """Create a fresh self-signed CA with the openssl CLI (EC P-256, 10 years).

    Files are `<slug of name>.crt` / `.key` in `directory` (created if needed), so two CAs with different
    names can share a directory. Every call makes a new key: a second CA is *not* trusted by the first.
    """
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "ca"
    cert_file, key_file, cnf = (directory / f"{slug}{ext}" for ext in (".crt", ".key", ".cnf"))
    cnf.write_text(
        "[req]\n"
        "distinguished_name = dn\n"
        "prompt = no\n"
        "x509_extensions = v3_ca\n"
        "[dn]\n"
        f"CN = {_openssl_value(name)}\n"
        "O = okta-ldap-hook tests\n"
        "[v3_ca]\n"
        "basicConstraints = critical, CA:TRUE\n"
        "keyUsage = critical, keyCertSign, cRLSign\n"
        "subjectKeyIdentifier = hash\n",
        encoding="utf-8",
    )
    _run(
        ["openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-sha256", "-days", "3650", "-config", str(cnf),
         "-keyout", str(key_file), "-out", str(cert_file)],
        "openssl (CA)",
    )  # fmt: skip
    key_file.chmod(0o600)
    return CertificateAuthority(cert_file=cert_file, key_file=key_file)


def _issue_server_certificate(
    ca: CertificateAuthority, directory: Path, ip: str = "127.0.0.1", dns: str = "localhost"
) -> tuple[Path, Path]:
    """A server certificate for `ip` and `dns` (in its subjectAltName) signed by `ca`; returns (cert, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "server.crt", directory / "server.key"
    csr, cnf = directory / "server.csr", directory / "server.cnf"
    cnf.write_text(
        "[req]\n"
        "distinguished_name = dn\n"
        "prompt = no\n"
        "[dn]\n"
        f"CN = {ip}\n"
        "O = okta-ldap-hook tests\n"
        "[v3_server]\n"
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = serverAuth\n"
        f"subjectAltName = IP:{ip}, DNS:{dns}\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid:always\n",
        encoding="utf-8",
    )
    _run(
        ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-config", str(cnf), "-keyout", str(key_file), "-out", str(csr)],
        "openssl (server key)",
    )  # fmt: skip
    _run(
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca.cert_file), "-CAkey", str(ca.key_file),
         "-set_serial", f"0x{os.urandom(12).hex()}", "-days", "825", "-sha256",
         "-extfile", str(cnf), "-extensions", "v3_server", "-out", str(cert_file)],
        "openssl (server certificate)",
    )  # fmt: skip
    key_file.chmod(0o600)
    return cert_file, key_file


# ----------------------------------------------------------------------- process-exit safety net

_running: set[Slapd] = set()
_running_lock = threading.Lock()


def _stop_all_at_exit() -> None:
    with _running_lock:
        servers = list(_running)
    for server in servers:
        server._stop_from_owner()


atexit.register(_stop_all_at_exit)

_PR_SET_PDEATHSIG = 1
_prctl: Callable[..., int] | None = None
if sys.platform.startswith("linux"):
    try:
        _prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        _prctl = None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


# ------------------------------------------------------------------------------------------ Slapd


class Slapd:
    """One throwaway slapd; see the module docstring. Not picklable, not shared across processes."""

    def __init__(
        self,
        workdir: Path,
        ldif: str,
        *,
        port: int = 0,
        ldaps_port: int = 0,
        suffix: str = DEFAULT_SUFFIX,
        ca: CertificateAuthority | None = None,
        memberof: MemberOfMode = "overlay",
        service_bind_password: str = SERVICE_BIND_PASSWORD,
    ) -> None:
        if memberof not in ("dynlist", "overlay"):
            raise ValueError(f"memberof must be 'dynlist' or 'overlay', not {memberof!r}")
        self.slapd_binary = _find_slapd()
        self._schema_dir = _find_schema_dir()
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ldif = ldif
        self.suffix = suffix
        self.memberof: MemberOfMode = memberof
        self.port = port or free_port()
        self.ldaps_port = ldaps_port or free_port()
        self.admin_dn = f"cn=admin,{suffix}"
        self.admin_password = ADMIN_PASSWORD
        self.service_bind_dn = f"cn=okta-hook,ou=services,{suffix}"
        # What the LDIF's service account was given (the LDIF holds its hash): tests and the demo bind with it.
        self.service_bind_password = service_bind_password
        self.ca = ca if ca is not None else make_ca(self.workdir / "ca")
        self.ca_file = self.ca.cert_file
        self.conf_file = self.workdir / "slapd.conf"
        self.log_file = self.workdir / "slapd.log"
        self.db_dir = self.workdir / "db"
        self.server_cert_file = self.workdir / "tls" / "server.crt"
        self._process: subprocess.Popen[bytes] | None = None
        self._owner_pid = os.getpid()
        self._loaded = False
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ properties

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @property
    def running(self) -> bool:
        process = self._process
        return process is not None and process.poll() is None

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Slapd {self.url} {self.ldaps_url} {self.suffix!r} {state}>"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Slapd:
        """First call: write config + certificate, slapadd the LDIF. Then run slapd; wait until it answers."""
        with self._lock:
            if self.running:
                return self
            self._process = None
            if self._loaded:
                self._launch()
                return self
            groups = self._prepare()
            self._launch()
            if groups:
                try:
                    self._add_online(groups)
                except BaseException:
                    self.stop()
                    raise
            self._loaded = True
        return self

    def stop(self) -> None:
        """SIGTERM (SIGKILL after STOP_GRACE_SECONDS); returns once the process is gone and ports closed."""
        with self._lock:
            process, self._process = self._process, None
            with _running_lock:
                _running.discard(self)
            if process is None:
                return
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=STOP_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and (_port_open(self.port) or _port_open(self.ldaps_port)):
                time.sleep(0.01)

    def restart(self) -> None:
        """Stop, then start on the same ports with the same database (nothing is reloaded)."""
        with self._lock:
            self.stop()
            self.start()

    def __enter__(self) -> Slapd:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _stop_from_owner(self) -> None:
        # atexit runs in forked children too (if they exit normally): only the starting process stops slapd.
        if os.getpid() == self._owner_pid:
            self.stop()

    # ------------------------------------------------------------------ internals

    def _prepare(self) -> str:
        """Write config, schemas and certificate; slapadd the LDIF. Returns the LDIF left to add online."""
        schema_dir = self.workdir / "schema"
        schema_dir.mkdir(exist_ok=True)
        for name in SCHEMAS:
            shutil.copyfile(self._schema_dir / f"{name}.schema", schema_dir / f"{name}.schema")
        cert_file, key_file = _issue_server_certificate(self.ca, self.workdir / "tls")
        self.conf_file.write_text(self._config(cert_file, key_file), encoding="utf-8")
        if self.db_dir.exists():
            shutil.rmtree(self.db_dir)
        self.db_dir.mkdir()
        (self.workdir / "run").mkdir(exist_ok=True)
        offline, online = self.ldif, ""
        if self.memberof == "overlay":  # the memberof overlay only sees groups added through slapd
            offline, online = _split_groups(self.ldif)
        ldif_file = self.workdir / "data.ldif"
        ldif_file.write_text(offline, encoding="utf-8")
        _run(
            [self.slapd_binary, "-T", "add", "-q", "-f", str(self.conf_file), "-b", self.suffix,
             "-l", str(ldif_file)],
            "slapadd",
        )  # fmt: skip
        return online

    def _add_online(self, ldif: str) -> None:
        ldapadd = shutil.which("ldapadd") or "/usr/bin/ldapadd"
        if not os.access(ldapadd, os.X_OK):
            raise SlapdNotInstalled("ldapadd (package ldap-utils)")
        ldif_file, password_file = self.workdir / "groups.ldif", self.workdir / "run" / "admin.pw"
        ldif_file.write_text(ldif, encoding="utf-8")
        password_file.write_text(self.admin_password, encoding="utf-8")
        password_file.chmod(0o600)
        _run(
            [ldapadd, "-x", "-H", self.url, "-D", self.admin_dn, "-y", str(password_file),
             "-f", str(ldif_file)],
            "ldapadd (groups)",
        )  # fmt: skip

    def _config(self, cert_file: Path, key_file: Path) -> str:
        q = _conf_quote
        module_dir = _find_module_dir()
        modules = (
            f"modulepath {q(module_dir)}\nmoduleload back_mdb\nmoduleload {self.memberof_module}\n"
            if module_dir
            else ""
        )
        includes = "".join(f"include {q(self.workdir / 'schema' / f'{n}.schema')}\n" for n in SCHEMAS)
        service = q(self.service_bind_dn)
        return f"""\
# Generated by service.demo.slapd for a throwaway test/demo server. Do not edit: rewritten on first start.
{includes}
{modules}
pidfile {q(self.workdir / "run" / "slapd.pid")}
argsfile {q(self.workdir / "run" / "slapd.args")}
loglevel none

TLSCACertificateFile {q(self.ca_file)}
TLSCertificateFile {q(cert_file)}
TLSCertificateKeyFile {q(key_file)}
TLSVerifyClient never

# Root DSE and schema: readable by everyone (clients such as ldap3 read them after binding).
access to dn.base="" by * read
access to dn.base="cn=Subschema" by * read

database mdb
maxsize 1073741824
dbnosync
suffix {q(self.suffix)}
rootdn {q(self.admin_dn)}
rootpw {_ssha(self.admin_password)}
directory {q(self.db_dir)}

index objectClass eq
index uid,mail,cn,employeeNumber,member,manager eq

# The service account looks users up one at a time but benchmarks go through 10,000 of them.
limits dn.exact={service} size=unlimited time=unlimited

# Passwords: only binds (anonymous auth) and the user; nobody else, the service account included.
access to attrs=userPassword
    by self write
    by anonymous auth
    by * none
access to *
    by dn.exact={service} read
    by self read
    by * none

{self._memberof_config()}"""

    @property
    def memberof_module(self) -> str:
        return "dynlist" if self.memberof == "dynlist" else "memberof"

    def _memberof_config(self) -> str:
        if self.memberof == "dynlist":
            return (
                "# memberOf on every groupOfNames member, computed at search time (slapadd-ed groups work).\n"
                "# OpenLDAP 2.5 returns these DNs normalized: cn=équipe paris,... (lower case).\n"
                "overlay dynlist\n"
                "dynlist-attrset groupOfURLs memberURL member+memberOf@groupOfNames\n"
            )
        return (
            "# memberOf stored on the members when a group is added/modified online (DNs as written).\n"
            "index memberOf eq\n"
            "overlay memberof\n"
            "memberof-group-oc groupOfNames\n"
            "memberof-member-ad member\n"
            "memberof-memberof-ad memberOf\n"
            "memberof-refint TRUE\n"
        )

    def _launch(self) -> None:
        argv = [
            self.slapd_binary,
            "-d", "32768",  # foreground; "none" level: startup errors only, no per-operation output
            "-f", str(self.conf_file),
            "-h", f"{self.url}/ {self.ldaps_url}/",
        ]  # fmt: skip
        with self.log_file.open("ab") as log:
            log_offset = log.tell()
            pdeathsig = _prctl is not None and threading.current_thread() is threading.main_thread()
            # PR_SET_PDEATHSIG fires when the *thread* that forked exits: only safe from the main thread.
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                preexec_fn=_die_with_parent if pdeathsig else None,
            )
        with _running_lock:
            _running.add(self)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        problem = "no answer to an anonymous bind"
        while True:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                with _running_lock:
                    _running.discard(self)
                raise SlapdError(
                    f"slapd exited with code {code} on start ({self.url}, {self.ldaps_url}):\n"
                    + self._log_since(log_offset)
                )
            if _answers_bind(self.port):
                tls_problem = _tls_problem(self.ldaps_port, self.ca_file)
                if tls_problem is None:
                    return
                problem = f"{self.ldaps_url}: {tls_problem}"
            if time.monotonic() > deadline:
                log_text = self._log_since(log_offset)
                self.stop()
                raise SlapdError(
                    f"slapd not ready within {START_TIMEOUT_SECONDS} s, last problem: {problem}\n{log_text}"
                )
            time.sleep(0.01)

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_file.open("rb") as log:
                log.seek(offset)
                text = log.read().decode("utf-8", "replace").strip()
        except OSError:
            return "(no slapd.log)"
        return text or "(slapd printed nothing)"
