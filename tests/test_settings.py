"""Configuration: the documented example is valid, and every bad file stops the service with a
message that names the key and the reason (and never a secret)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.config import DEMO_CONFIG, REPO

from service.settings import ConfigError, load_secrets, load_settings, parse_settings


def demo() -> dict[str, Any]:
    return yaml.safe_load(DEMO_CONFIG.read_text())


def with_change(path: str, value: Any) -> dict[str, Any]:
    """The demo config with the value at dotted ``path`` replaced (``...`` deletes it)."""
    config = copy.deepcopy(demo())
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return config


def error_of(config: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as raised:
        parse_settings(config, origin="config.yaml")
    return str(raised.value)


def test_the_documented_example_is_valid() -> None:
    settings = load_settings(DEMO_CONFIG)
    assert settings.hooks.registration.profile["managerEmail"].resolve == "mail"
    assert settings.directory.user_search.match_attribute == "mail"


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("directory", ..., "config.yaml: directory: Field required"),
        ("directory.user_search.base_dn", ..., "directory.user_search.base_dn: Field required"),
        ("directory.user_search.scope", "deep", "directory.user_search.scope: Input should be 'subtree' or 'one'"),
        (
            "directory.user_search.filter",
            "objectClass=person",
            "directory.user_search: filter must be one parenthesised",
        ),
        ("directory.user_search.match_attribute", "mail)(x", "match_attribute must be an attribute name"),
        ("directory.urls", [], "directory: urls must list at least one"),
        ("directory.urls", ["http://dc1.example.com"], "is not an ldap:// or ldaps:// URL"),
        ("directory.urls", ["ldap://dc1.example.com/dc=example,dc=com"], "put the base DN in user_search.base_dn"),
        ("directory.pool_size", 0, "pool_size must be between 1 and 128"),
        ("directory.connect_timeout_seconds", 0, "connect_timeout_seconds must be greater than 0"),
        ("directory.bind_password_env", ..., "bind_dn needs bind_password_env or bind_password_file"),
        ("directory.bind_password", "hunter2", "directory.bind_password: unknown key"),
        ("directory.bogus", 1, "directory.bogus: unknown key (check its spelling and section)"),
        ("server.hook_port", 70000, "server.hook_port: Input should be less than or equal to 65535"),
        ("server.ops_port", 8080, "server: hook_port and ops_port must differ"),
        ("auth.secret_env", [], "auth: name at least one secret source"),
        ("auth.secret", "hunter2", "auth.secret: unknown key"),
        ("hooks", {}, "hooks: configure at least one of registration, token, saml, user_import"),
        (
            "hooks.registration.deadline_seconds",
            3.0,
            "hooks.registration.deadline_seconds: Input should be less than 3",
        ),
        (
            "hooks.registration.on_unknown_user",
            "block",
            "hooks.registration.on_unknown_user: Input should be 'continue' or 'deny'",
        ),
        (
            "hooks.token.on_directory_error",
            "deny",
            "hooks.token: on_directory_error: deny is only an answer for registration",
        ),
        ("hooks.token.id_token", {"groups": "memberOf"}, "hooks.token.id_token: 'groups' is a claim Okta reserves"),
        ("hooks.token.id_token", {"sub": "uid"}, "hooks.token.id_token: 'sub' is a claim Okta reserves"),
        (
            "hooks.user_import.profile",
            {"groups": {"attribute": "memberOf", "values": "all"}},
            "hooks.user_import.profile: groups: Okta's import commands take one string",
        ),
        (
            "hooks.registration.profile",
            {"title": {"attribute": "title", "transform": ["upper"]}},
            "hooks.registration.profile.title.transform.0: Input should be 'rdn', 'lower', 'guid' or 'sid'",
        ),
        (
            "hooks.registration.profile",
            {"title": {"from": "title"}},
            "hooks.registration.profile.title.from: unknown key",
        ),
        (
            "hooks.registration.profile",
            {"title": {"attribute": ""}},
            "hooks.registration.profile.title.attribute: String should have at least 1 character",
        ),
        ("hooks.saml.subject", "nameId", "hooks.saml.subject: Input should be 'login' or 'email'"),
        ("hooks.passwords", {}, "hooks.passwords: unknown key"),
        ("logging.level", "verbose", "logging.level: Input should be 'debug', 'info', 'warning' or 'error'"),
    ],
)
def test_each_config_error_names_the_key(path: str, value: Any, expected: str) -> None:
    assert expected in error_of(with_change(path, value))


def test_start_tls_with_ldaps_is_refused() -> None:
    config = with_change("directory.urls", ["ldaps://dc1.example.com"])
    config["directory"]["start_tls"] = True
    assert "directory: start_tls applies to ldap:// URLs" in error_of(config)


def test_access_token_may_change_aud_and_sub() -> None:
    config = with_change("hooks.token.access_token", {"sub": "uid"})
    assert parse_settings(config).hooks.token.access_token["sub"].attribute == "uid"


def test_a_misplaced_secret_is_not_echoed() -> None:
    message = error_of(with_change("directory.bind_password", "hunter2-secret-value"))
    assert "hunter2-secret-value" not in message


def test_yaml_errors_give_the_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("server:\n  hook_port: 8080\n   ops_port: [\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line 3"):
        load_settings(path)


@pytest.mark.parametrize("content", ["", "- a\n- b\n", "just text\n"])
def test_a_file_that_is_not_a_mapping(tmp_path: Path, content: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_settings(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_settings(tmp_path / "absent.yaml")


def test_secrets_from_env_and_files(tmp_path: Path) -> None:
    secret_file = tmp_path / "s2"
    secret_file.write_text("second\n")
    config = with_change("auth.secret_files", [str(secret_file)])
    settings = parse_settings(config)
    secrets = load_secrets(settings, {"OKTA_HOOK_SECRET": "first", "LDAP_BIND_PASSWORD": "pw"})
    assert [(s.name, s.read().value) for s in secrets.hook_secrets if not isinstance(s, str)] == [
        ("auth.secret_env[0]", "first"),
        ("auth.secret_files[0]", "second"),
    ]
    assert not isinstance(secrets.bind_password, str)
    assert (secrets.bind_password.name, secrets.bind_password.read().value) == ("directory.bind_password_env", "pw")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"LDAP_BIND_PASSWORD": "pw"}, "auth.secret_env: environment variable OKTA_HOOK_SECRET is not set or empty"),
        ({"OKTA_HOOK_SECRET": "", "LDAP_BIND_PASSWORD": "pw"}, "OKTA_HOOK_SECRET is not set or empty"),
        ({"OKTA_HOOK_SECRET": "s"}, "directory.bind_password_env: environment variable LDAP_BIND_PASSWORD is not set"),
    ],
)
def test_missing_secrets_name_the_variable(environ: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_secrets(parse_settings(demo()), environ)


def test_secret_files_missing_or_empty(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for path, expected in ((tmp_path / "absent", "cannot read"), (empty, "is empty")):
        config = with_change("directory.bind_password_env", ...)
        config["directory"]["bind_password_file"] = str(path)
        with pytest.raises(ConfigError, match=f"directory.bind_password_file: .*{expected}"):
            load_secrets(parse_settings(config), {"OKTA_HOOK_SECRET": "s"})


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=30
    )


def test_check_config_accepts_the_example() -> None:
    result = run_cli("check-config", str(DEMO_CONFIG))
    assert result.returncode == 0, result.stderr
    assert "valid; hooks: registration, token, saml, user_import" in result.stdout


def test_check_config_rejects_with_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(with_change("hooks.token.access_token", {"scp": "memberOf"})))
    result = run_cli("check-config", str(path))
    assert result.returncode == 2
    assert "hooks.token.access_token: 'scp' is a claim Okta reserves" in result.stderr


def test_serve_refuses_to_start_on_a_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(with_change("directory.user_search.base_dn", ...)))
    result = run_cli("serve", "--config", str(path))
    assert result.returncode == 2
    assert "configuration error" in result.stderr and "directory.user_search.base_dn: Field required" in result.stderr


def test_serve_refuses_to_start_without_its_secrets(tmp_path: Path) -> None:
    result = run_cli("serve", "--config", str(DEMO_CONFIG), env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "auth.secret_env: environment variable OKTA_HOOK_SECRET is not set or empty" in result.stderr
