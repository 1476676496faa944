"""How to reach the directory and find users in it (the ``directory:`` section of the config file).

Plain dataclasses, so this package needs no validation library; the settings module validates them from
YAML (``__pydantic_config__`` forbids unknown keys and asks for strict types, ``__post_init__`` checks
the values).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from service.directory.protocol import normalise

_ATTRIBUTE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"^(?=.{{1,253}}$)({_LABEL}\.)*{_LABEL}$")


@dataclass(frozen=True)
class UserSearch:
    """Where users live and which attribute holds the identifier Okta sends."""

    __pydantic_config__ = {"extra": "forbid", "strict": True}  # noqa: RUF012 (read by pydantic, not by us)

    base_dn: str
    #: ``subtree`` searches below ``base_dn`` at any depth, ``one`` only its direct children.
    scope: Literal["subtree", "one"] = "subtree"
    #: Extra conditions every user entry must meet, e.g. ``(objectClass=person)`` or, for Active
    #: Directory, ``(&(objectCategory=person)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))``.
    filter: str = "(objectClass=*)"
    #: The attribute compared with the login or email: ``mail``, ``uid``, ``userPrincipalName``,
    #: ``sAMAccountName``...
    match_attribute: str = "mail"
    #: The company's own login domains. When set, only the part of the identifier before ``@`` is
    #: compared (for ``sAMAccountName``: ``jdoe`` when Okta's login is ``jdoe@corp.example.com``), and only
    #: for logins in one of these domains (compared case-insensitively): ``asilva@evil.example`` must not
    #: become the company's ``asilva``. A login in another domain, or with no ``@``, matches nobody.
    strip_domains: tuple[str, ...] = ()
    #: The login domains this directory holds, when there are several (``directories:``): only logins
    #: in one of these domains are looked up here, and the whole login is compared (with ``match_attribute:
    #: mail`` or ``userPrincipalName``). ``strip_domains`` routes the same way. Neither: every directory
    #: that holds people is asked (in parallel), and a person found in two is ``ambiguous``.
    domains: tuple[str, ...] = ()

    #: With ``dialect: active_directory``, keep accounts whose ``userAccountControl`` has the
    #: ACCOUNTDISABLE bit (2) findable. By default they are excluded, as if they did not exist.
    include_disabled: bool = False

    def __post_init__(self) -> None:
        if not self.base_dn.strip():
            raise ValueError("base_dn must not be empty")
        _check_filter(self.filter, "(objectClass=person)")
        if not _ATTRIBUTE.match(self.match_attribute):
            raise ValueError("match_attribute must be an attribute name such as mail or uid")
        for key in ("strip_domains", "domains"):
            for domain in getattr(self, key):
                if not _DOMAIN.match(domain):
                    raise ValueError(f"{key} must list domain names such as corp.example.com, without @")
            object.__setattr__(self, key, tuple(domain.lower() for domain in getattr(self, key)))
        if self.strip_domains and self.domains:
            raise ValueError("set domains or strip_domains, not both (strip_domains holds only its domains already)")

    def search_value(self, identifier: str) -> str | None:
        """What is compared with ``match_attribute`` for ``identifier``: the identifier lower-cased
        (:func:`~service.directory.protocol.normalise`), or with ``strip_domains`` its local part; None
        when the identifier is in none of the company's domains. Computed once per request."""
        identifier = normalise(identifier)
        if not (self.strip_domains or self.domains):
            return identifier
        local, at, domain = identifier.rpartition("@")
        if not (at and local) or domain not in (self.strip_domains or self.domains):
            return None
        return local if self.strip_domains else identifier

    @property
    def routed(self) -> bool:
        """Whether this directory holds only some login domains (``domains`` or ``strip_domains``)."""
        return bool(self.strip_domains or self.domains)


@dataclass(frozen=True)
class GroupSearch:
    """Where groups live and how membership is recorded (the ``directory.groups`` section), for
    mapping rules with ``source: groups``.

    Groups are found by searching for the entries whose ``member_attribute`` holds the user's DN (and,
    for nested membership, a group's DN), never by reading ``memberOf`` and then each group: one search
    returns every group with its true name, whatever the size of the group.
    """

    __pydantic_config__ = {"extra": "forbid"}  # noqa: RUF012

    base_dn: str
    scope: Literal["subtree", "one"] = "subtree"
    #: Which entries are groups, and which groups count at all, e.g. ``(objectClass=groupOfNames)``
    #: or, on Active Directory, ``(&(objectClass=group)(groupType:1.2.840.113556.1.4.803:=2147483648))``
    #: for security groups only.
    filter: str = "(objectClass=groupOfNames)"
    #: The group's name as people know it: ``cn``, or ``sAMAccountName`` on Active Directory.
    name_attribute: str = "cn"
    #: The group attribute holding its members' DNs: ``member`` (``uniqueMember`` for groupOfUniqueNames).
    member_attribute: str = "member"
    #: Nested membership on directories without AD's in-chain rule: how many levels are walked (1 is
    #: the direct groups only) ...
    max_depth: int = 5
    #: ... and how many groups may be collected in all. Past either bound the walk stops and the answer
    #: says the list may be incomplete (``groupsTruncated`` in Okta's debugContext, and a metric).
    max_groups: int = 1000
    #: Active Directory only: how nested groups are found. ``in_chain`` (one search with the in-chain
    #: matching rule: every kind of group, distribution groups included, but the DC walks every ``member``
    #: link, hundreds of milliseconds once a group of thousands exists) or ``token_groups`` (the user's
    #: ``tokenGroups``, read at the user's DN, and the SIDs resolved to names in one search, remembered for
    #: ten minutes: about a millisecond, but security groups and the primary group only, as in a logon token).
    nested_search: Literal["in_chain", "token_groups"] = "in_chain"

    def __post_init__(self) -> None:
        if not self.base_dn.strip():
            raise ValueError("base_dn must not be empty")
        _check_filter(self.filter, "(objectClass=groupOfNames)")
        for name in ("name_attribute", "member_attribute"):
            if not _ATTRIBUTE.match(getattr(self, name)):
                raise ValueError(f"{name} must be an attribute name such as cn or member")
        if not 1 <= self.max_depth <= 20:
            raise ValueError("max_depth must be between 1 and 20")
        if not 1 <= self.max_groups <= 10000:
            raise ValueError("max_groups must be between 1 and 10000")


@dataclass(frozen=True)
class ChangeFeed:
    """The directory's own changes, asked for every ``poll_seconds`` (the ``directory.change_feed``
    section): a changed entry evicts the cache entries it affects, and caches may keep entries up to
    ``hooks.<type>.cache.feed_fresh_seconds`` while the polls succeed (README, "Answering from memory").

    OpenLDAP (and any directory with ``modifyTimestamp``): entries whose ``modifyTimestamp`` is at or
    after the newest one seen, less ``overlap_seconds``. Active Directory: ``uSNChanged`` above the
    highest USN seen on that domain controller, tombstones included."""

    __pydantic_config__ = {"extra": "forbid", "strict": True}  # noqa: RUF012

    #: One search for what changed, this often. Changes reach Okta within about this long.
    poll_seconds: float = 10.0
    #: OpenLDAP: how far before the newest change seen each poll looks again. ``modifyTimestamp`` has
    #: whole seconds, a replica receives a change later than its timestamp says, and providers' clocks
    #: differ: a change this late or this far off is still caught. Changes seen already are not evicted
    #: twice, but are read again while in the window: raise it for replication across providers.
    overlap_seconds: float = 10.0
    #: Where changes are looked for; by default the naming context holding ``user_search.base_dn`` (the
    #: root DSE's ``namingContexts``), so groups, managers and users are covered wherever they live.
    base_dns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0.1 <= self.poll_seconds <= 3600:
            raise ValueError("poll_seconds must be between 0.1 and 3600")
        if not 0 <= self.overlap_seconds <= 86400:
            raise ValueError("overlap_seconds must be between 0 and 86400")
        if any(not base.strip() for base in self.base_dns):
            raise ValueError("base_dns must not hold an empty DN")

    @property
    def max_lag_seconds(self) -> float:
        """How old the last good poll may be for the feed to count as current: two polls. A poll that
        fails, or none for this long, brings every cache back to its short ``fresh_seconds``."""
        return 2 * self.poll_seconds


@dataclass(frozen=True)
class Join:
    """How a secondary directory (``directories.<name>.join``) finds the person, once another directory
    holds them: it never decides who the person is, and is asked only for the values rules name it for.

    ``attribute``: the first value of this attribute of the person's entry in the directory that holds
    them (``employeeID``, ``mail``) is compared with this directory's ``user_search.match_attribute``;
    asked once that entry has arrived. ``identifier: true``: Okta's identifier itself, as the directories
    that hold people compare it, asked beside them (in parallel)."""

    __pydantic_config__ = {"extra": "forbid", "strict": True}  # noqa: RUF012

    attribute: str | None = None
    identifier: bool = False

    def __post_init__(self) -> None:
        if (self.attribute is None) == (not self.identifier):
            raise ValueError("set attribute (the person's attribute holding the join value) or identifier: true")
        if self.attribute is not None and not _ATTRIBUTE.match(self.attribute):
            raise ValueError("attribute must be an attribute name such as employeeID or mail")


def _check_filter(text: str, example: str) -> None:
    if not (text.startswith("(") and text.endswith(")")):
        raise ValueError(f"filter must be one parenthesised LDAP filter, e.g. {example}")


@dataclass(frozen=True)
class DirectoryConfig:
    """Connection settings. The bind password is not here: it comes from ``bind_password_env`` or
    ``bind_password_file`` and is handed to :class:`~service.directory.Directory` separately."""

    __pydantic_config__ = {"extra": "forbid", "strict": True}  # noqa: RUF012

    #: Tried in order; a server that fails is skipped for ``server_cooldown_seconds``.
    urls: tuple[str, ...]
    user_search: UserSearch
    #: The service account; empty means an anonymous bind.
    bind_dn: str = ""
    bind_password_env: str | None = None
    bind_password_file: str | None = None
    #: Upgrade ``ldap://`` connections with StartTLS (``ldaps://`` URLs are TLS from the start).
    start_tls: bool = False
    #: PEM bundle of the CAs that may sign the servers' certificates; the system store when absent.
    #: Certificates and host names are always verified.
    ca_file: str | None = None
    connect_timeout_seconds: float = 1.0
    #: Socket timeout of each LDAP operation (bind, search). Keep it below the hook deadline.
    operation_timeout_seconds: float = 2.0
    #: Bound connections kept open, and threads running ldap3 calls: the number of lookups in flight.
    #: ldap3 decodes replies in Python, under the GIL: beyond a few threads, busy ones only take the GIL
    #: from the event loop, which then accepts and reads new requests late (README, "Performance").
    pool_size: int = 3
    server_cooldown_seconds: float = 5.0
    #: Connections older than this are replaced, before an idle-timeout on a firewall or DC drops them.
    connection_max_age_seconds: float = 300.0
    #: How often a background bind checks each server (reachability metric, recovery after cooldown).
    health_check_interval_seconds: float = 15.0
    #: ``active_directory`` excludes disabled accounts from the user search (see
    #: ``user_search.include_disabled``) and finds nested groups in one search (``groups.nested_search``:
    #: AD's in-chain matching rule or the user's ``tokenGroups``); ``openldap`` (any other directory) walks
    #: nested groups level by level.
    dialect: Literal["openldap", "active_directory"] = "openldap"
    #: Groups for ``source: groups`` mapping rules; absent, such rules are refused at startup.
    groups: GroupSearch | None = None
    #: Ask the directory what changed (``ChangeFeed``); absent, cache entries live ``fresh_seconds``.
    change_feed: ChangeFeed | None = None
    #: With several directories (``directories:``): a secondary directory, joined to the person found in
    #: another (:class:`Join`). Absent: the directory holds people, found by Okta's identifier.
    join: Join | None = None
    servers: tuple[ServerAddress, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("urls must list at least one ldap:// or ldaps:// URL")
        servers = tuple(ServerAddress.parse(url) for url in self.urls)
        if self.start_tls and any(server.tls for server in servers):
            raise ValueError("start_tls applies to ldap:// URLs; ldaps:// URLs already use TLS")
        if self.bind_password_env and self.bind_password_file:
            raise ValueError("set bind_password_env or bind_password_file, not both")
        if self.bind_dn and not (self.bind_password_env or self.bind_password_file):
            raise ValueError("bind_dn needs bind_password_env or bind_password_file")
        for name in (
            "connect_timeout_seconds",
            "operation_timeout_seconds",
            "server_cooldown_seconds",
            "connection_max_age_seconds",
            "health_check_interval_seconds",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be greater than 0")
        if not 1 <= self.pool_size <= 128:
            raise ValueError("pool_size must be between 1 and 128")
        if self.groups and self.groups.nested_search == "token_groups" and self.dialect != "active_directory":
            raise ValueError("groups.nested_search: token_groups needs dialect: active_directory")
        if self.join is not None and self.join.attribute is not None and self.user_search.routed:
            raise ValueError(
                "join.attribute: a directory joined by an attribute is not searched by login; "
                "remove user_search.domains / strip_domains"
            )
        object.__setattr__(self, "servers", servers)


#: A directory's configured name: a metric label, a debugContext key, a log value.
DIRECTORY_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
#: The name of the one directory of the ``directory:`` form.
DEFAULT_NAME = "default"
#: What a directory is to an answer: ``accounts`` holds people (found by Okta's identifier), ``joined`` is
#: read through a ``join`` from the entry of the one that holds them.
DirectoryRole = Literal["accounts", "joined"]


@dataclass(frozen=True)
class DirectorySet:
    """Every configured directory by name, as the ``directory:`` (one, named ``default``) or the
    ``directories:`` form (several) gave them: the order is the configuration's."""

    named: dict[str, DirectoryConfig]
    #: The ``directory:`` form: configuration keys are ``directory.<key>``, not ``directories.<name>.<key>``.
    single: bool = True

    @classmethod
    def one(cls, config: DirectoryConfig) -> DirectorySet:
        return cls({DEFAULT_NAME: config}, single=True)

    def key(self, name: str) -> str:
        """Where directory ``name`` is configured: ``directory`` or ``directories.<name>``."""
        return "directory" if self.single else f"directories.{name}"

    def accounts(self) -> list[str]:
        """The directories that hold people (found by Okta's identifier): every one without ``join``."""
        return [name for name, config in self.named.items() if config.join is None]

    def role(self, name: str) -> DirectoryRole:
        """What directory ``name`` is to an answer: an outage of an ``accounts`` one costs its people's
        whole answers, of a ``joined`` one only its part of them."""
        return "accounts" if self.named[name].join is None else "joined"

    def problem(self) -> str | None:
        """What makes this set unusable (checked with the configuration), or None."""
        if self.single:
            if self.named[DEFAULT_NAME].join is not None:
                return "directory.join: a join needs several directories (directories:)"
            return None
        if not self.named:
            return "directories: name at least one directory"
        for name in self.named:
            if not DIRECTORY_NAME.match(name):
                return (
                    f"directories: {name[:40]!r} is not a directory name: lower-case letters, digits, - and _, "
                    "starting with a letter, at most 32 characters"
                )
        if not self.accounts():
            return "directories: at least one directory must hold people (have no join)"
        return None


@dataclass(frozen=True)
class ServerAddress:
    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> ServerAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
            raise ValueError(f"{url!r} is not an ldap:// or ldaps:// URL with a host")
        if parts.path not in ("", "/") or parts.query:
            raise ValueError(f"{url!r}: put the base DN in user_search.base_dn, not in the URL")
        tls = parts.scheme == "ldaps"
        return cls(parts.hostname, parts.port or (636 if tls else 389), tls)

    @property
    def name(self) -> str:
        """``host:port``: how the server appears in metrics, spans and logs."""
        return f"{self.host}:{self.port}"
