"""LDIF for the throwaway slapd: the base entries and a large generated directory for the benchmark.

`generate_users(10_000)` gives the base entries, the service account, users `user00000` .. `user09999`
(mail `user{i:05d}@example.com`, manager = `user{(i - 1) // 10:05d}`, a 10-ary tree under `user00000`) and
8 groups `team-<department>` of 25 members each (the first 200 users, `user i` in group `i % 8`).
Deterministic: the same count gives the same text.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from service.demo.slapd import DEFAULT_SUFFIX, SERVICE_BIND_PASSWORD

__all__ = [
    "DEPARTMENTS",
    "GROUP_MEMBERS_MAX",
    "SERVICE_PASSWORD_HASH",
    "USER_PASSWORD_HASH",
    "base_entries",
    "generate_users",
    "group_cn",
    "ldif_entry",
    "user_dn",
    "user_mail",
]

# Made with `slappasswd -s demo-bind-password` / `slappasswd -s demo-user-password` (see slapd.py).
SERVICE_PASSWORD_HASH = "{SSHA}7yhlYMs6vX8PDbhmQfF8NLQ/J9HAVTkW"
USER_PASSWORD_HASH = "{SSHA}Jj33Q4K+3mAUIDPTG8H4Yvbe16fQi/z2"

DEPARTMENTS = ("Engineering", "Sales", "Marketing", "Finance", "Support", "Operations", "Legal", "Research")
GROUP_MEMBERS_MAX = 25
_FIRST = ("Ada", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Liam")
_LAST = ("Archer", "Baker", "Castillo", "Dubois", "Eze", "Fischer", "Gupta", "Haddad", "Ivanova", "Jensen")
# Title by depth in the 10-ary manager tree: 1 root, 10, 100, 1000, then everyone else.
_TITLES = ("Chief Executive Officer", "Vice President", "Director", "Manager")
_STAFF_TITLES = ("Engineer", "Analyst", "Specialist", "Consultant", "Coordinator")


def _safe(value: str) -> bool:
    """RFC 2849 SAFE-STRING: ASCII, no NUL/CR/LF, not starting with space, ':' or '<', no trailing space."""
    if not value:
        return True
    if value[0] in " :<" or value[-1] == " ":
        return False
    return all(0 < ord(c) < 128 and c not in "\r\n" for c in value)


def _line(attribute: str, value: str) -> str:
    if _safe(value):
        return f"{attribute}: {value}\n"
    encoded = base64.b64encode(value.encode("utf-8")).decode("ascii")
    # The comment keeps the file readable; LDIF readers (slapadd included) skip '#' lines.
    return f"# {attribute}: {value}\n{attribute}:: {encoded}\n"


def ldif_entry(dn: str, attributes: Iterable[tuple[str, str]]) -> str:
    """One LDIF entry (with its trailing blank line); non-ASCII values are base64-encoded."""
    return _line("dn", dn) + "".join(_line(a, v) for a, v in attributes) + "\n"


def _suffix_entry(suffix: str) -> str:
    first_rdn = suffix.split(",", 1)[0]
    attribute, _, value = first_rdn.partition("=")
    attribute = attribute.strip().lower()
    if attribute == "dc":
        attrs = [("objectClass", "top"), ("objectClass", "dcObject"), ("objectClass", "organization"),
                 ("dc", value), ("o", value)]  # fmt: skip
    elif attribute == "o":
        attrs = [("objectClass", "top"), ("objectClass", "organization"), ("o", value)]
    else:
        raise ValueError(f"suffix must start with dc= or o=, got {suffix!r}")
    return ldif_entry(suffix, attrs)


def base_entries(
    suffix: str = DEFAULT_SUFFIX,
    *,
    service_password: str = SERVICE_BIND_PASSWORD,
    service_password_hash: str = SERVICE_PASSWORD_HASH,
) -> str:
    """The suffix entry, ou=people, ou=groups, ou=services and the service account (cn=okta-hook).

    Each directory of the several-directory demo has a password of its own (``service_password``, its
    ``{SSHA}`` hash made once with slappasswd so that the text stays deterministic): a configuration
    that sends one directory's password to another is refused, as it would be in production."""
    parts = [_suffix_entry(suffix)]
    for ou in ("people", "groups", "services"):
        parts.append(ldif_entry(f"ou={ou},{suffix}", [("objectClass", "organizationalUnit"), ("ou", ou)]))
    parts.append(
        ldif_entry(
            f"cn=okta-hook,ou=services,{suffix}",
            [
                ("objectClass", "applicationProcess"),
                ("objectClass", "simpleSecurityObject"),
                ("cn", "okta-hook"),
                ("description", f"Service account of okta-ldap-hook (password: {service_password})"),
                ("userPassword", service_password_hash),
            ],
        )
    )
    return "".join(parts)


def user_dn(i: int, suffix: str = DEFAULT_SUFFIX) -> str:
    return f"uid=user{i:05d},ou=people,{suffix}"


def user_mail(i: int) -> str:
    return f"user{i:05d}@example.com"


def group_cn(g: int) -> str:
    return f"team-{DEPARTMENTS[g % len(DEPARTMENTS)].lower()}"


def _title(i: int) -> str:
    depth, first_of_level, width = 0, 0, 1
    while i >= first_of_level + width:
        first_of_level += width
        width *= 10
        depth += 1
    return _TITLES[depth] if depth < len(_TITLES) else _STAFF_TITLES[i % len(_STAFF_TITLES)]


def generate_users(count: int, suffix: str = DEFAULT_SUFFIX) -> str:
    """LDIF: base entries + service account + `count` users + up to 8 groups of <= 25 members."""
    if count < 0:
        raise ValueError("count must be >= 0")
    parts = [base_entries(suffix)]
    for i in range(count):
        given = _FIRST[i % len(_FIRST)]
        surname = _LAST[(i // len(_FIRST)) % len(_LAST)]
        attrs = [
            ("objectClass", "inetOrgPerson"),
            ("uid", f"user{i:05d}"),
            ("cn", f"{given} {surname}"),
            ("sn", surname),
            ("givenName", given),
            ("mail", user_mail(i)),
            ("departmentNumber", DEPARTMENTS[i % len(DEPARTMENTS)]),
            ("title", _title(i)),
            ("employeeNumber", str(100000 + i)),
        ]
        if i > 0:
            attrs.append(("manager", user_dn((i - 1) // 10, suffix)))
        attrs.append(("userPassword", USER_PASSWORD_HASH))
        parts.append(ldif_entry(user_dn(i, suffix), attrs))
    grouped = min(count, GROUP_MEMBERS_MAX * len(DEPARTMENTS))
    for g in range(min(grouped, len(DEPARTMENTS))):
        members = [("member", user_dn(i, suffix)) for i in range(g, grouped, len(DEPARTMENTS))]
        parts.append(
            ldif_entry(
                f"cn={group_cn(g)},ou=groups,{suffix}",
                [("objectClass", "groupOfNames"), ("cn", group_cn(g)), *members],
            )
        )
    return "".join(parts)
