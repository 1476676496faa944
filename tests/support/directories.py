"""Directory pieces for tests that work below the ``Directory`` facade."""

from __future__ import annotations

from service.directory import DirectoryConfig, NullObserver
from service.directory.connections import ConnectionPool
from service.directory.service_account import ServiceAccount
from service.secret_files import Fixed


def service_pool(config: DirectoryConfig, password: str) -> ConnectionPool:
    """A connection pool binding as ``config``'s service account with a fixed ``password``."""
    account = ServiceAccount(config, Fixed(password, "bind password"), NullObserver())
    return ConnectionPool(config, account, NullObserver())
