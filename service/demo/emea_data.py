"""The second account directory of the several-directory demo (`make run DIRECTORY=several`) and tests:
the EMEA region's OpenLDAP, suffix dc=emea,dc=example,dc=com, people with mails @emea.example.com.

Its people are not in the demo directory (demo.ldif), with one exception: :data:`SHARED_MAIL`, John Smith,
who has an entry in both (his EMEA copy says other things: department "Operations EMEA"). Routed by
domain (the demo directory holds example.com, this one emea.example.com) his example.com login is asked
of the demo directory only; asked of both (no ``domains``) he is found twice: ``ambiguous``, never a guess.

People carry ``employeeNumber``, the HR number (:mod:`service.demo.hr_data` joins on it): Ingrid Larsen,
Pierre Martin and Lukas Weiß are in HR, Sofia Rossi (4003) is not. Groups (groupOfNames under
ou=groups, memberOf by the memberof overlay): emea-staff (everybody), emea-sales.

People have the demo's user password (demo-user-password); the service account has a password of its
own: ``emea-bind-password``. Deterministic: the same text on every call.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.demo.directory_data import USER_PASSWORD_HASH, base_entries, ldif_entry

__all__ = [
    "EMEA_GROUPS_DN",
    "EMEA_PEOPLE",
    "EMEA_PEOPLE_DN",
    "EMEA_SERVICE_BIND_DN",
    "EMEA_SERVICE_BIND_PASSWORD",
    "EMEA_SUFFIX",
    "SHARED_MAIL",
    "EmeaPerson",
    "emea_ldif",
]

EMEA_SUFFIX = "dc=emea,dc=example,dc=com"
EMEA_PEOPLE_DN = f"ou=people,{EMEA_SUFFIX}"
EMEA_GROUPS_DN = f"ou=groups,{EMEA_SUFFIX}"
EMEA_SERVICE_BIND_DN = f"cn=okta-hook,ou=services,{EMEA_SUFFIX}"
EMEA_SERVICE_BIND_PASSWORD = "emea-bind-password"
# Made with `slappasswd -s emea-bind-password`.
EMEA_SERVICE_PASSWORD_HASH = "{SSHA}zIcE0AknbkwMnu8EU/D7EOd30LjLiLab"
#: In this directory and in demo.ldif.
SHARED_MAIL = "john.smith@example.com"


@dataclass(frozen=True)
class EmeaPerson:
    uid: str
    name: str  # "Given Surname"
    mail: str
    employee_number: str
    department: str
    title: str
    manager: str | None = None  # uid
    groups: tuple[str, ...] = ("emea-staff",)

    @property
    def dn(self) -> str:
        return emea_dn(self.uid)


def emea_dn(uid: str) -> str:
    return f"uid={uid},{EMEA_PEOPLE_DN}"


EMEA_PEOPLE = (
    EmeaPerson("ingrid.larsen", "Ingrid Larsen", "ingrid.larsen@emea.example.com", "4001", "Sales EMEA",
               "Sales Director EMEA", groups=("emea-staff", "emea-sales")),
    EmeaPerson("pierre.martin", "Pierre Martin", "pierre.martin@emea.example.com", "4002", "Sales EMEA",
               "Account Executive", "ingrid.larsen", ("emea-staff", "emea-sales")),
    # Not in HR: a join by 4003 finds nobody.
    EmeaPerson("sofia.rossi", "Sofia Rossi", "sofia.rossi@emea.example.com", "4003", "Marketing EMEA",
               "Marketing Manager", "ingrid.larsen"),
    EmeaPerson("lukas.weiss", "Lukas Weiß", "lukas.weiss@emea.example.com", "4004", "Vertrieb DACH",
               "Vertriebsingenieur", "ingrid.larsen", ("emea-staff", "emea-sales")),
    # Also in demo.ldif (as cn=Smith\, John): the person in both account directories.
    EmeaPerson("john.smith", "John Smith", SHARED_MAIL, "1010", "Operations EMEA", "Director of Operations EMEA"),
)  # fmt: skip


def _person_entry(person: EmeaPerson) -> str:
    given, _, surname = person.name.partition(" ")
    attributes = [
        ("objectClass", "inetOrgPerson"),
        ("uid", person.uid),
        ("cn", person.name),
        ("sn", surname or given),
        ("givenName", given),
        ("mail", person.mail),
        ("employeeNumber", person.employee_number),
        ("departmentNumber", person.department),
        ("title", person.title),
    ]
    if person.manager is not None:
        attributes.append(("manager", emea_dn(person.manager)))
    attributes.append(("userPassword", USER_PASSWORD_HASH))
    return ldif_entry(person.dn, attributes)


def _group_entry(name: str) -> str:
    members = [("member", person.dn) for person in EMEA_PEOPLE if name in person.groups]
    return ldif_entry(f"cn={name},{EMEA_GROUPS_DN}", [("objectClass", "groupOfNames"), ("cn", name), *members])


def emea_ldif() -> str:
    """LDIF of the emea directory (suffix :data:`EMEA_SUFFIX`): base entries, its service account, people
    and groups."""
    parts = [
        base_entries(
            EMEA_SUFFIX,
            service_password=EMEA_SERVICE_BIND_PASSWORD,
            service_password_hash=EMEA_SERVICE_PASSWORD_HASH,
        )
    ]
    parts.extend(_person_entry(person) for person in EMEA_PEOPLE)
    groups = sorted({group for person in EMEA_PEOPLE for group in person.groups})
    parts.extend(_group_entry(group) for group in groups)
    return "".join(parts)
