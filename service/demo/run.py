"""``okta-ldap-hook demo``: the service on a throwaway slapd seeded with demo users, or (``--directory
ad``, ``make run DIRECTORY=ad``) on a Samba AD domain controller holding corp.example.com
(:mod:`service.demo.ad_data`), configured as the README's AD example (``data/ad-config.yaml``), or
(``--directory several``) on three slapds: the demo directory and an EMEA one as account directories,
routed by domain, and an HR directory joined by employeeNumber (``data/several-config.yaml``).

Everything runs in this process and its directory children, on loopback; Ctrl-C stops them all and
removes the temporary directory.
"""

from __future__ import annotations

import importlib.resources
import os
import shlex
import sys
import tempfile
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from service.demo.slapd import SERVICE_BIND_PASSWORD
from service.ports import busy_message

if TYPE_CHECKING:
    from service.demo.samba import SambaDC
    from service.demo.slapd import Slapd

DEMO_SECRET = "demo-hook-secret"
BIND_PASSWORD_ENV = "LDAP_BIND_PASSWORD"
#: Where several-config.yaml reads each directory's bind password (each directory has its own).
SEVERAL_PASSWORD_ENVS = {
    "accounts": BIND_PASSWORD_ENV,
    "emea": "EMEA_BIND_PASSWORD",
    "hr": "HR_BIND_PASSWORD",
}
CONFIG_FILES = {"openldap": "demo-config.yaml", "ad": "ad-config.yaml", "several": "several-config.yaml"}


def ad_document(dc: SambaDC) -> dict[str, Any]:
    """service/demo/data/ad-config.yaml (the README's AD example) pointed at ``dc``: its LDAPS URL, its
    CA, and the bind password from ``$LDAP_BIND_PASSWORD`` instead of a file."""
    data = importlib.resources.files("service.demo") / "data"
    document: dict[str, Any] = yaml.safe_load((data / "ad-config.yaml").read_text(encoding="utf-8"))
    directory = document["directory"]
    directory.update(urls=[dc.ldaps_url], ca_file=str(dc.ca_file), bind_password_env=BIND_PASSWORD_ENV)
    del directory["bind_password_file"]
    return document


def several_document(servers: Mapping[str, Slapd]) -> dict[str, Any]:
    """service/demo/data/several-config.yaml pointed at ``servers`` (directory name -> its slapd: accounts,
    emea, hr): each directory's StartTLS URL and CA. The bind passwords stay in the environment variables
    the file names (:data:`SEVERAL_PASSWORD_ENVS`)."""
    data = importlib.resources.files("service.demo") / "data"
    document: dict[str, Any] = yaml.safe_load((data / "several-config.yaml").read_text(encoding="utf-8"))
    directories = document["directories"]
    if set(servers) != set(directories):
        raise ValueError(f"several-config.yaml names {sorted(directories)}, servers given for {sorted(servers)}")
    for name, server in servers.items():
        directories[name].update(urls=[server.url], start_tls=True, ca_file=str(server.ca_file))
    return document


def several_passwords(servers: Mapping[str, Slapd]) -> dict[str, str]:
    """The environment several_document's configuration reads its bind passwords from."""
    return {SEVERAL_PASSWORD_ENVS[name]: server.service_bind_password for name, server in servers.items()}


def run_demo(hook_port: int, ops_port: int, directory: str = "openldap") -> int:
    """The service on throwaway directories: a slapd with the demo users (``openldap``), a Samba AD
    domain controller with the README's AD example (``ad``), or three slapds (``several``)."""
    from service.server import serve
    from service.settings import load_secrets, parse_settings
    from service.telemetry import Telemetry, configure_logging

    data = importlib.resources.files("service.demo") / "data"
    # Before the directory starts and the banner prints: a taken port ends here, in one line.
    busy = busy_message("127.0.0.1", {"--hook-port": hook_port, "--ops-port": ops_port})
    if busy:
        print(f"okta-ldap-hook demo: {busy}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="okta-ldap-hook-demo-") as workdir, ExitStack() as stack:
        passwords = {BIND_PASSWORD_ENV: SERVICE_BIND_PASSWORD}
        if directory == "ad":
            document, where = _on_samba(Path(workdir), stack)
        elif directory == "several":
            document, where, passwords = _on_several_slapds(Path(workdir), stack)
        else:
            document, where = _on_slapd(Path(workdir), stack)
        document["server"].update(hook_port=hook_port, ops_port=ops_port)
        settings = parse_settings(document, origin=CONFIG_FILES[directory])
        os.environ.setdefault("OKTA_HOOK_SECRET", DEMO_SECRET)
        for name, value in passwords.items():
            os.environ.setdefault(name, value)
        secrets = load_secrets(settings)
        configure_logging(settings.logging.level, settings.logging.format, settings.auth.header)
        event = Path(str(data / "registration-event.json"))
        print(_banner(where, hook_port, ops_port, event), flush=True)
        serve(settings, secrets, Telemetry())
    return 0


def _on_slapd(workdir: Path, stack: ExitStack) -> tuple[dict[str, Any], str]:
    from service.demo.slapd import Slapd, demo_ldif

    data = importlib.resources.files("service.demo") / "data"
    document: dict[str, Any] = yaml.safe_load((data / "demo-config.yaml").read_text(encoding="utf-8"))
    slapd = stack.enter_context(Slapd(workdir / "ldap", demo_ldif()))
    document["directory"]["urls"] = [slapd.url]
    # Password import sends passwords to the directory, so it needs TLS: the demo slapd's StartTLS,
    # with the CA it made. The section is added here because demo-config.yaml is also the README's
    # example, for any directory URL (see its commented-out password_import section).
    document["directory"].update(start_tls=True, ca_file=str(slapd.ca_file))
    document["hooks"]["password_import"] = {"subject": "login", "deadline_seconds": 2.5}
    return document, f"{slapd.url}  (users under ou=people,dc=example,dc=com)"


def _on_several_slapds(workdir: Path, stack: ExitStack) -> tuple[dict[str, Any], str, dict[str, str]]:
    from service.demo.emea_data import EMEA_SERVICE_BIND_PASSWORD, EMEA_SUFFIX, emea_ldif
    from service.demo.hr_data import HR_SERVICE_BIND_PASSWORD, HR_SUFFIX, hr_ldif
    from service.demo.slapd import Slapd, demo_ldif

    servers = {
        "accounts": stack.enter_context(Slapd(workdir / "accounts", demo_ldif())),
        "emea": stack.enter_context(
            Slapd(workdir / "emea", emea_ldif(), suffix=EMEA_SUFFIX, service_bind_password=EMEA_SERVICE_BIND_PASSWORD)
        ),
        "hr": stack.enter_context(
            Slapd(workdir / "hr", hr_ldif(), suffix=HR_SUFFIX, service_bind_password=HR_SERVICE_BIND_PASSWORD)
        ),
    }
    where = (
        f"{servers['accounts'].url}  (accounts: users under ou=people,dc=example,dc=com)\n"
        f"                   {servers['emea'].url}  (emea: users @emea.example.com, ou=people,{EMEA_SUFFIX})\n"
        f"                   {servers['hr'].url}  (hr: joined by employeeNumber, ou=people,{HR_SUFFIX})\n"
        "                   configuration: service/demo/data/several-config.yaml"
    )
    return several_document(servers), where, several_passwords(servers)


def _on_samba(workdir: Path, stack: ExitStack) -> tuple[dict[str, Any], str]:
    from service.demo import ad_data
    from service.demo.samba import SambaDC

    print("Starting a Samba AD domain controller (the first time on this machine, the domain is provisioned:"
          " about 15 s)...", file=sys.stderr, flush=True)  # fmt: skip
    dc = stack.enter_context(SambaDC(workdir / "dc"))
    where = (
        f"{dc.ldaps_url}  (Samba AD DC, domain {ad_data.REALM.lower()}, users under {ad_data.STAFF},\n"
        f"                   configuration: service/demo/data/ad-config.yaml, the README's AD example)"
    )
    return ad_document(dc), where


def _banner(where: str, hook_port: int, ops_port: int, event: Path) -> str:
    curl = (
        f"curl -s -X POST http://127.0.0.1:{hook_port}/hooks/registration "
        f"-H 'Authorization: {DEMO_SECRET}' -H 'Content-Type: application/json' "
        f"--data @{shlex.quote(str(event))}"
    )
    try_command = "make try" if hook_port == 8080 else f"make try TRY_URL=http://127.0.0.1:{hook_port}"
    return f"""
okta-ldap-hook demo
  demo directory : {where}
  hook endpoints : http://127.0.0.1:{hook_port}/hooks/{{registration,token,saml,user-import,password-import}}
  ops endpoints  : http://127.0.0.1:{ops_port}/{{livez,readyz,metrics}}

Send Okta's sample registration event (rosario.jones@example.com) and see the enriched answer:

  {curl}

Or send Okta's example of every hook type (registration, token, SAML, user import, password import)
and see each answer:

  {try_command}      (installed: okta-ldap-hook try --url http://127.0.0.1:{hook_port})

Ctrl-C stops the service and the directory.
"""
