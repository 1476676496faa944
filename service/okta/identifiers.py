"""Which identifiers from an Okta event may be looked up in the directory at all.

The directory is the wrong place to find out that an identifier is hostile: slapd stops comparing
``mail`` at an escaped NUL, so ``alice.wong@example.com<NUL>rosario`` matched Alice; LDAP matching
rules ignore surrounding and repeated spaces and fold compatibility characters, so a look-alike of a
real address can match the real one. Nothing Okta accepts as a login or an email looks like that, so
such an identifier is refused before any lookup, with a reason from a fixed vocabulary.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum

#: Okta's user profile limits ``login`` and ``email`` to 100 characters each (Users API, profile
#: object: "login ... maxLength 100", "email ... maxLength 100"). Nothing longer comes from Okta.
MAX_IDENTIFIER_LENGTH = 100

#: Unicode categories no login or email holds: controls (C0, DEL, C1), invisible format characters
#: (zero-width space and joiners, BOM, bidi overrides: LDAP string preparation maps several of them to
#: nothing, so they would vanish on the directory side) and line/paragraph separators.
_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


class UnsafeIdentifier(StrEnum):
    """Why an identifier is not looked up. The values are log fields, ``debugContext`` values and
    metric labels: a fixed vocabulary that never quotes the identifier."""

    CONTROL_CHAR = "identifier_control_char"
    SURROGATE = "identifier_surrogate"
    TOO_LONG = "identifier_too_long"
    #: Any space, anywhere: an email or Okta login has none, and LDAP matching ignores leading,
    #: trailing and repeated ones, so ``" alice.wong@example.com"`` would find Alice.
    WHITESPACE = "identifier_whitespace"
    #: Changed by NFKC normalization (full-width letters, ligatures, superscripts...): directories
    #: fold some of these, so a look-alike could match a real person's entry.
    NOT_NORMALIZED = "identifier_not_normalized"
    #: With ``user_search.strip_domains``, a login outside the company's own domains (or with none).
    OUTSIDE_DOMAINS = "identifier_outside_domains"


#: Printable ASCII without the space: no control, surrogate or space, and NFKC leaves it as it is.
#: Nearly every login and email is this, and checking it is one scan instead of one Unicode lookup
#: per character (this runs on every hook call).
_PLAIN = re.compile("[!-~]*")


def unsafe_identifier(identifier: str) -> UnsafeIdentifier | None:
    """Why ``identifier`` must not reach the directory, or None when it may."""
    if len(identifier) > MAX_IDENTIFIER_LENGTH:
        return UnsafeIdentifier.TOO_LONG
    if _PLAIN.fullmatch(identifier):
        return None
    for character in identifier:
        category = unicodedata.category(character)
        if category == "Cs":
            return UnsafeIdentifier.SURROGATE
        if category in _CONTROL_CATEGORIES:
            return UnsafeIdentifier.CONTROL_CHAR
        if character.isspace():
            return UnsafeIdentifier.WHITESPACE
    if unicodedata.normalize("NFKC", identifier) != identifier:
        return UnsafeIdentifier.NOT_NORMALIZED
    return None
