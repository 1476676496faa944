"""A slapd for password checks: the demo directory plus people whose passwords the tests know, and
OpenLDAP's ppolicy overlay (Debian ships it as a module, /usr/lib/ldap/ppolicy.la) locking an account
after three failed binds.

The demo :class:`~service.demo.slapd.Slapd` is reused as it is: only the module list and the overlays
after the database are extended, through the two hooks its configuration is built from.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

from okta_spec import example

from service.demo.slapd import DEMO_USER_PASSWORD, Slapd, demo_ldif

PEOPLE = "ou=people,dc=example,dc=com"
POLICY_DN = "cn=lockout,ou=services,dc=example,dc=com"
#: Failed binds after which ppolicy locks an account.
MAX_FAILURES = 3

#: mail -> password, for people who have one.
RIGHT = "correct horse battery"
NON_ASCII = "pässwörd-ñ-密码-🔑"
METACHARACTERS = "*)(uid=*))(|(cn=\\00\\2a,=+<>#;\"'"
PASSWORDS = {
    "pia.pass@example.com": RIGHT,
    "nina.unicode@example.com": NON_ASCII,
    "mete.meta@example.com": METACHARACTERS,
    "lou.locked@example.com": RIGHT,
    # the demo's person with filter metacharacters in her mail
    "paren(test)*star@example.com": DEMO_USER_PASSWORD,
}


def ssha(password: str) -> str:
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode("utf-8") + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode("ascii")


def _person(uid: str, mail: str, password: str | None, policy: bool = False) -> str:
    lines = [
        f"dn: uid={uid},{PEOPLE}",
        "objectClass: inetOrgPerson",
        f"uid: {uid}",
        f"cn: {uid}",
        f"sn: {uid}",
        f"mail: {mail}",
    ]
    if password is not None:
        lines.append(f"userPassword: {ssha(password)}")
    if policy:  # only this person is locked out after failures: the others take many wrong guesses
        lines.append(f"pwdPolicySubentry: {POLICY_DN}")
    return "\n".join(lines) + "\n"


def password_ldif() -> str:
    people = [
        _person("pia.pass", "pia.pass@example.com", RIGHT),
        _person("nina.unicode", "nina.unicode@example.com", NON_ASCII),
        _person("mete.meta", "mete.meta@example.com", METACHARACTERS),
        _person("lou.locked", "lou.locked@example.com", RIGHT, policy=True),
        _person("cara.change", "cara.change@example.com", RIGHT),
        _person("noel.nopassword", "noel.nopassword@example.com", None),
        # two entries with one mail: whose password would it be?
        _person("twin.one", "twin@example.com", RIGHT),
        _person("twin.two", "twin@example.com", RIGHT),
    ]
    policy = (
        f"dn: {POLICY_DN}\n"
        "objectClass: organizationalRole\n"
        "objectClass: pwdPolicy\n"
        "cn: lockout\n"
        "pwdAttribute: userPassword\n"
        "pwdLockout: TRUE\n"
        f"pwdMaxFailure: {MAX_FAILURES}\n"
        "pwdLockoutDuration: 0\n"
        "pwdFailureCountInterval: 0\n"
    )
    return demo_ldif().rstrip("\n") + "\n\n" + "\n".join([*people, policy])


class PolicySlapd(Slapd):
    """The demo slapd with the ppolicy overlay (the policy applies to the entries naming it in
    ``pwdPolicySubentry``): ``ppolicy_use_lockout`` makes a bind on a locked
    account answer (still invalidCredentials, 49) with the policy control's ``accountLocked``."""

    @property
    def memberof_module(self) -> str:
        return super().memberof_module + "\nmoduleload ppolicy"

    def _memberof_config(self) -> str:
        return super()._memberof_config() + "\noverlay ppolicy\nppolicy_use_lockout\n"


def password_event(username: str, password: Any) -> dict[str, Any]:
    """Okta's example password import event (its OpenAPI spec), for ``username`` and ``password``."""
    event = example("PasswordImportPayloadExample")
    event["data"]["context"]["credential"] = {"username": username, "password": password}
    return event
