"""The HR directory of the several-directory demo (`make run DIRECTORY=several`) and tests: an OpenLDAP
suffix dc=hr,dc=example,dc=com that never decides who a person is, only adds to it. The service finds the
person in an account directory (the demo directory, the emea directory, or the Samba AD domain of
:mod:`service.demo.ad_data`), reads the person's HR number there (``employeeNumber`` in OpenLDAP,
``employeeID`` in AD) and looks that number up here (``join.attribute``; HR's ``match_attribute`` is
``employeeNumber``).

Every person with a number in demo.ldif, in the emea directory and in the AD domain has an HR record,
but for :data:`ABSENT_NUMBERS`. One HR record per human, whichever account directory holds them: the
demo directory's ``employeeNumber`` and the AD domain's ``employeeID`` of one person are the same
number. Each record's department and title differ from every account directory's values for that
person, so a test tells at a glance which directory a value came from.

    departmentNumber   the HR department            ("Platform Engineering"; demo.ldif says "Engineering")
    title              the HR job title             ("Staff Software Engineer")
    businessCategory   the cost centre              ("CC-1100")
    ou                 the division                 ("Technology")
    employeeType       Employee or Contractor
    manager            a DN inside HR, whose entry has the manager's mail (``resolve: mail``)

Cases (constants below, which the tests check against the running server):
- :data:`JOINED`: numbers found once, with their values;
- :data:`DUPLICATE_NUMBER` 1003: two HR records (Alice Wong, and Alan Wu whose number was mistyped):
  ambiguous in HR, never a guess;
- :data:`ABSENT_NUMBERS`: people of an account directory with a number HR does not have (the join finds
  nobody: rules reading HR get their defaults);
- HR-only people (Maria Garcia, a manager): in no account directory.
People of the account directories without any number (plain.user in demo.ldif, busy and the bind-state
people in AD) have no join value: HR is not asked for them.

HR people have no ``userPassword``: nobody binds as them (password import verifies in the directory that
holds the person, never here). The service account has a password of its own: ``hr-bind-password``.
Deterministic: the same text on every call.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.demo.directory_data import base_entries, ldif_entry

__all__ = [
    "ABSENT_NUMBERS",
    "DUPLICATE_NUMBER",
    "HR_PEOPLE",
    "HR_PEOPLE_DN",
    "HR_SERVICE_BIND_DN",
    "HR_SERVICE_BIND_PASSWORD",
    "HR_SUFFIX",
    "JOINED",
    "HrRecord",
    "hr_ldif",
]

HR_SUFFIX = "dc=hr,dc=example,dc=com"
HR_PEOPLE_DN = f"ou=people,{HR_SUFFIX}"
HR_SERVICE_BIND_DN = f"cn=okta-hook,ou=services,{HR_SUFFIX}"
HR_SERVICE_BIND_PASSWORD = "hr-bind-password"
# Made with `slappasswd -s hr-bind-password`.
HR_SERVICE_PASSWORD_HASH = "{SSHA}u1TT2YSEWsWUNb1vDcKz2o+3oQAGvq6K"


@dataclass(frozen=True)
class HrRecord:
    uid: str
    name: str  # "Given Surname": cn, and givenName / sn split at the first space
    mail: str
    employee_number: str
    department: str
    title: str
    cost_centre: str
    division: str
    manager: str | None = None  # uid of the manager's HR record
    employee_type: str = "Employee"

    @property
    def dn(self) -> str:
        return hr_dn(self.uid)


def hr_dn(uid: str) -> str:
    return f"uid={uid},{HR_PEOPLE_DN}"


HR_PEOPLE = (
    # People of the demo directory (demo.ldif: employeeNumber) and of the AD domain (ad_data.py: employeeID).
    HrRecord("carol.chen", "Carol Chen", "carol.chen@example.com", "1001", "Office of the CTO",
             "Chief Technology Officer", "CC-1000", "Technology"),
    HrRecord("rosario.jones", "Rosario Jones", "rosario.jones@example.com", "1002", "Platform Engineering",
             "Staff Software Engineer", "CC-1100", "Technology", "carol.chen"),
    HrRecord("alice.wong", "Alice Wong", "alice.wong@example.com", "1003", "Platform Engineering",
             "Software Engineer II", "CC-1100", "Technology", "carol.chen"),
    # The same number typed for somebody else: a join by 1003 finds two records (ambiguous).
    HrRecord("alan.wu", "Alan Wu", "alan.wu@example.com", "1003", "Facilities", "Facilities Coordinator",
             "CC-5100", "Corporate Services", "maria.garcia", "Contractor"),
    HrRecord("paren.test", "Paren Test", "paren(test)*star@example.com", "1004", "Quality Engineering",
             "Test Automation Engineer", "CC-1200", "Technology", "carol.chen"),
    HrRecord("john.smith", "John Smith", "john.smith@example.com", "1010", "IT Operations",
             "Head of IT Operations", "CC-2000", "Operations", "carol.chen"),
    HrRecord("administrator1", "Add-Min O'Cloudy Tud", "administrator1@clouditude.net", "1011",
             "Identity & Access", "Identity Engineer", "CC-2100", "Operations", "john.smith"),
    HrRecord("sally.admin", "Sally Admin", "sally.admin@example.net", "1012", "Identity & Access",
             "Senior Directory Administrator", "CC-2100", "Operations", "john.smith"),
    HrRecord("user", "Example User", "user@example.com", "1020", "Inside Sales", "Senior Account Executive",
             "CC-3100", "Commercial", "maria.garcia"),
    HrRecord("jose.muller", "José Müller", "jose.muller@example.com", "1030", "Forschung Zürich",
             "Forschungsleiter", "CC-1500", "Technology", "carol.chen"),
    HrRecord("zoe.angstrom", "Zoë Ångström", "zoe.angstrom@example.com", "1031", "Forschung Zürich",
             "Ingénieure principale", "CC-1500", "Technology", "jose.muller"),
    # The demo directory's two entries with one mail (each has its own number) and the one whose manager
    # DN is dangling there (HR knows his manager).
    HrRecord("shared.mailbox.a", "Shared Mailbox A", "shared.mailbox@example.com", "1040", "Customer Support",
             "Support Desk Lead", "CC-6000", "Customer Success", "john.smith"),
    HrRecord("shared.mailbox.b", "Shared Mailbox B", "shared.mailbox@example.com", "1041", "Customer Support",
             "Support Desk Agent", "CC-6000", "Customer Success", "john.smith"),
    HrRecord("orphan.report", "Olive Orphan", "orphan.report@example.com", "1042", "Customer Support",
             "Support Engineer II", "CC-6000", "Customer Success", "john.smith"),
    # Only in the AD domain (ada@corp.example.com).
    HrRecord("ada.lovelace", "Ada Lovelace", "ada.lovelace@example.com", "2001", "Payroll", "Head of Payroll",
             "CC-4200", "Finance", "maria.garcia"),
    # People of the emea directory (emea_data.py: employeeNumber).
    HrRecord("ingrid.larsen", "Ingrid Larsen", "ingrid.larsen@emea.example.com", "4001", "EMEA Commercial",
             "Regional Vice President EMEA", "CC-3200", "Commercial", "maria.garcia"),
    HrRecord("pierre.martin", "Pierre Martin", "pierre.martin@emea.example.com", "4002", "EMEA Commercial",
             "Enterprise Account Executive", "CC-3200", "Commercial", "ingrid.larsen"),
    HrRecord("lukas.weiss", "Lukas Weiß", "lukas.weiss@emea.example.com", "4004", "EMEA Commercial",
             "Solutions Engineer", "CC-3210", "Commercial", "ingrid.larsen"),
    # Only in HR: a manager of people of the account directories.
    HrRecord("maria.garcia", "Maria Garcia", "maria.garcia@example.com", "1050", "Commercial",
             "Chief Revenue Officer", "CC-3000", "Commercial"),
)  # fmt: skip

DUPLICATE_NUMBER = "1003"
#: Numbers an account directory holds and HR does not: mixed.case (demo.ldif), jean.dupont (AD), sofia.rossi
#: (emea).
ABSENT_NUMBERS = ("1021", "3001", "4003")
#: Number -> the one HR record it finds.
JOINED = {record.employee_number: record for record in HR_PEOPLE if record.employee_number != DUPLICATE_NUMBER}


def _record_entry(record: HrRecord) -> str:
    given, _, surname = record.name.partition(" ")
    attributes = [
        ("objectClass", "inetOrgPerson"),
        ("uid", record.uid),
        ("cn", record.name),
        ("sn", surname or given),
        ("givenName", given),
        ("mail", record.mail),
        ("employeeNumber", record.employee_number),
        ("employeeType", record.employee_type),
        ("departmentNumber", record.department),
        ("title", record.title),
        ("businessCategory", record.cost_centre),
        ("ou", record.division),
    ]
    if record.manager is not None:
        attributes.append(("manager", hr_dn(record.manager)))
    return ldif_entry(record.dn, attributes)


def hr_ldif() -> str:
    """LDIF of the HR directory (suffix :data:`HR_SUFFIX`): base entries, its service account, the records."""
    parts = [
        base_entries(
            HR_SUFFIX,
            service_password=HR_SERVICE_BIND_PASSWORD,
            service_password_hash=HR_SERVICE_PASSWORD_HASH,
        )
    ]
    parts.extend(_record_entry(record) for record in HR_PEOPLE)
    return "".join(parts)
