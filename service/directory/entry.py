"""A user entry as read from the directory, with the entries its DN-valued attributes point at and the
groups the person is in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Membership = Literal["direct", "nested"]


@dataclass(frozen=True, slots=True)
class Groups:
    """Names of a person's groups as the directory stores them (``name_attribute``), sorted, unique."""

    names: tuple[str, ...] = ()
    #: False when a bound of the nested walk (``max_depth``, ``max_groups``) or a server size limit
    #: stopped the search: the person may be in more groups than ``names`` lists.
    complete: bool = True


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """Attribute names are lower-case (LDAP names are case-insensitive); values are text."""

    dn: str
    attributes: Mapping[str, tuple[str, ...]]
    #: DN (as it appears in an attribute value) -> attributes of that entry.
    linked: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    #: The person's groups, for each kind of membership the mapping asked for. Part of the entry, so a
    #: cache of entries keeps them with the rest of the answer.
    groups: Mapping[Membership, Groups] = field(default_factory=dict)

    def values(self, attribute: str) -> tuple[str, ...]:
        return self.attributes.get(attribute.lower(), ())

    def resolved(self, dn: str, attribute: str) -> tuple[str, ...]:
        return self.linked.get(dn, {}).get(attribute.lower(), ())

    def group_names(self, membership: Membership) -> Groups:
        return self.groups.get(membership, Groups())
