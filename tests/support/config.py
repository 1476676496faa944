"""Where the repository is, the hook secret the tests send, and service configurations built from the
demo configuration (the README's example) for a given directory URL."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from service.demo.slapd import SERVICE_BIND_DN

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO / "service/demo/data/demo-config.yaml"
SECRET = "test-hook-secret"


def directory_config(url: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "urls": [url],
        "bind_dn": SERVICE_BIND_DN,
        "bind_password_env": "LDAP_BIND_PASSWORD",
        "user_search": {
            "base_dn": "ou=people,dc=example,dc=com",
            "filter": "(objectClass=inetOrgPerson)",
            "match_attribute": "mail",
        },
        "pool_size": 4,
        "connect_timeout_seconds": 0.5,
        "operation_timeout_seconds": 1.0,
        "server_cooldown_seconds": 0.5,
        "health_check_interval_seconds": 1.0,
    }
    config.update(overrides)
    return config


def service_config(ldap_url: str, **sections: Any) -> dict[str, Any]:
    """The demo configuration (the README's example) pointed at ``ldap_url``, with ``sections``
    replacing or merging top-level sections."""
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    config["auth"] = {"header": "Authorization", "secret_env": ["OKTA_HOOK_SECRET"]}
    config["directory"] = directory_config(ldap_url)
    config["logging"] = {"level": "info", "format": "json"}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            merged = copy.deepcopy(config[key])
            merged.update(value)
            config[key] = merged
        else:
            config[key] = value
    return config
