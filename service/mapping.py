"""The declarative mapping from directory attributes to Okta attributes and claims.

A :class:`MappingRule` says where one Okta value comes from: an LDAP attribute, optionally resolved
through a DN (``manager`` -> the manager's ``mail``), or the person's groups (``source: groups``, direct
or nested, filtered by name, at most ``max`` of them); transformed, reduced to one value or kept whole,
with a default. Rules are validated when the configuration loads; applying them is pure and cannot
fail, so a directory entry with odd values never turns into an error for Okta.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.directory.entry import Membership

Value = str | list[str]


class Transform(StrEnum):
    RDN = "rdn"  # "cn=Sales EMEA,ou=groups,dc=example,dc=com" -> "Sales EMEA"
    LOWER = "lower"
    GUID = "guid"  # Active Directory objectGUID -> "8ba91f6f-d125-4bef-b2ec-4f5df9a3e1c2"
    SID = "sid"  # Active Directory objectSid -> "S-1-5-21-3623811015-3361044348-30300820-1013"


class MappingRule(BaseModel):
    """Where one Okta attribute or claim gets its value. In YAML, a bare string is shorthand for
    ``{attribute: <string>}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["attribute", "groups"] = Field(
        "attribute",
        description="`attribute`: an attribute of the user entry; `groups`: the names of the person's "
        "groups, as `directory.groups` finds them.",
    )
    attribute: str | None = Field(
        None, min_length=1, description="LDAP attribute to read (case-insensitive); for `source: attribute`."
    )
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
    directory: str | None = Field(
        None,
        min_length=1,
        description="With several directories: the one this value comes from (its name under `directories`); "
        "absent: the directory that holds the person. When that directory does not answer in time the value "
        "is left out (Okta keeps what it has); when it has no entry for the person, `default` applies.",
    )
    nested: bool = Field(False, description="`source: groups`: also the groups the person is in through other groups.")
    name_pattern: tuple[str, ...] = Field(
        (),
        description="`source: groups`: keep only groups whose name matches one of these shell-style "
        "patterns (`app-*`), compared case-insensitively as directories compare names.",
    )
    max: int | None = Field(
        None,
        ge=1,
        description="`source: groups`: at most this many names; the first in sorted order are kept, the "
        "cut is counted and said in Okta's debugContext (`groupsTruncated`).",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"attribute": data}
        if isinstance(data, dict) and data.get("source") == "groups":
            data = {"values": "all", **data}  # a person's groups are a list unless asked otherwise
            if isinstance(data.get("name_pattern"), str):
                data["name_pattern"] = (data["name_pattern"],)
        return data

    @model_validator(mode="after")
    def _fits_source(self) -> MappingRule:
        if self.source == "attribute":
            if self.attribute is None:
                raise ValueError("attribute is required (or source: groups)")
            for key in ("nested", "name_pattern", "max"):
                if getattr(self, key):
                    raise ValueError(f"{key} applies to source: groups only")
        else:
            for key in ("attribute", "resolve"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key} does not apply to source: groups (see directory.groups)")
        return self

    @property
    def membership(self) -> Membership:
        return "nested" if self.nested else "direct"


class GroupList(Protocol):
    @property
    def names(self) -> Sequence[str]: ...

    @property
    def complete(self) -> bool: ...


class Entry(Protocol):
    """What the mapping needs from a directory entry (the directory package provides one)."""

    def values(self, attribute: str) -> Sequence[str]: ...

    def resolved(self, dn: str, attribute: str) -> Sequence[str]: ...

    def group_names(self, membership: Membership) -> GroupList: ...


Rules = Mapping[str, MappingRule]


@dataclass(frozen=True, slots=True)
class Mapped:
    """The values for Okta, and what the group rules had to leave out on the way."""

    values: dict[str, Value]
    #: Okta names whose group list was cut to the rule's ``max``.
    cut: tuple[str, ...] = ()
    #: Okta names whose groups came from a nested walk stopped by a bound: the person may be in more.
    incomplete: tuple[str, ...] = ()


def by_directory(rules: Iterable[MappingRule]) -> dict[str | None, list[MappingRule]]:
    """The rules grouped by the directory they read (None: the one that holds the person)."""
    grouped: dict[str | None, list[MappingRule]] = {}
    for rule in rules:
        grouped.setdefault(rule.directory, []).append(rule)
    return grouped


def required_attributes(rules: Iterable[MappingRule]) -> frozenset[str]:
    """The attributes to fetch for the user entry, lower-cased as the directory reports them."""
    return frozenset(rule.attribute.lower() for rule in rules if rule.attribute)


def memberships(rules: Iterable[MappingRule]) -> frozenset[Membership]:
    """Which of the person's group memberships (``direct``, ``nested``) the rules need."""
    return frozenset(rule.membership for rule in rules if rule.source == "groups")


def resolutions(rules: Iterable[MappingRule]) -> dict[str, frozenset[str]]:
    """For each DN-valued attribute, the attributes to read from the entries it points at."""
    wanted: dict[str, set[str]] = {}
    for rule in rules:
        if rule.resolve and rule.attribute:
            wanted.setdefault(rule.attribute.lower(), set()).add(rule.resolve.lower())
    return {attribute: frozenset(targets) for attribute, targets in wanted.items()}


def apply(rules: Rules, entry: Entry) -> dict[str, Value]:
    """Okta name -> value for every rule that yields a value or has a default; the others are left out,
    so Okta keeps what it has."""
    return map_entry(rules, entry).values


def map_entry(rules: Rules, entry: Entry) -> Mapped:
    """:func:`apply`, also saying which group claims were cut or may be incomplete."""
    values: dict[str, Value] = {}
    cut: list[str] = []
    incomplete: list[str] = []
    for name, rule in rules.items():
        if rule.source == "groups":
            value, was_cut, complete = _groups(rule, entry)
            if was_cut:
                cut.append(name)
            if not complete:
                incomplete.append(name)
        else:
            value = _evaluate(rule, entry)
        if value is not None:
            values[name] = value
    return Mapped(values, tuple(cut), tuple(incomplete))


def _evaluate(rule: MappingRule, entry: Entry) -> Value | None:
    assert rule.attribute is not None  # validated: source attribute has one
    raw = list(entry.values(rule.attribute.lower()))
    if rule.resolve:
        target = rule.resolve.lower()
        raw = [value for dn in raw for value in entry.resolved(dn, target)[:1]]
    return _finish(rule, _transformed(rule, raw))


def _groups(rule: MappingRule, entry: Entry) -> tuple[Value | None, bool, bool]:
    """The rule's group names, whether ``max`` cut them, and whether the directory's list was complete."""
    groups = entry.group_names(rule.membership)
    names = list(groups.names)
    if rule.name_pattern:
        patterns = [pattern.casefold() for pattern in rule.name_pattern]
        names = [name for name in names if any(fnmatchcase(name.casefold(), p) for p in patterns)]
    kept = sorted(set(_transformed(rule, names)))
    cut = rule.max is not None and len(kept) > rule.max
    if cut:
        kept = kept[: rule.max]
    return _finish(rule, kept), cut, groups.complete


def _transformed(rule: MappingRule, raw: list[str]) -> list[str]:
    for transform in rule.transform:
        raw = [_TRANSFORMS[transform](value) for value in raw]
    return [value for value in raw if value]


def _finish(rule: MappingRule, values: list[str]) -> Value | None:
    if not values:
        return rule.default
    return sorted(set(values)) if rule.values == "all" else values[0]


_RDN_END = re.compile("[,+;]")


def first_rdn_value(dn: str) -> str:
    """The value of the first RDN of a DN (RFC 4514), unescaped: ``cn=Smith\\, John,ou=people`` ->
    ``Smith, John``. A string that is not a DN comes back unchanged."""
    equals = dn.find("=")
    if equals < 0:
        return dn
    if "\\" not in dn:  # nothing escaped (nearly every DN): the text up to the next separator
        match = _RDN_END.search(dn, equals + 1)
        return dn[equals + 1 : match.start() if match else len(dn)].strip()
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


def guid_string(hex_value: str) -> str:
    """Active Directory's objectGUID (16 bytes, as hex) in the form AD tools show: the first three
    fields are stored little-endian (Microsoft's GUID layout), so the bytes are not read in order.
    Anything else yields "" (no value)."""
    try:
        raw = bytes.fromhex(hex_value)
    except ValueError:
        return ""
    return str(uuid.UUID(bytes_le=raw)) if len(raw) == 16 else ""


def sid_string(hex_value: str) -> str:
    """Active Directory's objectSid (binary, as hex) as ``S-1-5-21-...``: revision, a 48-bit
    big-endian authority, then little-endian 32-bit sub-authorities. Anything else yields ""."""
    try:
        raw = bytes.fromhex(hex_value)
    except ValueError:
        return ""
    if len(raw) < 8 or raw[0] != 1 or len(raw) != 8 + 4 * raw[1]:
        return ""
    authority = int.from_bytes(raw[2:8], "big")
    subs = [int.from_bytes(raw[i : i + 4], "little") for i in range(8, len(raw), 4)]
    return "-".join(["S", str(raw[0]), str(authority), *map(str, subs)])


_TRANSFORMS = {
    Transform.RDN: first_rdn_value,
    Transform.LOWER: str.lower,
    Transform.GUID: guid_string,
    Transform.SID: sid_string,
}
