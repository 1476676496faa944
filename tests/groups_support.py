"""A directory of nested groups for tests/test_groups.py: the demo's base entries and service account,
two people, and groups that nest three levels deep, loop, fan out to 60, and carry commas and capitals.

ada (mail: every user of Okta's example events, so each hook type finds her):
    cn=R&D\\2C Europe ∋ ada            (level 1; a comma and capitals in the name)
    cn=App-Engineering ∋ R&D, Europe   (level 2)
    cn=Ops (Paris) ∋ R&D, Europe       (level 2; parentheses: a filter breaks unless the DN is escaped)
    cn=app-All Staff ∋ App-Engineering (level 3)
    cn=Cycle A ∋ ada, Cycle B          (level 1)
    cn=Cycle B ∋ Cycle A               (level 2; and back to Cycle A: a cycle)
    cn=Bystanders ∌ ada                (never hers)
busy (busy@example.com):
    cn=app-team-00 ... cn=app-team-59 ∋ busy (60 direct groups: more than DN resolution's cap of 25)
    cn=All Teams ∋ the 60 teams              (level 2: one walk level of 60 DNs)
"""

from __future__ import annotations

import re

from service.demo.slapd import demo_ldif

ADA_MAILS = (
    "rosario.jones@example.com",  # Okta's registration examples
    "administrator1@clouditude.net",  # token example
    "user@example.com",  # SAML example
    "sally.admin@example.net",  # user import example
)
ADA = "uid=ada,ou=people,dc=example,dc=com"
BUSY = "uid=busy,ou=people,dc=example,dc=com"
BYSTANDER = "uid=bystander,ou=people,dc=example,dc=com"
GROUPS = "ou=groups,dc=example,dc=com"

RND = f"cn=R&D\\2C Europe,{GROUPS}"
ENGINEERING = f"cn=App-Engineering,{GROUPS}"
ALL_STAFF = f"cn=app-All Staff,{GROUPS}"
OPS = f"cn=Ops (Paris),{GROUPS}"
CYCLE_A = f"cn=Cycle A,{GROUPS}"
CYCLE_B = f"cn=Cycle B,{GROUPS}"
TEAMS = [f"app-team-{n:02d}" for n in range(60)]

ADA_DIRECT = ["Cycle A", "R&D, Europe"]
ADA_NESTED = ["App-Engineering", "Cycle A", "Cycle B", "Ops (Paris)", "R&D, Europe", "app-All Staff"]

_BASE_DNS = {
    "dc=example,dc=com",
    "ou=people,dc=example,dc=com",
    "ou=groups,dc=example,dc=com",
    "ou=services,dc=example,dc=com",
    "cn=okta-hook,ou=services,dc=example,dc=com",
}


def _base_records() -> list[str]:
    """The suffix, the OUs and the service account (with its password hash) from the demo LDIF."""
    records = re.split(r"\n\s*\n", demo_ldif())
    kept = []
    for record in records:
        lines = [line for line in record.splitlines() if not line.startswith("#")]
        if lines and lines[0].startswith("dn: ") and lines[0][4:] in _BASE_DNS:
            kept.append("\n".join(lines))
    assert len(kept) == len(_BASE_DNS), "the demo LDIF no longer has the base entries"
    return kept


def _person(uid: str, mails: tuple[str, ...]) -> str:
    lines = [f"dn: uid={uid},ou=people,dc=example,dc=com", "objectClass: inetOrgPerson", f"uid: {uid}"]
    lines += [f"cn: {uid.title()}", f"sn: {uid.title()}", *(f"mail: {mail}" for mail in mails)]
    lines.append("departmentNumber: Research")
    return "\n".join(lines)


def _group(dn: str, name: str, members: list[str]) -> str:
    return "\n".join([f"dn: {dn}", "objectClass: groupOfNames", f"cn: {name}", *(f"member: {m}" for m in members)])


def groups_ldif(referral_url: str | None = None) -> str:
    """The directory above; with ``referral_url``, also a referral object under the groups base that
    sends a client following referrals to that server."""
    records = _base_records()
    records += [_person("ada", ADA_MAILS), _person("busy", ("busy@example.com",))]
    records.append(_person("bystander", ("bystander@example.com",)))
    records += [
        _group(RND, "R&D, Europe", [ADA]),
        _group(ENGINEERING, "App-Engineering", [RND]),
        _group(ALL_STAFF, "app-All Staff", [ENGINEERING]),
        _group(OPS, "Ops (Paris)", [RND]),
        _group(CYCLE_A, "Cycle A", [ADA, CYCLE_B]),
        _group(CYCLE_B, "Cycle B", [CYCLE_A]),
        _group(f"cn=Bystanders,{GROUPS}", "Bystanders", [BYSTANDER]),
    ]
    team_dns = [f"cn={team},{GROUPS}" for team in TEAMS]
    records += [_group(dn, team, [BUSY]) for dn, team in zip(team_dns, TEAMS, strict=True)]
    records.append(_group(f"cn=All Teams,{GROUPS}", "All Teams", team_dns))
    if referral_url:
        records.append(
            "\n".join(
                [
                    f"dn: ou=elsewhere,{GROUPS}",
                    "objectClass: referral",
                    "objectClass: extensibleObject",
                    "ou: elsewhere",
                    f"ref: {referral_url}/ou=groups,dc=elsewhere,dc=example",
                ]
            )
        )
    return "\n\n".join(records) + "\n"
