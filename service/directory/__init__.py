"""Directory access: finding the user an Okta event is about, with ldap3, within a deadline.

Nothing here knows Okta exists. The package owns the pool of bound connections, TLS, failover between
servers, timeouts, filter escaping, DN resolution, group membership (nested too), and the thread
boundary that keeps blocking ldap3 calls off the event loop.
"""

from service.directory.client import Directory, PasswordCheck
from service.directory.config import DirectoryConfig, GroupSearch, UserSearch
from service.directory.credentials import BindRefusal
from service.directory.entry import DirectoryEntry, Groups, Membership
from service.directory.errors import DeadlineExceeded, DirectoryError
from service.directory.observer import DirectoryObserver, NullObserver
from service.directory.protocol import CacheResult, CredentialDirectory, LookupResult, UserDirectory, UserQuery

__all__ = [
    "BindRefusal",
    "CacheResult",
    "CredentialDirectory",
    "DeadlineExceeded",
    "Directory",
    "DirectoryConfig",
    "DirectoryEntry",
    "DirectoryError",
    "DirectoryObserver",
    "GroupSearch",
    "Groups",
    "LookupResult",
    "Membership",
    "NullObserver",
    "PasswordCheck",
    "UserDirectory",
    "UserQuery",
    "UserSearch",
]
