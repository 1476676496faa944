"""JSON text for the two documents every hook call writes: Okta's answer and the request's log line.

``json.dumps`` builds a new encoder on every call (a ``JSONEncoder``, then its C scanner), about half
the cost of encoding a hook's answer. :func:`encoder` builds the C encoder once and reuses it; the
output is exactly ``json.dumps``'s with the same separators and ``default``, which is checked once at
build time (falling back to ``JSONEncoder.encode`` should a Python version change the C encoder's
arguments).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as _stdlib
from typing import Any

_PROBE = {"a": [1, 2.5, None, True, "é\n"], "b": {"c": -3}}


def encoder(
    *, separators: tuple[str, str] = (", ", ": "), default: Callable[[Any], Any] | None = None
) -> Callable[[Any], str]:
    """A function returning ``json.dumps(value, separators=separators, default=default)``.

    Unlike ``json.dumps`` it does not check for circular references (a cycle ends in ``RecursionError``
    rather than ``ValueError``): the values it is given are trees built by this service."""
    reference = json.JSONEncoder(separators=separators, default=default)
    make = getattr(_stdlib, "c_make_encoder", None)
    if make is None:
        return reference.encode
    item_separator, key_separator = separators
    try:
        iterencode = make(
            None, reference.default, _stdlib.encode_basestring_ascii, None, key_separator, item_separator,
            False, False, True,
        )  # fmt: skip
    except TypeError:
        return reference.encode

    def encode(value: Any) -> str:
        if isinstance(value, str):  # the C encoder encodes containers only
            return reference.encode(value)
        return "".join(iterencode(value, 0))

    try:
        same = encode(_PROBE) == reference.encode(_PROBE)
    except Exception:
        same = False
    return encode if same else reference.encode
