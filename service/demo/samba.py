"""A throwaway Active Directory domain controller (Samba 4 AD DC) for the AD demo (`make run
DIRECTORY=ad`), the tests and the benchmark.

    with SambaDC(tmp_path / "dc") as dc:
        ...  # dc.url, dc.ldaps_url, dc.gc_url, dc.gcs_url, dc.ca_file; ad_data.SERVICE_DN / SERVICE_UPN

Provisioning a domain takes about 5 s and loading the seed a few more, so it is done once per machine and
seed: :func:`provisioned` keeps a provisioned and seeded copy under the temporary directory (built under
a file lock, so parallel test workers build it once) and every :class:`SambaDC` starts from a copy of it
(`cp -a`, about 0.1 s). /etc/samba and /var/lib/samba are never read or written: provisioning gets an
empty configuration file and a target directory, and every path Samba uses (pid, sockets, logs, state)
is inside the copy.

Samba's LDAP ports are fixed (389, 636, and the global catalog's 3268, 3269): each DC listens on an
address of its own, picked at random in 127.0.0.0/8 (a whole /8 answers on Linux's loopback) with all
four ports free. Its TLS certificate is issued for that address by a CA of the fixture's own (Samba's
self-made certificate has no subjectAltName, so no client could verify it by IP). Simple binds work over
plain LDAP (``ldap server require strong auth = no``), as they do on a DC configured for legacy clients.
Root only: the ports are below 1024.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

from service.demo import ad_data
from service.demo.slapd import (
    CertificateAuthority,
    _answers_bind,
    _die_with_parent,
    _issue_server_certificate,
    _port_open,
    _prctl,
    _tls_problem,
    make_ca,
)

__all__ = ["SambaDC", "SambaError", "SambaNotInstalled", "provisioned"]

PORTS = (389, 636, 3268, 3269)
START_TIMEOUT_SECONDS = 10.0
STOP_GRACE_SECONDS = 5.0
#: A provisioned copy older than this is rebuilt (Lou's lock and everyone's passwords last far longer).
TEMPLATE_MAX_AGE_SECONDS = 30 * 24 * 3600
#: Bump when the provisioning steps change: the cache key of the provisioned copies.
_RECIPE = "2"
_INSTALL_HINT = (
    "run `apt-get install -y --no-install-recommends samba samba-ad-dc samba-ad-provision samba-dsdb-modules "
    "samba-vfs-modules winbind krb5-user ldb-tools ldap-utils` (as root) or `make setup`"
)
#: FILETIME (100-ns intervals since 1601) of the Unix epoch.
_EPOCH_FILETIME = 116_444_736_000_000_000


class SambaNotInstalled(RuntimeError):
    """samba, samba-tool or ldbmodify cannot be found, or this process is not root."""

    def __init__(self, what: str) -> None:
        super().__init__(f"Samba AD DC: {what}: {_INSTALL_HINT}")


class SambaError(RuntimeError):
    """Provisioning, loading or starting Samba failed; the message carries its output."""


def _tool(name: str) -> str:
    for directory in ("/usr/sbin", "/usr/bin"):
        if os.access(f"{directory}/{name}", os.X_OK):
            return f"{directory}/{name}"
    found = shutil.which(name)
    if found is None:
        raise SambaNotInstalled(f"{name} not found")
    return found


def _run(argv: list[str], what: str) -> str:
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
    output = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        raise SambaError(f"{what} failed (exit {proc.returncode}): {' '.join(argv)}\n{output[-4000:]}")
    return output


def _samba_version() -> str:
    return _run([_tool("samba"), "--version"], "samba --version")


def filetime(seconds: float) -> int:
    """A Unix time as AD's FILETIME."""
    return _EPOCH_FILETIME + int(seconds * 10_000_000)


# ------------------------------------------------------------------------------ provisioned copies


def _cache_root() -> Path:
    return Path(tempfile.gettempdir()) / "okta-ldap-hook-samba"


def provisioned(seed: str | None = None) -> Path:
    """A provisioned domain loaded with ``seed`` (:func:`ad_data.ad_ldif` by default), built once per
    machine under a file lock and kept in the temporary directory: the folder to copy (``etc/smb.conf``,
    ``private/``...). Its ``smb.conf`` names the folder it was built in, which :class:`SambaDC` rewrites."""
    seed = ad_data.ad_ldif() if seed is None else seed
    key = hashlib.sha256("\0".join([_RECIPE, _samba_version(), seed, ad_data.after_load()]).encode()).hexdigest()
    root = _cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / key[:16]
    with (root / f"{key[:16]}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second worker waits here for the first one's build
        marker = final / "complete"
        if marker.exists() and time.time() - marker.stat().st_mtime < TEMPLATE_MAX_AGE_SECONDS:
            return final / "dc"
        shutil.rmtree(final, ignore_errors=True)
        for stale in root.glob(f"{key[:16]}.building-*"):  # a build whose process died holding the lock
            shutil.rmtree(stale, ignore_errors=True)
        building = root / f"{key[:16]}.building-{os.getpid()}"
        try:
            _build(building / "dc", seed)
            building.rename(final)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        marker.write_text(key)
        return final / "dc"


def _build(target: Path, seed: str) -> None:
    """Provision the domain into ``target`` (its own empty configuration: /etc/samba is never read),
    load ``seed`` through Samba's modules, then write what they refuse straight into the partition."""
    target.mkdir(parents=True)
    (target / "run").mkdir()
    empty = target.parent / "empty.conf"
    empty.write_text("")
    options = {
        "netbios name": "DC1",
        "interfaces": "127.0.0.2/8",  # rewritten for each copy
        "bind interfaces only": "yes",
        "server services": "ldap",
        "pid directory": f"{target}/run",
        "ncalrpc dir": f"{target}/run/ncalrpc",
        "winbindd socket directory": f"{target}/run/winbindd",
        "ntp signd socket directory": f"{target}/run/ntp_signd",
        "log file": f"{target}/log.%m",
    }
    _run(
        [_tool("samba-tool"), "domain", "provision", "-s", str(empty), f"--targetdir={target}",
         f"--realm={ad_data.REALM}", f"--domain={ad_data.NETBIOS_DOMAIN}", f"--adminpass={ad_data.ADMIN_PASSWORD}",
         "--use-rfc2307", "--dns-backend=NONE", "--server-role=dc", "--host-ip=127.0.0.2",
         *(f"--option={name}={value}" for name, value in options.items())],
        "samba-tool domain provision",
    )  # fmt: skip
    seed_file = target.parent / "seed.ldif"
    seed_file.write_text(seed, encoding="utf-8")
    sam = target / "private" / "sam.ldb"
    _run([_tool("ldbmodify"), "--nosync", "-H", str(sam), str(seed_file)], "loading the seed")
    # The domain partition's own database, without the modules: pwdLastSet in the past, lockoutTime.
    partition = target / "private" / "sam.ldb.d" / f"{ad_data.BASE_DN.upper()}.ldb"
    raw_file = target.parent / "after-load.ldif"
    raw_file.write_text(ad_data.after_load().replace("{now}", str(filetime(time.time()))), encoding="utf-8")
    _run([_tool("ldbmodify"), "--nosync", "-H", str(partition), str(raw_file)], "writing under the modules")


# --------------------------------------------------------------------------------- addresses


_taken: set[str] = set()
_taken_lock = threading.Lock()


def _ports_free(address: str) -> bool:
    for port in PORTS:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((address, port))
            except OSError:
                return False
    return True


def free_address() -> str:
    """A loopback address (127.x.y.z, away from 127.0.0.1) on which Samba's four ports are free now and
    that this process has not handed out before."""
    rng = random.SystemRandom()
    with _taken_lock:
        for _ in range(100):
            address = f"127.{rng.randrange(16, 250)}.{rng.randrange(0, 256)}.{rng.randrange(2, 255)}"
            if address not in _taken and _ports_free(address):
                _taken.add(address)
                return address
    raise SambaError("no loopback address with ports 389, 636, 3268 and 3269 free")


# ----------------------------------------------------------------------------------------- SambaDC


class SambaDC:
    """One throwaway DC started from a copy of :func:`provisioned`; see the module docstring."""

    def __init__(
        self,
        workdir: Path,
        *,
        seed: str | None = None,
        address: str | None = None,
        ca: CertificateAuthority | None = None,
    ) -> None:
        if os.geteuid() != 0:
            raise SambaNotInstalled("must run as root (its LDAP ports are below 1024)")
        self.samba_binary = _tool("samba")
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.seed = seed
        self.address = address or free_address()
        self.ca = ca if ca is not None else make_ca(self.workdir / "ca", "okta-ldap-hook AD test CA")
        self.ca_file = self.ca.cert_file
        self.dc_dir = self.workdir / "dc"
        self.conf_file = self.dc_dir / "etc" / "smb.conf"
        self.log_file = self.workdir / "samba.log"
        self.base_dn = ad_data.BASE_DN
        self.service_bind_dn = ad_data.SERVICE_DN
        self.service_upn = ad_data.SERVICE_UPN
        self.service_bind_password = ad_data.SERVICE_PASSWORD
        self.admin_upn = f"Administrator@{ad_data.REALM.lower()}"
        self.admin_password = ad_data.ADMIN_PASSWORD
        self._process: subprocess.Popen[bytes] | None = None
        self._owner_pid = os.getpid()
        self._lock = threading.RLock()
        #: How long the last start took, from the provisioned copy to an answering DC (copy, certificate,
        #: configuration, Samba's start).
        self.start_seconds: float | None = None

    # ------------------------------------------------------------------ addresses

    @property
    def url(self) -> str:
        return f"ldap://{self.address}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://{self.address}"

    @property
    def gc_url(self) -> str:
        """The global catalog, plain LDAP (StartTLS works on it too)."""
        return f"ldap://{self.address}:3268"

    @property
    def gcs_url(self) -> str:
        """The global catalog over TLS."""
        return f"ldaps://{self.address}:3269"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process is not None else None

    def __repr__(self) -> str:
        return f"<SambaDC {self.address} {'running' if self.running else 'stopped'}>"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> SambaDC:
        """First call: copy the provisioned domain, issue the certificate, write the configuration. Then
        start Samba and wait until it answers a bind on 389 and a verified TLS handshake on 636."""
        with self._lock:
            if self.running:
                return self
            template = None if self.conf_file.exists() else provisioned(self.seed)
            started = time.monotonic()  # from here: what every start costs (the copy, once built)
            if template is not None:
                self._prepare(template)
            self._launch()
            self.start_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        """SIGTERM (SIGKILL after STOP_GRACE_SECONDS); returns once the process is gone and ports closed."""
        with self._lock:
            process, self._process = self._process, None
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
            while time.monotonic() < deadline and any(_port_open(port, host=self.address) for port in (389, 636)):
                time.sleep(0.01)

    def restart(self) -> None:
        with self._lock:
            self.stop()
            self.start()

    def __enter__(self) -> SambaDC:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if os.getpid() == self._owner_pid:
                self.stop()

    # ------------------------------------------------------------------ queries for the tests

    def ldbsearch(self, expression: str, *attributes: str) -> dict[str, str]:
        """The first entry ``expression`` matches, read offline by Samba's own tools from this DC's
        database (objectGUID and objectSid rendered as Samba renders them): attribute -> value."""
        output = _run(
            [_tool("ldbsearch"), "-H", str(self.dc_dir / "private" / "sam.ldb"), expression, *attributes],
            "ldbsearch",
        )
        found: dict[str, str] = {}
        for line in output.splitlines():
            name, sep, value = line.partition(": ")
            if sep and not line.startswith(("#", " ")) and name not in found:
                found[name] = value
        return found

    # ------------------------------------------------------------------ internals

    def _prepare(self, template: Path) -> None:
        if self.dc_dir.exists():
            shutil.rmtree(self.dc_dir)
        _run(["cp", "-a", "--reflink=auto", str(template), str(self.dc_dir)], "copying the provisioned domain")
        cert_file, key_file = _issue_server_certificate(
            self.ca, self.workdir / "tls", ip=self.address, dns=f"dc1.{ad_data.REALM.lower()}"
        )
        text = self.conf_file.read_text(encoding="utf-8")
        built_in = re.search(r"(?m)^\s*private dir\s*=\s*(.*)/private\s*$", text)
        if built_in is None:
            raise SambaError(f"{template}/etc/smb.conf names no private dir")
        text = text.replace(built_in.group(1), str(self.dc_dir))
        text = re.sub(r"(?m)^(\s*interfaces\s*=).*$", rf"\1 {self.address}/8", text)
        extra = (
            "\tldap server require strong auth = no\n"
            "\ttls enabled = yes\n"
            f"\ttls certfile = {cert_file}\n"
            f"\ttls keyfile = {key_file}\n"
            f"\ttls cafile = {self.ca_file}\n"
            "\tldb:nosync = true\n"
        )
        self.conf_file.write_text(text.replace("[global]\n", "[global]\n" + extra, 1), encoding="utf-8")

    def _launch(self) -> None:
        if not _ports_free(self.address):
            raise SambaError(f"{self.address}: one of the ports {PORTS} is taken")
        argv = [self.samba_binary, "-i", "-M", "single", "-s", str(self.conf_file), "-d", "1"]
        with self.log_file.open("ab") as log:
            offset = log.tell()
            pdeathsig = _prctl is not None and threading.current_thread() is threading.main_thread()
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dc_dir,
                preexec_fn=_die_with_parent if pdeathsig else None,
                env={**os.environ, "KRB5_CONFIG": str(self.dc_dir / "private" / "krb5.conf")},
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        problem = "no answer to an anonymous bind"
        while True:
            if self._process.poll() is not None:
                code, self._process = self._process.returncode, None
                raise SambaError(f"samba exited with code {code} on start ({self.address}):\n{self._log_since(offset)}")
            if _answers_bind(389, host=self.address):
                problem = _tls_problem(636, self.ca_file, host=self.address) or ""
                if not problem:
                    return
            if time.monotonic() > deadline:
                log_text = self._log_since(offset)
                self.stop()
                raise SambaError(f"samba not ready within {START_TIMEOUT_SECONDS} s ({problem}):\n{log_text}")
            time.sleep(0.02)

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_file.open("rb") as log:
                log.seek(offset)
                return log.read().decode("utf-8", "replace").strip()[-4000:] or "(samba printed nothing)"
        except OSError:
            return "(no samba.log)"
