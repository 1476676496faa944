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


#: Passwords whose bytes SASLprep (RFC 4013) changes or refuses, which ldap3 applies to a ``str``
#: password: name -> password. Each is stored for ``form.<name>`` (no lockout: it takes the wrong
#: variants) and ``lock.<name>`` (locked after MAX_FAILURES failed binds: it takes the right one).
EXACT_FORMS = {
    "nbsp": "correct\u00a0horse",  # SASLprep: a space
    "nfd": "cafe\u0301 au lait",  # NFKC: café
    "fullwidth": "\uff30assword",  # NFKC: Password
    "soft_hyphen": "pass\u00adword",  # SASLprep: dropped
    "rtl": "secret \u05e1\u05d5\u05d3",  # left-to-right and right-to-left text: refused
    "private_use": "pass\ue000word",  # refused
    "controls": "tab\there\x1b[0m\x7f",  # refused
    "nul": "before\x00after",  # refused; slapd compares every octet
}

#: People whose DN ldap3 or a careless client could rewrite (escaped comma and plus, trailing and
#: leading escaped spaces, a leading '#', NFD text): uid value -> mail. Their password is RIGHT.
AWKWARD_DNS = {
    "dupont, jean+x": "awkward.comma@example.com",
    "trailing ": "awkward.trailing@example.com",
    " leading": "awkward.leading@example.com",
    "#hash": "awkward.hash@example.com",
    "zoe\u0308 nfd": "awkward.nfd@example.com",
    "semi;colon=eq": "awkward.semicolon@example.com",
}


def ssha(password: str | bytes) -> str:
    salt = os.urandom(8)
    secret = password.encode("utf-8") if isinstance(password, str) else password
    digest = hashlib.sha1(secret + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode("ascii")


def rdn_value(value: str) -> str:
    """``value`` escaped for a DN (RFC 4514): what slapd returns for it, too."""
    escaped = "".join(f"\\{c}" if c in ',+"\\<>;=' else c for c in value)
    if escaped.startswith((" ", "#")):
        escaped = "\\" + escaped
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return escaped


def _ldif_line(name: str, value: str) -> str:
    """One LDIF line, base64 when the value is not plain ASCII or has spaces at its ends."""
    if value.isascii() and value.isprintable() and value == value.strip() and not value.startswith((":", "<")):
        return f"{name}: {value}"
    return f"{name}:: {base64.b64encode(value.encode('utf-8')).decode('ascii')}"


def _person(uid: str, mail: str, password: str | bytes | None, policy: bool = False) -> str:
    lines = [
        _ldif_line("dn", f"uid={rdn_value(uid)},{PEOPLE}"),
        "objectClass: inetOrgPerson",
        _ldif_line("uid", uid),
        _ldif_line("cn", uid),
        _ldif_line("sn", uid),
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
        *(_person(f"form.{name}", f"form.{name}@example.com", password) for name, password in EXACT_FORMS.items()),
        *(
            _person(f"lock.{name}", f"lock.{name}@example.com", password, policy=True)
            for name, password in EXACT_FORMS.items()
        ),
        *(_person(uid, mail, RIGHT) for uid, mail in AWKWARD_DNS.items()),
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
