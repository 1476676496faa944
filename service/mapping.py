"""The declarative mapping from directory attributes to Okta attributes and claims.

A :class:`MappingRule` says where one Okta value comes from: an LDAP attribute, optionally resolved
through a DN (``manager`` -> the manager's ``mail``), transformed, reduced to one value or kept whole,
with a default. Rules are validated when the configuration loads; applying them is pure and cannot
fail, so a directory entry with odd values never turns into an error for Okta.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

Value = str | list[str]


class Transform(StrEnum):
    RDN = "rdn"  # "cn=Sales EMEA,ou=groups,dc=example,dc=com" -> "Sales EMEA"
    LOWER = "lower"


class MappingRule(BaseModel):
    """Where one Okta attribute or claim gets its value. In YAML, a bare string is shorthand for
    ``{attribute: <string>}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attribute: str = Field(min_length=1, description="LDAP attribute to read (case-insensitive).")
    values: Literal["first", "all"] = Field(
        "first",
        description="`first`: one string; `all`: a list of every value, sorted (LDAP values are an "
        "unordered set; a stable order keeps Okta's copy from changing on every login).",
    )
    transform: tuple[Transform, ...] = Field((), description="Applied to each value, in order.")
    resolve: str | None = Field(
        None,
        min_length=1,
        description="Treat each value as a DN and read this attribute of that entry instead.",
    )
    default: str | list[str] | None = Field(None, description="Used when the entry yields no value.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"attribute": data} if isinstance(data, str) else data


class Entry(Protocol):
    """What the mapping needs from a directory entry (the directory package provides one)."""

    def values(self, attribute: str) -> Sequence[str]: ...

    def resolved(self, dn: str, attribute: str) -> Sequence[str]: ...


Rules = Mapping[str, MappingRule]


def required_attributes(rules: Iterable[MappingRule]) -> frozenset[str]:
    """The attributes to fetch for the user entry, lower-cased as the directory reports them."""
    return frozenset(rule.attribute.lower() for rule in rules)


def resolutions(rules: Iterable[MappingRule]) -> dict[str, frozenset[str]]:
    """For each DN-valued attribute, the attributes to read from the entries it points at."""
    wanted: dict[str, set[str]] = {}
    for rule in rules:
        if rule.resolve:
            wanted.setdefault(rule.attribute.lower(), set()).add(rule.resolve.lower())
    return {attribute: frozenset(targets) for attribute, targets in wanted.items()}


def apply(rules: Rules, entry: Entry) -> dict[str, Value]:
    """Okta name -> value for every rule that yields a value or has a default; the others are left out,
    so Okta keeps what it has."""
    mapped: dict[str, Value] = {}
    for name, rule in rules.items():
        value = _evaluate(rule, entry)
        if value is not None:
            mapped[name] = value
    return mapped


def _evaluate(rule: MappingRule, entry: Entry) -> Value | None:
    raw = list(entry.values(rule.attribute.lower()))
    if rule.resolve:
        target = rule.resolve.lower()
        raw = [value for dn in raw for value in entry.resolved(dn, target)[:1]]
    for transform in rule.transform:
        raw = [_TRANSFORMS[transform](value) for value in raw]
    values = [value for value in raw if value]
    if not values:
        return rule.default
    return sorted(set(values)) if rule.values == "all" else values[0]


def first_rdn_value(dn: str) -> str:
    """The value of the first RDN of a DN (RFC 4514), unescaped: ``cn=Smith\\, John,ou=people`` ->
    ``Smith, John``. A string that is not a DN comes back unchanged."""
    equals = dn.find("=")
    if equals < 0:
        return dn
    raw = bytearray()
    index = equals + 1
    while index < len(dn):
        char = dn[index]
        if char in ",+;":
            break
        if char == "\\" and index + 1 < len(dn):
            pair = dn[index + 1 : index + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                raw.append(int(pair, 16))  # \xx is one byte of the UTF-8 encoding
                index += 3
                continue
            raw.extend(dn[index + 1].encode())
            index += 2
            continue
        raw.extend(char.encode())
        index += 1
    return raw.decode("utf-8", errors="replace").strip()


_TRANSFORMS = {Transform.RDN: first_rdn_value, Transform.LOWER: str.lower}
