"""``okta-ldap-hook demo``: the service on a throwaway slapd seeded with demo users, or (``--directory
ad``, ``make run DIRECTORY=ad``) on a Samba AD domain controller holding corp.example.com
(:mod:`service.demo.ad_data`), configured as the README's AD example (``data/ad-config.yaml``).

Everything runs in this process and its directory child, on loopback; Ctrl-C stops both and removes the
temporary directory.
"""

from __future__ import annotations

import importlib.resources
import os
import shlex
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from service.demo.slapd import SERVICE_BIND_PASSWORD
from service.ports import busy_message

if TYPE_CHECKING:
    from service.demo.samba import SambaDC

DEMO_SECRET = "demo-hook-secret"
BIND_PASSWORD_ENV = "LDAP_BIND_PASSWORD"


def ad_document(dc: SambaDC) -> dict[str, Any]:
    """service/demo/data/ad-config.yaml (the README's AD example) pointed at ``dc``: its LDAPS URL, its
    CA, and the bind password from ``$LDAP_BIND_PASSWORD`` instead of a file."""
    data = importlib.resources.files("service.demo") / "data"
    document: dict[str, Any] = yaml.safe_load((data / "ad-config.yaml").read_text(encoding="utf-8"))
    directory = document["directory"]
    directory.update(urls=[dc.ldaps_url], ca_file=str(dc.ca_file), bind_password_env=BIND_PASSWORD_ENV)
    del directory["bind_password_file"]
    return document


def run_demo(hook_port: int, ops_port: int, directory: str = "openldap") -> int:
    """The service on a throwaway directory: a slapd with the demo users (``openldap``), or a Samba AD
    domain controller with the README's AD example (``ad``)."""
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
        if directory == "ad":
            document, where = _on_samba(Path(workdir), stack)
        else:
            document, where = _on_slapd(Path(workdir), stack)
        document["server"].update(hook_port=hook_port, ops_port=ops_port)
        settings = parse_settings(document, origin="ad-config.yaml" if directory == "ad" else "demo-config.yaml")
        os.environ.setdefault("OKTA_HOOK_SECRET", DEMO_SECRET)
        os.environ.setdefault(BIND_PASSWORD_ENV, SERVICE_BIND_PASSWORD)
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
