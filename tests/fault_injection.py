"""Bugs planted in a real service process, for tests/test_failure_traces.py.

The test writes a ``sitecustomize.py`` that imports this module and calls :func:`install` (Python imports
``sitecustomize`` at start-up from ``PYTHONPATH``), so the service runs as ``python -m service serve``,
as in production, with these faults. Every planted exception's message holds personal data, which must
never reach the log.
"""

from __future__ import annotations

from typing import Any

#: What the planted exceptions say: a login and a DN, as a real KeyError or LDAP error might.
PERSONAL = "alice.wong@example.com uid=alice.wong,ou=people"


def install() -> None:
    import service.hooks.base as hooks
    import service.mapping as mapping
    from service.directory.connections import ConnectionPool
    from service.hooks.registry import HookType

    def map_entry(*args: Any, **kwargs: Any) -> Any:  # every enrichment: a bug in the mapping
        raise KeyError(PERSONAL)

    mapping.map_entry = map_entry

    answer = hooks.EnrichingHook.answer

    async def answer_or_crash(self: hooks.EnrichingHook, *args: Any, **kwargs: Any) -> Any:
        if self.type is HookType.SAML:  # a bug outside the hook's own guard: a real 500
            raise RuntimeError(PERSONAL)
        return await answer(self, *args, **kwargs)

    hooks.EnrichingHook.answer = answer_or_crash  # type: ignore[method-assign]

    check = ConnectionPool.check
    calls = {"check": 0}

    def check_once_broken(self: ConnectionPool, server: Any) -> bool:
        calls["check"] += 1
        if calls["check"] == 1:  # the first round of the health loop
            raise ValueError(PERSONAL)
        return check(self, server)

    ConnectionPool.check = check_once_broken  # type: ignore[method-assign]

    def prewarm(self: ConnectionPool) -> None:
        raise LookupError(PERSONAL)

    ConnectionPool.prewarm = prewarm  # type: ignore[method-assign]
