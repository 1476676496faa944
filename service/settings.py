"""The configuration: one YAML file, validated into one object before the service starts.

Secrets never live in the file: it names the environment variables or files that hold them, and
:func:`load_secrets` reads those at startup. Any problem stops the service with a message that names
the key and the reason, e.g. ``hooks.token.id_token.groups: 'groups' is a claim Okta reserves``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from service.directory import DirectoryConfig
from service.mapping import MappingRule
from service.oauth import OAuthConfig
from service.okta import RESERVED_CLAIMS, HookType
from service.okta.commands import ACCESS_TOKEN_MODIFIABLE
from service.policy import FailureAction, FailurePolicy

#: Okta gives up after 3 s; the answer must leave before that, network time included.
OKTA_TIMEOUT_SECONDS = 3.0

AttributeMap = dict[str, MappingRule]


class ConfigError(Exception):
    """The configuration cannot be used. The message is meant for the operator and holds no secret."""


class _Section(BaseModel):
    """Strict types: ``ops_port: "9090"`` or ``start_tls: "no"`` is a mistake in the YAML that must stop
    the service naming the key, not be guessed into a number or a boolean. The document is validated
    as JSON (see :func:`parse_settings`), where strict mode still reads enums from their string values
    and lists as tuples."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ServerSettings(_Section):
    host: str = "0.0.0.0"
    hook_port: int = Field(8080, ge=1, le=65535)
    #: /livez, /readyz and /metrics: a separate port, so an Ingress for Okta never exposes them.
    ops_port: int = Field(9090, ge=1, le=65535)

    @model_validator(mode="after")
    def _distinct_ports(self) -> ServerSettings:
        if self.hook_port == self.ops_port:
            raise ValueError("hook_port and ops_port must differ")
        return self


class AuthSettings(_Section):
    #: The header Okta sends the secret in (``authScheme.key`` of the inline hook).
    header: str = Field("Authorization", min_length=1)
    #: Environment variables, each holding one accepted secret.
    secret_env: tuple[str, ...] = ()
    #: Files, each holding one accepted secret (a mounted Kubernetes Secret); trailing newlines ignored.
    secret_files: tuple[str, ...] = ()
    #: Okta's OAUTH channel: bearer tokens from this authorization server. With secrets configured too,
    #: either is accepted, so a hook can move from one to the other without downtime.
    oauth: OAuthConfig | None = None

    @model_validator(mode="after")
    def _has_a_source(self) -> AuthSettings:
        if not (self.secret_env or self.secret_files or self.oauth):
            raise ValueError("name at least one secret source in secret_env or secret_files, or configure oauth")
        return self


class CacheSettings(_Section):
    """How long the directory's answers are reused (README, "Answering from memory"). ``0`` turns each off.

    A change in the directory (a group removal) reaches Okta only after ``fresh_seconds``; stale
    entries are served only while the directory fails, never instead of a working directory.
    """

    #: An answer this young is served without asking the directory.
    fresh_seconds: float = Field(300, ge=0)
    #: While the directory fails (timeout, deadline, connection, server down; never when several
    #: entries match), an answer up to this old is served, outcome ``enriched_stale``. 0 or >= fresh_seconds.
    stale_seconds: float = Field(3600, ge=0)
    #: "No such user" is remembered this long (shorter: a user created in the directory shows up soon).
    negative_seconds: float = Field(60, ge=0)
    #: An entry requested within this many seconds of going stale is re-read in the background, so a hot
    #: user never waits on the directory. Capped at half of fresh_seconds.
    refresh_ahead_seconds: float = Field(30, ge=0)
    #: Least recently used entries are dropped beyond this many (per hook type; ~0.4 KB each).
    max_entries: int = Field(100_000, ge=0, le=10_000_000)
    #: An event Okta re-sends (same eventId, same user) within this many seconds gets the very same
    #: answer, when that answer came from the directory's data. Okta retries once, after its 3 s timeout.
    replay_seconds: float = Field(10, ge=0, le=3600)

    @model_validator(mode="after")
    def _consistent(self) -> CacheSettings:
        if self.stale_seconds and self.stale_seconds < self.fresh_seconds:
            raise ValueError("stale_seconds must be 0 (off) or at least fresh_seconds")
        return self


class HookBase(_Section):
    """What every hook type has: which identifier is looked up, and the deadline."""

    #: The hook type this section configures (each subclass names its own).
    hook_type: ClassVar[HookType]

    #: Which identifier of the Okta user is looked up in ``directory.user_search.match_attribute``.
    #: When the event lacks it, the other one is used.
    subject: Literal["login", "email"] = "login"
    #: Everything, directory included, is answered within this many seconds.
    deadline_seconds: float = Field(2.5, gt=0, lt=OKTA_TIMEOUT_SECONDS)
    #: When less than this is left of the deadline as the handler starts (the request queued behind
    #: others), the fallback is answered at once instead of starting a lookup that cannot finish.
    min_lookup_seconds: float = Field(0.1, ge=0)

    @model_validator(mode="after")
    def _lookup_fits_the_deadline(self) -> HookBase:
        if self.min_lookup_seconds >= self.deadline_seconds:
            raise ValueError("min_lookup_seconds must be less than deadline_seconds")
        return self

    def failure_policy(self) -> FailurePolicy:
        """What this hook answers when it cannot do its job (``service.policy``)."""
        return FailurePolicy.of(self.hook_type)

    def rule_sets(self) -> list[AttributeMap]:
        """The mapping rule sets of this hook type (none for password import)."""
        return []

    def rules(self) -> list[MappingRule]:
        """Every rule of this hook, whatever Okta name it feeds: what the directory must read."""
        return [rule for rules in self.rule_sets() for rule in rules.values()]


class HookSettings(HookBase):
    """The hook types that enrich: look the user up (through the cache) and map attributes."""

    #: What to answer when the directory is slow, down, failing, or matches several entries.
    on_directory_error: FailureAction = FailureAction.CONTINUE
    #: What to answer when the directory has no such user.
    on_unknown_user: FailureAction = FailureAction.CONTINUE
    #: Reuse of the directory's answers: freshness, stale-if-error, bound, Okta retries.
    cache: CacheSettings = CacheSettings()

    @model_validator(mode="after")
    def _answers_of_this_hook_type(self) -> HookSettings:
        self.failure_policy()  # raises when the hook type has no such answer (deny outside registration)
        return self

    def failure_policy(self) -> FailurePolicy:
        return FailurePolicy.of(self.hook_type, self.on_unknown_user, self.on_directory_error)


class RegistrationSettings(HookSettings):
    hook_type = HookType.REGISTRATION
    #: Shown to the person registering when the policy denies them.
    deny_message: str = Field("Registration cannot be completed at this time.", min_length=1)
    #: Okta profile attribute -> rule.
    profile: AttributeMap = Field(default_factory=dict)

    def rule_sets(self) -> list[AttributeMap]:
        return [self.profile]


class TokenSettings(HookSettings):
    hook_type = HookType.TOKEN
    #: Claims added to the ID token, when Okta mints one in the flow.
    id_token: AttributeMap = Field(default_factory=dict)
    #: Claims added to the access token, when Okta mints one in the flow.
    access_token: AttributeMap = Field(default_factory=dict)

    @field_validator("id_token", "access_token")
    @classmethod
    def _not_reserved(cls, claims: AttributeMap, info: Any) -> AttributeMap:
        allowed = ACCESS_TOKEN_MODIFIABLE if info.field_name == "access_token" else frozenset()
        for name in claims:
            if not name:
                raise ValueError("claim names must not be empty")
            if name in RESERVED_CLAIMS and name not in allowed:
                raise ValueError(f"{name!r} is a claim Okta reserves; a patch touching it is rejected by Okta")
        return claims

    def rule_sets(self) -> list[AttributeMap]:
        return [self.id_token, self.access_token]


class SamlSettings(HookSettings):
    hook_type = HookType.SAML
    #: SAML attribute statements added to (or replaced in) the assertion.
    attributes: AttributeMap = Field(default_factory=dict)

    def rule_sets(self) -> list[AttributeMap]:
        return [self.attributes]


class UserImportSettings(HookSettings):
    hook_type = HookType.USER_IMPORT
    #: Okta user profile attributes set on the imported user.
    profile: AttributeMap = Field(default_factory=dict)
    #: App user profile attributes (they reach the Okta profile through the app's mappings).
    app_user_profile: AttributeMap = Field(default_factory=dict)

    @field_validator("profile", "app_user_profile")
    @classmethod
    def _single_valued(cls, rules: AttributeMap) -> AttributeMap:
        for name, rule in rules.items():
            if rule.values == "all" or isinstance(rule.default, list):
                raise ValueError(f"{name}: Okta's import commands take one string per attribute; use values: first")
        return rules

    def rule_sets(self) -> list[AttributeMap]:
        return [self.profile, self.app_user_profile]


class PasswordImportSettings(HookBase):
    """Password import: Okta's ``username`` is looked up (never through the cache), then the password
    is checked by a bind as the user's DN. Every failure answers UNVERIFIED (Okta asks again at the next
    sign-in), so there is no failure action to choose. Needs TLS to the directory (see ``Settings``)."""

    hook_type = HookType.PASSWORD_IMPORT


class HooksSettings(_Section):
    """One section per hook type to answer; a type without a section has no endpoint."""

    registration: RegistrationSettings | None = None
    token: TokenSettings | None = None
    saml: SamlSettings | None = None
    user_import: UserImportSettings | None = None
    password_import: PasswordImportSettings | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> HooksSettings:
        if not self.enabled():
            raise ValueError("configure at least one of registration, token, saml, user_import, password_import")
        return self

    def enabled(self) -> dict[HookType, HookBase]:
        return {hook_type: section for hook_type in HookType if (section := getattr(self, hook_type.value)) is not None}


class LoggingSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    #: ``json`` lines for log collectors, ``console`` for people; ``auto`` picks console on a terminal.
    format: Literal["auto", "json", "console"] = "auto"


class Settings(_Section):
    server: ServerSettings = ServerSettings()
    auth: AuthSettings
    directory: DirectoryConfig
    hooks: HooksSettings
    logging: LoggingSettings = LoggingSettings()

    @model_validator(mode="after")
    def _groups_configured(self) -> Settings:
        if self.directory.groups is not None:
            return self
        for hook_type, section in self.hooks.enabled().items():
            for key, rules in zip(_rule_set_keys(section), section.rule_sets(), strict=True):
                for name, rule in rules.items():
                    if rule.source == "groups":
                        raise ValueError(
                            f"hooks.{hook_type.value}.{key}.{name}: source: groups needs a directory.groups section"
                        )
        return self

    @model_validator(mode="after")
    def _passwords_over_tls(self) -> Settings:
        """A password import sends the person's password to the directory in a bind: never in clear."""
        directory = self.directory
        plain = not directory.start_tls and any(not server.tls for server in directory.servers)
        if self.hooks.password_import is not None and plain:
            raise ValueError(
                "hooks.password_import: passwords go to the directory only over TLS; "
                "use ldaps:// URLs or set directory.start_tls"
            )
        return self


def _rule_set_keys(section: HookBase) -> list[str]:
    """The configuration keys of ``section.rule_sets()``, in the same order."""
    return [name for name, info in type(section).model_fields.items() if info.annotation == AttributeMap]


@dataclass(frozen=True)
class Secrets:
    hook_secrets: tuple[str, ...]
    bind_password: str


def load_settings(path: str | os.PathLike[str]) -> Settings:
    """Read and validate the YAML file at ``path``; :class:`ConfigError` names what is wrong."""
    source = Path(path)
    try:
        document = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{source}: cannot read the configuration file ({error.strerror})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}: not valid YAML{where}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: the configuration must be a YAML mapping of sections")
    return parse_settings(document, origin=str(source))


def parse_settings(document: Mapping[str, Any], origin: str = "configuration") -> Settings:
    """Validate ``document`` (YAML as loaded) in pydantic's JSON mode: strict about scalar types, while
    YAML's lists and strings still become tuples and enums. A value JSON cannot hold (a YAML date or
    timestamp, ``.nan``) is refused: no setting takes one."""
    try:
        text = json.dumps(document, allow_nan=False, default=_not_json)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{origin}: a value is not a string, number, boolean, list or mapping (a date or .nan? quote it)"
        ) from None
    try:
        return Settings.model_validate_json(text)
    except ValidationError as error:
        raise ConfigError(f"{origin}: " + "; ".join(_describe(item) for item in error.errors())) from None


def _not_json(value: object) -> object:
    raise TypeError("not a JSON value")


def load_secrets(settings: Settings, environ: Mapping[str, str] = os.environ) -> Secrets:
    """Read every secret the configuration points at. A missing variable or file is an error that
    names the key and the variable or path, never the value."""
    hook_secrets = [_from_env(environ, name, "auth.secret_env") for name in settings.auth.secret_env] + [
        _from_file(path, "auth.secret_files") for path in settings.auth.secret_files
    ]
    directory = settings.directory
    bind_password = ""
    if directory.bind_password_env:
        bind_password = _from_env(environ, directory.bind_password_env, "directory.bind_password_env")
        if not _is_utf8(bind_password):
            # The bind sends the password's exact bytes, which ldap3 can only do for UTF-8 text.
            raise ConfigError(f"directory.bind_password_env: {directory.bind_password_env} is not UTF-8 text")
    elif directory.bind_password_file:
        bind_password = _from_file(directory.bind_password_file, "directory.bind_password_file")
    return Secrets(tuple(hook_secrets), bind_password)


def _is_utf8(value: str) -> bool:
    """Whether ``value`` came from UTF-8 bytes (POSIX environment bytes that are not UTF-8 reach Python
    as lone surrogate escapes)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _from_env(environ: Mapping[str, str], name: str, key: str) -> str:
    value = environ.get(name, "")
    if not value:
        raise ConfigError(f"{key}: environment variable {name} is not set or empty")
    return value


def _from_file(path: str, key: str) -> str:
    try:
        value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as error:
        raise ConfigError(f"{key}: cannot read {path} ({error.strerror})") from None
    if not value:
        raise ConfigError(f"{key}: {path} is empty")
    return value


#: Keys of earlier versions, and what to write instead.
_REPLACED_KEYS = {
    "strip_domain": "replaced by strip_domains, the list of the company's own login domains "
    "(a login in any other domain matches nobody)",
}


def _describe(error: Mapping[str, Any]) -> str:
    """``hooks.token.id_token.groups: <reason>`` from one pydantic error, without echoing input values
    (a misplaced secret must not end up in the log)."""
    location = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-"))
    message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if error["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        key = str(error["loc"][-1]) if error["loc"] else ""
        message = _REPLACED_KEYS.get(key, "unknown key (check its spelling and section)")
    return f"{location or '(top level)'}: {message}"
