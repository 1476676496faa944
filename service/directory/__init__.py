"""Directory access: finding the user an Okta event is about, with ldap3, within a deadline.

Nothing here knows Okta exists. The package owns the pool of bound connections, TLS, failover between
servers, timeouts (``connections``), the thread bridge that keeps blocking ldap3 calls off the event loop
(``worker``), the user search with its filter escaping and DN resolution (``lookup``), group membership,
nested too (``groups``), password binds (``credentials``), server health (``health``) and the change
feed (``changes``), composed by ``client.Directory``. What callers need without ldap3 is in
``protocol``, ``entry`` and ``errors``.
"""

from service.directory.client import Directory
from service.directory.config import (
    DEFAULT_NAME,
    ChangeFeed,
    DirectoryConfig,
    DirectorySet,
    GroupSearch,
    Join,
    UserSearch,
)
from service.directory.entry import DirectoryEntry, Groups, Membership
from service.directory.errors import DeadlineExceeded, DirectoryError, StageReporter
from service.directory.observer import DirectoryObserver, NullObserver
from service.directory.protocol import (
    CacheResult,
    Changes,
    CredentialDirectory,
    LookupResult,
    PasswordCheck,
    PasswordRejection,
    UserDirectory,
    UserQuery,
)

__all__ = [
    "DEFAULT_NAME",
    "CacheResult",
    "ChangeFeed",
    "Changes",
    "CredentialDirectory",
    "DeadlineExceeded",
    "Directory",
    "DirectoryConfig",
    "DirectoryEntry",
    "DirectoryError",
    "DirectoryObserver",
    "DirectorySet",
    "GroupSearch",
    "Groups",
    "Join",
    "LookupResult",
    "Membership",
    "NullObserver",
    "PasswordCheck",
    "PasswordRejection",
    "StageReporter",
    "UserDirectory",
    "UserQuery",
    "UserSearch",
]
