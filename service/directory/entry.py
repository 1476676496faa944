"""A user entry as read from the directory, with the entries its DN-valued attributes point at."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """Attribute names are lower-case (LDAP names are case-insensitive); values are text."""

    dn: str
    attributes: Mapping[str, tuple[str, ...]]
    #: DN (as it appears in an attribute value) -> attributes of that entry.
    linked: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)

    def values(self, attribute: str) -> tuple[str, ...]:
        return self.attributes.get(attribute.lower(), ())

    def resolved(self, dn: str, attribute: str) -> tuple[str, ...]:
        return self.linked.get(dn, {}).get(attribute.lower(), ())
