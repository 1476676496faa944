"""The configuration: one YAML file, validated into one object before the service starts.

Secrets never live in the file: it names the environment variables or files that hold them, and
:func:`load_secrets` reads those at startup (a file is read again whenever it changes afterwards:
:mod:`service.secret_files`). Any problem stops the service with a message that names the key and the
reason, e.g. ``hooks.token.id_token.groups: 'groups' is a claim Okta reserves``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, ValidationInfo, create_model, field_validator, model_validator

from service.directory import DEFAULT_NAME, DirectoryConfig, DirectorySet
from service.hooks.config import HookSettings, Section
from service.hooks.registry import HookType
from service.oauth import OAuthConfig
from service.secret_files import Credential, Fixed, SecretFile, SecretFileError, Validator, ca_bundle_problem


class ConfigError(Exception):
    """The configuration cannot be used. The message is meant for the operator and holds no secret."""


class ServerSettings(Section):
    host: str = "0.0.0.0"
    hook_port: int = Field(8080, ge=1, le=65535)
    #: /livez, /readyz and /metrics: a separate port, so an Ingress for Okta never exposes them.
    ops_port: int = Field(9090, ge=1, le=65535)

    @model_validator(mode="after")
    def _distinct_ports(self) -> ServerSettings:
        if self.hook_port == self.ops_port:
            raise ValueError("hook_port and ops_port must differ")
        return self


class AuthSettings(Section):
    #: The header Okta sends the secret in (``authScheme.key`` of the inline hook).
    header: str = Field("Authorization", min_length=1)
    #: Environment variables, each holding one accepted secret.
    secret_env: tuple[str, ...] = ()
    #: Files, each holding one accepted secret (a mounted Kubernetes Secret); trailing newlines ignored.
    #: Read again when they change: rotating a secret is an edit of its file (or of the Secret).
    secret_files: tuple[str, ...] = ()
    #: Okta's OAUTH channel: bearer tokens from this authorization server. With secrets configured too,
    #: either is accepted, so a hook can move from one to the other without downtime.
    oauth: OAuthConfig | None = None

    @model_validator(mode="after")
    def _has_a_source(self) -> AuthSettings:
        if not (self.secret_env or self.secret_files or self.oauth):
            raise ValueError("name at least one secret source in secret_env or secret_files, or configure oauth")
        return self


class _HooksBase(Section):
    """One section per hook type to answer (``hooks.<name>``, one field per registered type, see
    :data:`HooksSettings`); a type without a section has no endpoint."""

    @model_validator(mode="after")
    def _at_least_one(self) -> _HooksBase:
        if not self.enabled():
            raise ValueError(f"configure at least one of {', '.join(HookType)}")
        return self

    @field_validator("*")
    @classmethod
    def _answers_of_this_hook_type(cls, section: HookSettings | None, info: ValidationInfo) -> HookSettings | None:
        if section is not None and info.field_name is not None:
            HookType.named(info.field_name).failure_policy(section)  # raises when the type has no such answer
        return section

    def enabled(self) -> dict[HookType, HookSettings]:
        return {hook_type: section for hook_type in HookType if (section := getattr(self, hook_type.value)) is not None}


#: ``hooks:``, one optional section per registered hook type, of that type's settings class.
HooksSettings = create_model(  # type: ignore[call-overload]
    "HooksSettings",
    __base__=_HooksBase,
    **{hook_type.value: (hook_type.settings | None, None) for hook_type in HookType},
)


class LoggingSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    #: ``json`` lines for log collectors, ``console`` for people; ``auto`` picks console on a terminal.
    format: Literal["auto", "json", "console"] = "auto"


class Settings(Section):
    server: ServerSettings = ServerSettings()
    auth: AuthSettings
    #: One directory (its name in metrics and debugContext: ``default``) ...
    directory: DirectoryConfig | None = None
    #: ... or several, by name (README, "Several directories"): exactly one of the two.
    directories: dict[str, DirectoryConfig] | None = None
    hooks: HooksSettings
    logging: LoggingSettings = LoggingSettings()

    @model_validator(mode="after")
    def _hooks_fit_the_directories(self) -> Settings:
        if self.directory is None and self.directories is None:
            raise ValueError("directory: Field required (or directories: several directories, by name)")
        if self.directory is not None and self.directories is not None:
            raise ValueError("directories: set directory (one directory) or directories (several), not both")
        directories = self.directory_set()
        problem = directories.problem()
        if problem is not None:
            raise ValueError(problem)
        for hook_type, section in self.enabled_hooks().items():
            found = section.directory_problem(directories)
            if found is not None:
                key, message = found
                raise ValueError(f"hooks.{hook_type.value}{'.' + key if key else ''}: {message}")
        return self

    def directory_set(self) -> DirectorySet:
        """Every directory by name: ``default`` for the ``directory:`` form."""
        if self.directory is not None:
            return DirectorySet.one(self.directory)
        return DirectorySet(dict(self.directories or {}), single=False)

    def enabled_hooks(self) -> dict[HookType, HookSettings]:
        """The configured hook types and their sections."""
        hooks: _HooksBase = self.hooks
        return hooks.enabled()


@dataclass(frozen=True)
class DirectorySecrets:
    """One directory's service account password and CA bundle."""

    bind_password: str | Credential = ""
    #: ``ca_file``, checked as a PEM bundle (None: the system's trust store).
    ca_bundle: SecretFile | None = None


@dataclass(frozen=True)
class Secrets:
    """The credentials the configuration points at. An environment variable's is its value at start;
    a file's is read again when the file changes (:class:`~service.secret_files.SecretFile`). A plain
    string is a fixed value (tests, benchmarks)."""

    hook_secrets: tuple[str | Credential, ...]
    #: The ``directory:`` form's bind password and CA; with ``directories:``, of every directory not in
    #: ``directories`` (tests and benchmarks whose directories share a service password).
    bind_password: str | Credential = ""
    ca_bundle: SecretFile | None = None
    #: Each named directory's own (the ``directories:`` form).
    directories: Mapping[str, DirectorySecrets] = field(default_factory=dict)

    def of(self, name: str) -> DirectorySecrets:
        """Directory ``name``'s credentials."""
        return self.directories.get(name) or DirectorySecrets(self.bind_password, self.ca_bundle)

    def files(self) -> list[SecretFile]:
        """Every credential that is a file, for telemetry to watch."""
        every = [*self.hook_secrets, self.bind_password, self.ca_bundle]
        for secrets in self.directories.values():
            every += [secrets.bind_password, secrets.ca_bundle]
        return [credential for credential in every if isinstance(credential, SecretFile)]


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
    """Read every secret the configuration points at, and the CA bundle. A missing variable, or a file
    that is missing, empty, not UTF-8 (or for the CA, not PEM certificates) is an error that names the
    key and the variable or path, never the value. Each credential is named after its key
    (``auth.secret_files[1]``): that name is what logs and metrics show of it."""
    auth = settings.auth
    hook_secrets: list[Credential] = [
        Fixed(_from_env(environ, name, "auth.secret_env"), f"auth.secret_env[{index}]")
        for index, name in enumerate(auth.secret_env)
    ]
    hook_secrets += [
        _from_file("auth.secret_files", path, f"auth.secret_files[{index}]")
        for index, path in enumerate(auth.secret_files)
    ]
    directories = settings.directory_set()
    loaded = {
        name: _directory_secrets(environ, directories.key(name), config) for name, config in directories.named.items()
    }
    if directories.single:
        default = loaded[DEFAULT_NAME]
        return Secrets(tuple(hook_secrets), default.bind_password, default.ca_bundle)
    return Secrets(tuple(hook_secrets), directories=loaded)


def _directory_secrets(environ: Mapping[str, str], prefix: str, directory: DirectoryConfig) -> DirectorySecrets:
    """One directory's bind password and CA bundle; ``prefix`` is where it is configured
    (``directory`` or ``directories.<name>``): errors and the credentials' names say it."""
    bind_password: str | Credential = ""
    if directory.bind_password_env:
        key = f"{prefix}.bind_password_env"
        value = _from_env(environ, directory.bind_password_env, key)
        if not _is_utf8(value):
            # The bind sends the password's exact bytes, which ldap3 can only do for UTF-8 text.
            raise ConfigError(f"{key}: {directory.bind_password_env} is not UTF-8 text")
        bind_password = Fixed(value, key)
    elif directory.bind_password_file:
        key = f"{prefix}.bind_password_file"
        bind_password = _from_file(key, directory.bind_password_file, key)
    ca = None
    if directory.ca_file:
        key = f"{prefix}.ca_file"
        ca = _from_file(key, directory.ca_file, key, ca_bundle_problem)
    return DirectorySecrets(bind_password, ca)


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


def _from_file(key: str, path: str, name: str, validate: Validator | None = None) -> SecretFile:
    try:
        return SecretFile(path, name, validate=validate)
    except SecretFileError as error:
        raise ConfigError(f"{key}: {error}") from None


#: Keys of earlier versions, and what to write instead.
_REPLACED_KEYS = {
    "strip_domain": "replaced by strip_domains, the list of the company's own login domains "
    "(a login in any other domain matches nobody)",
}


def _describe(error: Mapping[str, Any]) -> str:
    """``hooks.token.id_token.groups: <reason>`` from one pydantic error, without echoing input values
    (a misplaced secret must not end up in the log)."""
    location = ".".join(_key(part) for part in error["loc"] if not str(part).startswith("function-"))
    message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if error["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        key = str(error["loc"][-1]) if error["loc"] else ""
        message = _REPLACED_KEYS.get(key, "unknown key (check its spelling and section)")
    if not location and _KEYED.match(message):  # a check of the whole document that names its key itself
        return message
    return f"{location or '(top level)'}: {message}"


#: A message that starts with the key it is about: ``hooks.token.id_token.groups: ...``.
_KEYED = re.compile(r"^[a-z_][a-z0-9_.-]*: ")
#: A key as configuration keys are spelled; any other (a name under ``directories``, a rule's Okta name)
#: is quoted, cut to 40 characters: a control character in it must not reach the terminal or the log.
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _key(part: object) -> str:
    text = str(part)
    return text if _PLAIN_KEY.match(text) else repr(text[:40])
