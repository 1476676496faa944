"""The mapping rules on their own: pure functions, no directory needed."""

from __future__ import annotations

import pytest

from service.directory import DirectoryEntry
from service.mapping import MappingRule, apply, first_rdn_value, required_attributes, resolutions


@pytest.mark.parametrize(
    ("dn", "value"),
    [
        ("cn=engineering,ou=groups,dc=example,dc=com", "engineering"),
        ("CN=Smith\\, John,OU=People,DC=corp,DC=example", "Smith, John"),
        ("cn=Jos\\C3\\A9 M\\C3\\BCller,ou=people", "José Müller"),
        ("cn=José Müller,ou=people", "José Müller"),
        ("cn=a\\+b+uid=x,ou=people", "a+b"),
        ("cn=\\#hash\\;semi\\\\back,ou=x", "#hash;semi\\back"),
        ("uid=single", "single"),
        ("not a dn", "not a dn"),
    ],
)
def test_first_rdn_value(dn: str, value: str) -> None:
    assert first_rdn_value(dn) == value


ENTRY = DirectoryEntry(
    "uid=ana,ou=people,dc=example,dc=com",
    {
        "title": ("Engineer",),
        "mail": ("Ana.Silva@Example.com",),
        "memberof": ("cn=b-team,ou=groups,dc=x", "cn=a-team,ou=groups,dc=x", "cn=a-team,ou=groups,dc=x"),
        "manager": ("uid=boss,ou=people,dc=x",),
        "secretary": ("uid=gone,ou=people,dc=x",),
    },
    {"uid=boss,ou=people,dc=x": {"mail": ("boss@example.com",)}, "uid=gone,ou=people,dc=x": {}},
)


def rule(**fields: object) -> MappingRule:
    return MappingRule.model_validate(fields)


def test_rules_and_their_shorthand() -> None:
    rules = {
        "title": MappingRule.model_validate("title"),
        "email": rule(attribute="mail", transform=["lower"]),
        "groups": rule(attribute="memberOf", values="all", transform=["rdn"]),
        "firstGroup": rule(attribute="memberOf", transform=["rdn"]),
        "manager": rule(attribute="manager", resolve="mail"),
        "assistant": rule(attribute="secretary", resolve="mail", default="none"),
        "costCenter": rule(attribute="costCenter"),
        "tags": rule(attribute="costCenter", default=["x"]),
    }

    assert apply(rules, ENTRY) == {
        "title": "Engineer",
        "email": "ana.silva@example.com",
        "groups": ["a-team", "b-team"],  # sorted, duplicates removed
        "firstGroup": "b-team",
        "manager": "boss@example.com",
        "assistant": "none",  # dangling DN: default
        "tags": ["x"],
    }  # costCenter: no value, no default -> left out, Okta keeps its own


def test_what_to_fetch_is_derived_from_the_rules() -> None:
    rules = {"m": rule(attribute="Manager", resolve="Mail"), "d": rule(attribute="departmentNumber")}
    assert required_attributes(rules.values()) == {"manager", "departmentnumber"}
    assert resolutions(rules.values()) == {"manager": {"mail"}}
