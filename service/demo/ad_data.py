"""The Active Directory domain of the AD demo (`make run DIRECTORY=ad`), the tests and the benchmark:
corp.example.com (NetBIOS CORP), as LDIF change records that :mod:`service.demo.samba` loads into a
freshly provisioned Samba AD DC.

    OU=Staff                  people: mail, userPrincipalName, sAMAccountName, department, title,
                              employeeID, manager; the users of Okta's example events (their UPN is the
                              event's login); people in each bind-failure state (52e, 533, 532, 701, 773, 775)
      OU=Sales\\, EMEA         an OU whose name holds a comma, with a person and a group in it
    OU=Groups                 nested three deep (Finance Leads < app-Payroll Admins < app-All Staff), a
                              cycle (Cycle A <-> Cycle B), a distribution group (Newsletter), 60 teams
    OU=Bulk                   1,600 people in one group (All Bulk): more than Windows hands out of
                              ``member`` at once (1,500), and what makes AD's in-chain search slow
    OU=Service Accounts       svc-okta-hook, the service account (bound by DN or by UPN)

Group names are their ``sAMAccountName`` (the README's ``name_attribute``), equal to their ``cn``.

``employeeID`` is the HR number of :mod:`service.demo.hr_data` (the several-directory tests join on it),
the same number as the person's ``employeeNumber`` in demo.ldif: one HR record per human. HR has Carol,
Rosario, Administrator One, Example User, Sally, Ada; Alice's 1003 is there twice (ambiguous); Jean's 3001
is not there. The people without an employeeID have no join value.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from service.demo.slapd import DEMO_USER_PASSWORD, SERVICE_BIND_PASSWORD

REALM = "CORP.EXAMPLE.COM"
NETBIOS_DOMAIN = "CORP"
BASE_DN = "DC=corp,DC=example,DC=com"
STAFF = f"OU=Staff,{BASE_DN}"
EMEA = f"OU=Sales\\, EMEA,{STAFF}"
GROUPS = f"OU=Groups,{BASE_DN}"
BULK = f"OU=Bulk,{BASE_DN}"
SERVICES = f"OU=Service Accounts,{BASE_DN}"
PSO_CONTAINER = f"CN=Password Settings Container,CN=System,{BASE_DN}"

SERVICE_DN = f"CN=svc-okta-hook,{SERVICES}"
SERVICE_UPN = "svc-okta-hook@corp.example.com"
SERVICE_PASSWORD = SERVICE_BIND_PASSWORD
#: Administrator's password (complex enough for provisioning, which checks it before our settings apply).
ADMIN_PASSWORD = "Admin-Passw0rd-demo"
#: The password of the people in a bind-failure state: right, and refused all the same (but 52e).
RIGHT = "Right-Passw0rd"
BULK_MEMBERS = 1600
#: 100 years, in AD's negative 100-ns intervals: the locked account stays locked in every copy.
_FOREVER = -100 * 365 * 24 * 3600 * 10_000_000
#: Ten years: no password of the domain expires while a provisioned copy is in use, but Eve's.
_TEN_YEARS = -10 * 365 * 24 * 3600 * 10_000_000
#: 2012-12-14, as a FILETIME: Eve's pwdLastSet and Axel's accountExpires, long past.
LONG_AGO = 130_000_000_000_000_000

# userAccountControl: NORMAL_ACCOUNT (512), + ACCOUNTDISABLE (2).
ENABLED, DISABLED = 512, 514
GLOBAL_SECURITY, GLOBAL_DISTRIBUTION = -2147483646, 2


@dataclass(frozen=True)
class Person:
    sam: str
    name: str
    upn: str
    mail: str
    department: str = ""
    title: str = ""
    employee_id: str = ""
    manager: str | None = None  # sAMAccountName
    password: str = DEMO_USER_PASSWORD
    uac: int = ENABLED
    ou: str = STAFF
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def dn(self) -> str:
        return f"CN={self.name},{self.ou}"


@dataclass(frozen=True)
class Group:
    name: str
    members: tuple[str, ...] = ()  # sAMAccountNames of people or groups
    group_type: int = GLOBAL_SECURITY
    ou: str = GROUPS
    cn: str = ""

    @property
    def dn(self) -> str:
        return f"CN={self.cn or self.name},{self.ou}"


PEOPLE = (
    Person("carol.chen", "Carol Chen", "carol.chen@example.com", "carol.chen@example.com", "Engineering",
           "VP Engineering", "1001"),
    # Okta's example events: registration, token, SAML, user import, password import.
    Person("rosario.jones", "Rosario Jones", "rosario.jones@example.com", "rosario.jones@example.com",
           "Engineering", "Software Engineer", "1002", "carol.chen"),
    Person("administrator1", "Administrator One", "administrator1@clouditude.net", "administrator1@clouditude.net",
           "IT", "Administrator", "1011", "carol.chen"),
    Person("user", "Example User", "user@example.com", "user@example.com", "Sales", "Account Executive", "1020",
           "carol.chen"),
    Person("sally.admin", "Sally Admin", "sally.admin@example.net", "sally.admin@example.net", "IT",
           "Directory Admin", "1012", "carol.chen"),
    Person("alice.wong", "Alice Wong", "alice.wong@example.com", "alice.wong@example.com", "Finance",
           "Controller", "1003", "carol.chen"),
    # Three levels down a nested chain, and in a cycle.
    Person("ada", "Ada Lovelace", "ada@corp.example.com", "ada.lovelace@example.com", "Finance",
           "Payroll Lead", "2001", "carol.chen"),
    Person("busy", "Busy Bee", "busy@corp.example.com", "busy@example.com", "Operations"),
    Person("jean.dupont", "Dupont\\, Jean", "jean.dupont@corp.example.com", "jean.dupont@example.com", "Sales",
           "Account Manager", "3001", "carol.chen", ou=EMEA),
    # Bind-failure states, each with the RIGHT password.
    Person("pia.pass", "Pia Pass", "pia.pass@corp.example.com", "pia.pass@example.com", password=RIGHT),
    Person("dana.disabled", "Dana Disabled", "dana.disabled@corp.example.com", "dana.disabled@example.com",
           "Finance", password=RIGHT, uac=DISABLED),
    Person("eve.expired", "Eve Expired", "eve.expired@corp.example.com", "eve.expired@example.com",
           password=RIGHT),  # pwdLastSet set LONG_AGO after the load: 532
    Person("axel.gone", "Axel Gone", "axel.gone@corp.example.com", "axel.gone@example.com", password=RIGHT,
           extra=(("accountExpires", str(LONG_AGO)),)),  # 701
    Person("cara.change", "Cara Change", "cara.change@corp.example.com", "cara.change@example.com",
           password=RIGHT, extra=(("pwdLastSet", "0"),)),  # 773
    Person("lou.locked", "Lou Locked", "lou.locked@corp.example.com", "lou.locked@example.com",
           password=RIGHT),  # locked after the load: 775
)  # fmt: skip

TEAMS = tuple(f"app-team-{n:02d}" for n in range(60))
GROUP_LIST = (  # members before the groups that list them
    Group("Sales EMEA Team", ("jean.dupont",), ou=EMEA, cn="Sales\\, EMEA Team"),
    Group("Finance Leads", ("ada",)),
    Group("app-Payroll Admins", ("Finance Leads",)),
    Group("app-All Staff", ("app-Payroll Admins", "Sales EMEA Team")),
    Group("Cycle A", ("ada",)),
    Group("Cycle B", ("Cycle A",)),  # and Cycle A gets Cycle B once both exist: a cycle
    Group("Newsletter", ("Finance Leads",), GLOBAL_DISTRIBUTION),
    Group("Engineering", ("rosario.jones", "carol.chen", "administrator1")),
    Group("app-Okta Admins", ("sally.admin", "administrator1")),
    *(Group(team, ("busy",)) for team in TEAMS),
)
CYCLE_BACK = ("Cycle A", "Cycle B")  # Cycle A gets member Cycle B
BULK_GROUP = "All Bulk"
#: Ada's groups: direct, and nested through member links (the in-chain search, security and distribution).
ADA_DIRECT = ("Cycle A", "Finance Leads")
ADA_NESTED = ("Cycle A", "Cycle B", "Finance Leads", "Newsletter", "app-All Staff", "app-Payroll Admins")
#: Ada's security groups from tokenGroups: no distribution group, but the primary group (and its builtin
#: alias group ``Users``, under CN=Builtin) which no ``member`` value records.
ADA_TOKEN_GROUPS = ("Cycle A", "Cycle B", "Domain Users", "Finance Leads", "Users", "app-All Staff",
                    "app-Payroll Admins")  # fmt: skip
#: The people whose password binds are refused whatever is typed, by AD data code.
BIND_STATES = {
    "dana.disabled": "533",
    "eve.expired": "532",
    "axel.gone": "701",
    "cara.change": "773",
    "lou.locked": "775",
}


def unicode_pwd(password: str) -> str:
    """``unicodePwd``'s value: the password in double quotes, UTF-16-LE, base64 for LDIF."""
    return base64.b64encode(f'"{password}"'.encode("utf-16-le")).decode("ascii")


def _value(name: str, value: str) -> str:
    if value.isascii() and value.isprintable() and value == value.strip() and not value.startswith((":", "<")):
        return f"{name}: {value}"
    return f"{name}:: {base64.b64encode(value.encode('utf-8')).decode('ascii')}"


@dataclass
class _Records:
    records: list[str] = field(default_factory=list)

    def add(self, dn: str, *lines: str) -> None:
        self.records.append("\n".join([_value("dn", dn), "changetype: add", *lines]))

    def modify(self, dn: str, *lines: str) -> None:
        self.records.append("\n".join([_value("dn", dn), "changetype: modify", *lines, "-"]))

    def text(self) -> str:
        return "\n\n".join(self.records) + "\n"


def _person(records: _Records, person: Person, dns: dict[str, str]) -> None:
    first, _, last = person.name.replace("\\,", "").partition(" ")
    lines = [
        "objectClass: user",
        _value("sAMAccountName", person.sam),
        _value("userPrincipalName", person.upn),
        _value("mail", person.mail),
        _value("givenName", first),
        _value("sn", last or first),
        _value("displayName", person.name.replace("\\", "")),
        f"unicodePwd:: {unicode_pwd(person.password)}",
        f"userAccountControl: {person.uac}",
    ]
    for name, value in (("department", person.department), ("title", person.title),
                        ("employeeID", person.employee_id)):  # fmt: skip
        if value:
            lines.append(_value(name, value))
    if person.manager:
        lines.append(_value("manager", dns[person.manager]))
    lines += [_value(name, value) for name, value in person.extra]
    records.add(person.dn, *lines)


def _group(records: _Records, group: Group, dns: dict[str, str]) -> None:
    records.add(
        group.dn,
        "objectClass: group",
        _value("sAMAccountName", group.name),
        f"groupType: {group.group_type}",
        *(_value("member", dns[member]) for member in group.members),
    )


def ad_ldif(bulk_members: int = BULK_MEMBERS) -> str:
    """The domain's settings and content as LDIF change records, in an order AD accepts (members exist
    before the groups that list them). Loaded offline, through Samba's own modules, by ldbmodify."""
    records = _Records()
    # Password settings of the domain: no complexity or history (the demo's passwords are plain), and
    # passwords valid ten years, so that only Eve's (set LONG_AGO) is expired.
    records.modify(
        BASE_DN,
        "replace: pwdProperties", "pwdProperties: 0", "-",
        "replace: minPwdLength", "minPwdLength: 0", "-",
        "replace: pwdHistoryLength", "pwdHistoryLength: 0", "-",
        "replace: minPwdAge", "minPwdAge: 0", "-",
        "replace: maxPwdAge", f"maxPwdAge: {_TEN_YEARS}",
    )  # fmt: skip
    for ou in (STAFF, EMEA, GROUPS, BULK, SERVICES):
        records.add(ou, "objectClass: organizationalUnit")
    dns = {person.sam: person.dn for person in PEOPLE}
    dns.update((group.name, group.dn) for group in GROUP_LIST)
    records.add(
        SERVICE_DN,
        "objectClass: user",
        "sAMAccountName: svc-okta-hook",
        f"userPrincipalName: {SERVICE_UPN}",
        f"unicodePwd:: {unicode_pwd(SERVICE_PASSWORD)}",
        f"userAccountControl: {ENABLED}",
    )
    for person in sorted(PEOPLE, key=lambda p: p.manager is not None):  # managers first
        _person(records, person, dns)
    for group in GROUP_LIST:
        _group(records, group, dns)
    records.modify(dns[CYCLE_BACK[0]], "add: member", _value("member", dns[CYCLE_BACK[1]]))
    bulk = [f"CN=bulk-{n:04d},{BULK}" for n in range(bulk_members)]
    for n, dn in enumerate(bulk):
        # No password (hashing costs ~20 ms a person): PASSWD_NOTREQD (32) keeps them enabled.
        records.add(dn, "objectClass: user", f"sAMAccountName: bulk-{n:04d}", f"userAccountControl: {ENABLED | 32}")
    records.add(
        f"CN={BULK_GROUP},{GROUPS}",
        "objectClass: group",
        f"sAMAccountName: {BULK_GROUP}",
        f"groupType: {GLOBAL_SECURITY}",
        *(f"member: {dn}" for dn in bulk),
    )
    # Lou is locked out after three failures; the lock set after the load lasts as long as the copy.
    records.add(
        f"CN=lock-after-three,{PSO_CONTAINER}",
        "objectClass: msDS-PasswordSettings",
        "msDS-PasswordSettingsPrecedence: 10",
        "msDS-PasswordReversibleEncryptionEnabled: FALSE",
        "msDS-PasswordHistoryLength: 0",
        "msDS-PasswordComplexityEnabled: FALSE",
        "msDS-MinimumPasswordLength: 0",
        "msDS-MinimumPasswordAge: 0",
        f"msDS-MaximumPasswordAge: {_TEN_YEARS}",
        "msDS-LockoutThreshold: 3",
        "msDS-LockoutObservationWindow: -18000000000",
        f"msDS-LockoutDuration: {_FOREVER}",
        _value("msDS-PSOAppliesTo", dns["lou.locked"]),
    )
    return records.text()


def after_load() -> str:
    """What no LDAP client (nor Samba's modules) may write: Eve's password set LONG_AGO (532) and Lou
    locked now (775). Written straight into the domain partition's database, under the modules."""
    by_sam = {person.sam: person for person in PEOPLE}
    records = _Records()
    records.modify(by_sam["eve.expired"].dn, "replace: pwdLastSet", f"pwdLastSet: {LONG_AGO}")
    records.modify(
        by_sam["lou.locked"].dn,
        "replace: lockoutTime", "lockoutTime: {now}", "-",
        "replace: badPwdCount", "badPwdCount: 3",
    )  # fmt: skip
    return records.text()
