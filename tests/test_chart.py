"""The Helm chart (chart/okta-ldap-hook) and the skaffold dev loop, without helm, kubectl or a cluster.

The chart is rendered with helm-python-sdk (Helm's Go SDK) for the default values and every
chart/okta-ldap-hook/ci/*-values.yaml, linted strictly, and every object is validated with
kubernetes-validate (strict: unknown fields fail) for the oldest and newest Kubernetes versions we
support. prometheus-operator objects have no bundled schema: their structure is checked here.
"""

from __future__ import annotations

import base64
import fnmatch
import functools
import glob
import http.server
import ipaddress
import json
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml
from chart_tools import (
    CHART_DIR,
    DEV_VALUES,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    REPO_ROOT,
    Rendered,
    ci_values_files,
    lint,
    load_values,
    render,
    render_objects,
)

from service import cli

CASES = {"default": None} | {path.name.removesuffix("-values.yaml"): path for path in ci_values_files()}
SEVERAL = "several-directories"  # ci/several-directories-values.yaml: corp and emea (AD), hr joined by employeeID
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
SECRET_DIR = "/var/run/secrets/okta-ldap-hook"


@functools.cache
def rendered(case: str) -> Rendered:
    return render_objects(load_values(CASES[case]))


@functools.cache
def case_values(case: str) -> dict[str, Any]:
    """The chart's default values with the case's values merged in (as Helm does)."""
    return _merge(yaml.safe_load((CHART_DIR / "values.yaml").read_text()), load_values(CASES[case]))


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def deployment(r: Rendered) -> dict[str, Any]:
    return r.one("Deployment")


def main_container(r: Rendered) -> dict[str, Any]:
    (container,) = deployment(r)["spec"]["template"]["spec"]["containers"]
    return container


def service_config(r: Rendered) -> dict[str, Any]:
    configmaps = [cm for cm in r.of_kind("ConfigMap") if "config.yaml" in cm.get("data", {})]
    assert len(configmaps) == 1
    return yaml.safe_load(configmaps[0]["data"]["config.yaml"])


def helm_test_pod(r: Rendered) -> dict[str, Any]:
    return r.one("Pod", hook=True)


def pod_specs(r: Rendered) -> list[dict[str, Any]]:
    return [deployment(r)["spec"]["template"]["spec"], *[p["spec"] for p in r.of_kind("Pod")]]


def container_ports(container: dict[str, Any]) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container["ports"]}


def mounted_file(spec: dict[str, Any], container: dict[str, Any], path: str) -> dict[str, Any]:
    """The volume source that provides file `path` in `container`, as {volume, key, kind, name} (kind
    "secret" or "configMap", name: the object's); a projected volume's sources are searched. Fails if none."""
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    for mount in container["volumeMounts"]:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(prefix):
            continue
        volume = volumes[mount["name"]]
        if "projected" in volume:
            sources = [(kind, s[kind]) for s in volume["projected"]["sources"] for kind in s]
        else:
            sources = [(kind, volume[kind]) for kind in ("secret", "configMap") if kind in volume]
        assert sources, f"{path} is on volume {mount['name']}, which is not a Secret/ConfigMap"
        found = [
            {"volume": volume, "key": item["key"], "kind": kind, "name": source.get("secretName") or source["name"]}
            for kind, source in sources
            for item in source.get("items", [])
            if item["path"] == path[len(prefix) :]
        ]
        assert len(found) <= 1, f"{path}: provided twice by volume {mount['name']}"
        if found:
            return found[0]
        raise AssertionError(f"{path}: volume {mount['name']} has no item with that path")
    raise AssertionError(f"{path} is not on any mounted volume")


def directory_sections(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The directory sections of a service config (or of chart values' `config`), by values path:
    {"config.directory": ...} for the one-directory form, {"config.directories.<name>": ...} otherwise."""
    if config.get("directories"):
        return {f"config.directories.{name}": section for name, section in config["directories"].items()}
    return {"config.directory": config["directory"]}


# ------------------------------------------------------------------------------------ values / schema


def _schema() -> dict[str, Any]:
    return json.loads((CHART_DIR / "values.schema.json").read_text())


def test_values_schema_is_valid_draft7_and_accepts_every_values_file() -> None:
    schema = _schema()
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load((CHART_DIR / "values.yaml").read_text()), schema)
    with helm.Chart.load(str(CHART_DIR)) as chart:
        for path in [*ci_values_files(), DEV_VALUES]:
            chart.validate_schema(load_values(path))


def _leaf_paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(value, dict) and value:
        return [path for key, sub in value.items() for path in _leaf_paths(sub, (*prefix, key))]
    return [prefix]


def _resolved(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """`node`, or the definition it is: a local $ref, or an allOf holding one (config.directory)."""
    if "$ref" in node:
        return schema["definitions"][node["$ref"].removeprefix("#/definitions/")]
    for part in node.get("allOf", []):
        if "$ref" in part:
            return _resolved(schema, part)
    return node


def test_values_schema_declares_every_value_and_closes_the_chart_own_objects() -> None:
    schema = _schema()
    for path in _leaf_paths(yaml.safe_load((CHART_DIR / "values.yaml").read_text())):
        node = schema
        for depth, key in enumerate(path):
            node = _resolved(schema, node)
            if "properties" not in node:
                # An open Kubernetes object (security context, probe fields...): validated by Kubernetes.
                assert "object" in node.get("type", ()) and depth >= 1, path
                break
            assert key in node["properties"], f"values.yaml key {'.'.join(path)} is not in values.schema.json"
            node = node["properties"][key]
    assert schema["definitions"]["directory"]["additionalProperties"] is False
    assert schema["additionalProperties"] is False
    for key in ("image", "secret", "config", "networkPolicy", "metrics", "ingress", "telemetry", "service"):
        assert schema["properties"][key]["additionalProperties"] is False, key


@pytest.mark.parametrize(
    "values, message",
    [
        ({"imagee": {"tag": "1"}}, "imagee"),
        ({"config": {"directory": {"bind_password": "s3cret"}}}, "bind_password"),
        ({"config": {"auth": {"secret_env": ["X"]}}}, "auth"),
        ({"config": {"hooks": {"registraton": {}}}}, "registraton"),
        ({"networkPolicy": {"ingress": {"hook": {"form": []}}}}, "form"),
        ({"image": {"digest": "latest"}}, "digest"),
    ],
)
def test_schema_rejects_typos_and_secrets_in_the_config(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=message):
        render_objects(values)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"config": {"directory": {"bind_dn": "cn=x,dc=example,dc=com"}}}, "secret.bindPassword"),
        ({"ldapCa": {"secretName": "a", "configMapName": "b"}}, "not both"),
        ({"config": {"hooks": {"registration": None}}}, "at least one"),
        ({"containerPorts": {"hook": 9090}}, "must differ"),
    ],
)
def test_inconsistent_values_fail_with_a_message(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=message):
        render_objects(values)


# ------------------------------------------------------------------------------------ lint / validate


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_helm_lint_strict(case: str, kube_version: str) -> None:
    report = lint(load_values(CASES[case]), strict=True, kube_version=f"v{kube_version}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 warning, 3 error
    assert report["errors"] == [] and problems == [], report
    assert report["total_charts_linted"] == 1


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_object_is_valid_kubernetes(case: str, kube_version: str) -> None:
    r = rendered(case)
    assert {"Deployment", "Service", "ConfigMap", "ServiceAccount", "Pod"} <= {o["kind"] for o in r.objects}
    for obj in r.objects:
        if obj["kind"] in CRD_KINDS:
            check_prometheus_operator_object(obj)
            continue
        kubernetes_validate.validate(obj, kube_version, strict=True)
        assert obj["metadata"]["namespace"] == NAMESPACE or obj["kind"] == "ConfigMap"


_DURATION = r"^([0-9]+(ms|s|m|h|d|w|y))+$"
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_SERVICE_MONITOR = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "jobLabel": {"type": "string"},
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": _LABELS, "matchExpressions": {"type": "array"}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": _DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": _DURATION},
                            "honorLabels": {"type": "boolean"},
                            "relabelings": {"type": "array", "items": {"type": "object"}},
                            "metricRelabelings": {"type": "array", "items": {"type": "object"}},
                        },
                    },
                },
            },
        },
    },
}
_PROMETHEUS_RULE = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": {"type": "string", "pattern": _DURATION},
                            "limit": {"type": "integer"},
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["expr"],
                                    "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
                                    "properties": {
                                        "record": {"type": "string", "pattern": "^[a-zA-Z_:][a-zA-Z0-9_:]*$"},
                                        "alert": {"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"},
                                        "expr": {"type": ["string", "integer"]},
                                        "for": {"type": "string", "pattern": _DURATION},
                                        "keep_firing_for": {"type": "string", "pattern": _DURATION},
                                        "labels": _LABELS,
                                        "annotations": _LABELS,
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    },
}


def check_prometheus_operator_object(obj: dict[str, Any]) -> None:
    """No CRD schema is bundled with kubernetes-validate: check the fields we use ourselves, plus the
    object metadata against a core kind's schema."""
    schema = _SERVICE_MONITOR if obj["kind"] == "ServiceMonitor" else _PROMETHEUS_RULE
    jsonschema.validate(obj, schema)
    kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]}, KUBE_VERSIONS[-1], strict=True
    )


# ------------------------------------------------------------------------------------ secrets


def secret_values(case: str) -> set[str]:
    """Every secret value of the render: the chart Secret's data and the secret.* values."""
    found = {
        base64.b64decode(value).decode()
        for secret in rendered(case).of_kind("Secret")
        for value in secret.get("data", {}).values()
    }
    secret = case_values(case)["secret"]
    found |= set(secret["hookSecrets"]) | ({secret["bindPassword"]} - {""})
    found |= set(secret.get("directoryBindPasswords", {}).values())
    return found


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [str(value)]


@pytest.mark.parametrize("case", CASES)
def test_no_secret_value_in_configmaps_env_args_or_annotations(case: str) -> None:
    r = rendered(case)
    secrets = secret_values(case)
    if not case_values(case)["secret"]["existingSecret"]:
        assert secrets, "the chart-created Secret holds the Okta secret(s)"
    exposed = [s for cm in r.of_kind("ConfigMap") for s in _strings(cm.get("data", {}))]
    for obj in r.objects:
        exposed += _strings(obj["metadata"].get("annotations", {}))
    for spec in pod_specs(r):
        for container in spec["containers"]:
            exposed += [s for s in container.get("args", []) + container.get("command", [])]
            for env in container.get("env", []):
                if "value" in env:
                    exposed.append(env["value"])
                    assert not re.search(r"SECRET(?!_FILE)|PASSWORD|TOKEN", env["name"]), env
                else:
                    assert set(env["valueFrom"]) <= {"fieldRef", "secretKeyRef"}, env
    for secret in secrets:
        assert not [text for text in exposed if secret in text], "a secret value leaked into a ConfigMap/env/args"
    config = service_config(r)
    assert "secret_env" not in config["auth"]
    for section in directory_sections(config).values():
        assert not {key for key in section if "password" in key} - {"bind_password_file"}


@pytest.mark.parametrize("case", CASES)
def test_secret_files_of_the_config_are_mounted_from_the_secret(case: str) -> None:
    r = rendered(case)
    spec = deployment(r)["spec"]["template"]["spec"]
    container = main_container(r)
    config = service_config(r)
    values = case_values(case)
    secret_name = values["secret"]["existingSecret"] or f"{RELEASE}"
    chart_secrets = r.of_kind("Secret")
    assert bool(chart_secrets) != bool(values["secret"]["existingSecret"])
    files = list(config["auth"]["secret_files"])
    rendered_sections = directory_sections(config)
    for key, section in directory_sections(values["config"]).items():
        if section.get("bind_dn"):
            files.append(rendered_sections[key]["bind_password_file"])
        else:
            assert "bind_password_file" not in rendered_sections[key]
    assert files and all(path.startswith(SECRET_DIR + "/") for path in files)
    for path in files:
        source = mounted_file(spec, container, path)
        assert source["volume"]["secret"]["secretName"] == secret_name
        for secret in chart_secrets:
            assert source["key"] in secret["data"], f"{path}: key {source['key']} not in the chart Secret"
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == SECRET_DIR)
    assert mount["readOnly"] is True


def test_existing_secret_rotation_keys_and_no_chart_secret() -> None:
    r = rendered("existing-secret")
    assert r.of_kind("Secret") == []
    assert service_config(r)["auth"] == {
        "header": "X-Okta-Hook-Secret",
        "secret_files": [f"{SECRET_DIR}/okta-secret-current", f"{SECRET_DIR}/okta-secret-next"],
    }
    assert service_config(r)["directory"]["bind_password_file"] == f"{SECRET_DIR}/ldap-password"
    annotations = deployment(r)["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/config" in annotations and "checksum/secret" not in annotations
    test_secret = helm_test_pod(r)["spec"]["volumes"][0]["secret"]
    assert test_secret["secretName"] == "okta-ldap-hook-credentials"
    assert test_secret["items"][0]["key"] == "okta-secret-current"


def test_default_values_generate_one_random_hook_secret() -> None:
    first, second = (render_objects().one("Secret")["data"] for _ in range(2))
    assert set(first) == {"hook-secret-1"}  # anonymous bind by default: no bind password
    assert len(base64.b64decode(first["hook-secret-1"])) == 40
    assert first != second  # random per install (kept on upgrades through lookup)
    assert "kubectl -n okta get secret okta-ldap-hook" in rendered("default").notes


# ------------------------------------------------------------------------------------ the config


@pytest.mark.parametrize("case", [*CASES, "dev"])
def test_rendered_config_passes_the_service_check_config(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = rendered(case) if case != "dev" else render_objects(load_values(DEV_VALUES))
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        next(cm for cm in r.of_kind("ConfigMap") if "config.yaml" in cm["data"])["data"]["config.yaml"]
    )
    # the command's own entry point, in-process (tests/test_check_config.py runs it as a process)
    code = cli.main(["check-config", str(config_file)])
    output = capsys.readouterr()
    assert code == 0, output.out + output.err
    assert "valid; hooks:" in output.out


@pytest.mark.parametrize("case", CASES)
def test_config_server_and_ca_parts_match_the_pod(case: str) -> None:
    r = rendered(case)
    config = service_config(r)
    ports = container_ports(main_container(r))
    assert config["server"] == {"host": "0.0.0.0", "hook_port": ports["hook"], "ops_port": ports["ops"]}
    assert config["auth"]["header"] == case_values(case)["okta"]["authHeader"]
    shared = case_values(case)["ldapCa"]
    for key, section in directory_sections(config).items():
        name = key.removeprefix("config.directories.") if key != "config.directory" else None
        ca = shared.get("directories", {}).get(name) or shared
        if ca.get("secretName") or ca.get("configMapName"):
            source = mounted_file(deployment(r)["spec"]["template"]["spec"], main_container(r), section["ca_file"])
            assert source["key"] == ca.get("key", "ca.crt")
            assert (source["kind"], source["name"]) in (
                ("secret", ca.get("secretName")),
                ("configMap", ca.get("configMapName")),
            )
        else:
            assert "ca_file" not in section, key
    assert main_container(r)["args"][:3] == ["serve", "--config", "/etc/okta-ldap-hook/config.yaml"]
    mounted_file(deployment(r)["spec"]["template"]["spec"], main_container(r), "/etc/okta-ldap-hook/config.yaml")


def test_ldaps_ca_from_a_secret_and_starttls_ca_from_a_configmap() -> None:
    ldaps = rendered("ldaps-ca")
    volume = next(v for v in deployment(ldaps)["spec"]["template"]["spec"]["volumes"] if v["name"] == "ldap-ca")
    assert volume["secret"] == {
        "secretName": "corp-ldap-ca",
        "items": [{"key": "ca-bundle.pem", "path": "ca.crt"}],
    }
    assert service_config(ldaps)["directory"]["ca_file"] == "/etc/ssl/okta-ldap-hook/ca.crt"
    starttls = rendered("starttls-ca-configmap")
    volume = next(v for v in deployment(starttls)["spec"]["template"]["spec"]["volumes"] if v["name"] == "ldap-ca")
    assert volume["configMap"]["name"] == "ldap-ca-bundle"
    assert service_config(starttls)["directory"]["start_tls"] is True


def test_checksum_annotation_rolls_pods_when_the_config_changes_not_the_secret() -> None:
    """A changed Secret needs no rollout: the service reads the mounted files again (issue 24)."""

    def checksums(values: dict[str, Any]) -> dict[str, str]:
        annotations = deployment(render_objects(values))["spec"]["template"]["metadata"]["annotations"]
        return {key: value for key, value in annotations.items() if key.startswith("checksum/")}

    base = {"secret": {"hookSecrets": ["first-secret"]}}
    assert set(checksums(base)) == {"checksum/config"}
    assert checksums(base) == checksums(base)  # deterministic
    assert checksums(base | {"config": {"logging": {"level": "debug"}}}) != checksums(base)
    assert checksums({"secret": {"hookSecrets": ["second-secret"]}}) == checksums(base)


# ------------------------------------------------------------------------------------ several directories

#: ConfigMap, Deployment and Secret as the chart rendered them before config.directories existed (issue 22),
#: for one-directory values: default (hook secret fixed), ldaps-ca (bind password and CA), existing-secret.
SINGLE_DIRECTORY_RENDERS = REPO_ROOT / "tests" / "data" / "chart-single-directory"


@pytest.mark.parametrize("case", ["default", "ldaps-ca", "existing-secret"])
def test_single_directory_values_render_byte_for_byte_as_before_several_directories(case: str) -> None:
    """Every existing one-directory installation upgrades to an identical ConfigMap, Deployment and Secret
    (so no rollout). The files were rendered by the chart before issue 22; regenerate them only for a
    change meant to alter these objects."""
    values = load_values(CASES[case]) if case != "default" else {"secret": {"hookSecrets": ["golden-okta-secret"]}}
    files = render(values)
    for template in ("configmap", "deployment", "secret"):
        text = files.get(f"okta-ldap-hook/templates/{template}.yaml", "")
        golden = SINGLE_DIRECTORY_RENDERS / f"{case}-{template}.yaml"
        if template == "secret" and case == "existing-secret":
            assert not golden.exists() and not text.strip()
        else:
            assert text == golden.read_text(), f"{case}: {template}.yaml differs from {golden.name}"


def several_values() -> dict[str, Any]:
    """A fresh copy of ci/several-directories-values.yaml, to change one thing in."""
    return load_values(CASES[SEVERAL])


def test_several_directories_each_password_and_ca_is_mounted_where_its_config_says() -> None:
    r = rendered(SEVERAL)
    config = service_config(r)
    values = case_values(SEVERAL)
    spec, container = deployment(r)["spec"]["template"]["spec"], main_container(r)
    assert "directory" not in config and set(config["directories"]) == {"corp", "emea", "hr"}
    chart_secret = r.one("Secret")
    passwords = values["secret"]["directoryBindPasswords"]
    for name, section in config["directories"].items():
        # Everything from the values unchanged; the chart adds only the two file paths.
        assert {k: v for k, v in section.items() if k not in ("bind_password_file", "ca_file")} == values["config"][
            "directories"
        ][name]
        assert section["bind_password_file"] == f"{SECRET_DIR}/bind-password-{name}"
        source = mounted_file(spec, container, section["bind_password_file"])
        assert (source["kind"], source["name"], source["key"]) == ("secret", RELEASE, f"bind-password-{name}")
        assert base64.b64decode(chart_secret["data"][source["key"]]).decode() == passwords[name]
    assert len(set(passwords.values())) == 3  # each file holds its own directory's password
    expected_ca = {
        "corp": ("/etc/ssl/okta-ldap-hook/corp/ca.crt", "secret", "corp-ldap-ca", "ca.pem"),
        "hr": ("/etc/ssl/okta-ldap-hook/hr/ca.crt", "configMap", "hr-ldap-ca", "ca.crt"),  # key by default
        "emea": ("/etc/ssl/okta-ldap-hook/ca.crt", "secret", "enterprise-root-ca", "ca-bundle.pem"),  # shared
    }
    for name, (path, kind, source_name, key) in expected_ca.items():
        assert config["directories"][name]["ca_file"] == path
        source = mounted_file(spec, container, path)
        assert (source["kind"], source["name"], source["key"]) == (kind, source_name, key)
    # NetworkPolicy: every directory's port; PrometheusRule: the same rules as with one directory.
    (policy,) = [np for np in r.of_kind("NetworkPolicy") if "helm.sh/hook" not in np["metadata"].get("annotations", {})]
    ldap_rule = next(rule for rule in policy["spec"]["egress"] if (10389, "TCP") in _rule_ports(rule))
    assert _rule_ports(ldap_rule) == {(3269, "TCP"), (636, "TCP"), (10389, "TCP")}
    source_rules = yaml.safe_load((REPO_ROOT / "dashboards" / "alerts.rules.yml").read_text())
    assert r.one("PrometheusRule")["spec"] == {"groups": source_rules["groups"]}


def test_several_directories_anonymous_and_without_ca_get_no_files() -> None:
    values = several_values()
    values["config"]["directories"]["hr"].pop("bind_dn")
    values["secret"]["directoryBindPasswords"].pop("hr")
    values["ldapCa"] = {"directories": {"corp": {"secretName": "corp-ldap-ca"}}}
    r = render_objects(values)
    directories = service_config(r)["directories"]
    assert "bind_password_file" not in directories["hr"] and "ca_file" not in directories["hr"]
    assert "ca_file" not in directories["emea"]  # no shared bundle: the system trust store
    assert directories["corp"]["ca_file"] == "/etc/ssl/okta-ldap-hook/corp/ca.crt"
    assert set(r.one("Secret")["data"]) == {"hook-secret-1", "bind-password-corp", "bind-password-emea"}
    (volume,) = [v for v in deployment(r)["spec"]["template"]["spec"]["volumes"] if v["name"] == "ldap-ca"]
    assert volume["projected"]["sources"] == [
        {"secret": {"name": "corp-ldap-ca", "items": [{"key": "ca.crt", "path": "corp/ca.crt"}]}}
    ]
    values["ldapCa"] = {"directories": {}}
    spec = deployment(render_objects(values))["spec"]["template"]["spec"]
    assert "ldap-ca" not in {v["name"] for v in spec["volumes"]}
    assert "ldap-ca" not in {m["name"] for m in spec["containers"][0]["volumeMounts"]}


def test_several_directories_passwords_from_existing_secret_keys() -> None:
    values = several_values()
    values["secret"] = {
        "existingSecret": "okta-ldap-hook-credentials",
        "existingSecretKeys": {
            "hookSecrets": ["okta-secret"],
            "directoryBindPasswords": {"corp": "corp-ldap-password", "emea": "emea-ldap-password", "hr": "hr-pw"},
        },
    }
    r = render_objects(values)
    assert r.of_kind("Secret") == []
    spec, container = deployment(r)["spec"]["template"]["spec"], main_container(r)
    for name, key in values["secret"]["existingSecretKeys"]["directoryBindPasswords"].items():
        path = service_config(r)["directories"][name]["bind_password_file"]
        assert path == f"{SECRET_DIR}/bind-password-{name}"
        assert mounted_file(spec, container, path) | {"volume": None} == {
            "volume": None,
            "kind": "secret",
            "name": "okta-ldap-hook-credentials",
            "key": key,
        }
    for kube_version in KUBE_VERSIONS:
        kubernetes_validate.validate(deployment(r), kube_version, strict=True)


def _without(path: str) -> Any:
    def change(values: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = values
        for key in parents:
            node = node[key]
        del node[last]

    return change


def _with(path: str, value: Any) -> Any:
    def change(values: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = values
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (
            _without("config.directory"),  # the chart's default directory stays: both forms
            r"^.*: config\.directory and config\.directories are both set: .*set config\.directory: null",
        ),
        (_with("config.directories", {}), "config.directory or config.directories: configure at least one"),
        (
            _without("secret.directoryBindPasswords.hr"),
            r"config\.directories\.hr\.bind_dn is set: provide "
            r"secret\.directoryBindPasswords\.hr ",
        ),
        (
            _with("secret.existingSecret", "creds"),  # existingSecretKeys.directoryBindPasswords names none
            r"config\.directories\.corp\.bind_dn is set: .* secret\.existingSecretKeys\.directoryBindPasswords\.corp$",
        ),
        (
            _with("secret.directoryBindPasswords.hrr", "typo"),
            r"secret\.directoryBindPasswords\.hrr: hrr is not a configured directory \(corp, emea, hr\)",
        ),
        (
            _with("ldapCa.directories.emae", {"secretName": "x"}),
            r"ldapCa\.directories\.emae: emae is not a configured directory",
        ),
        (_with("ldapCa.directories.hr.secretName", "hr-ca"), r"ldapCa\.directories\.hr: .*not both"),
        (_with("ldapCa.directories.emea", {"key": "ca.crt"}), r"ldapCa\.directories\.emea: set secretName or"),
        (
            _with("config.directories.emea.urls", ["ldap://dc1.emea.example.com"]),
            r"password_import: .*config\.directories\.emea\.start_tls",
        ),
    ],
)
def test_several_directories_inconsistent_values_fail_naming_the_key(change: Any, message: str) -> None:
    values = several_values()
    values["config"]["hooks"]["password_import"] = {"subject": "login"}
    change(values)
    with pytest.raises(helm.HelmRenderError, match=message):
        render_objects(values)


def test_password_import_allows_plain_ldap_to_a_joined_directory_only() -> None:
    """A joined directory (hr) holds no accounts: no password is ever sent to it."""
    values = several_values()
    values["config"]["hooks"]["password_import"] = {"subject": "login"}
    values["config"]["directories"]["hr"]["start_tls"] = False
    assert service_config(render_objects(values))["directories"]["hr"]["urls"] == ["ldap://hr.example.com:10389"]
    values["config"]["directories"]["hr"].pop("join")
    with pytest.raises(helm.HelmRenderError, match=r"config\.directories\.hr\.start_tls"):
        render_objects(values)


def test_directory_bind_passwords_need_the_several_directory_form() -> None:
    with pytest.raises(helm.HelmRenderError, match=r"secret\.directoryBindPasswords\.corp: .*none"):
        render_objects({"secret": {"directoryBindPasswords": {"corp": "x"}}})


@pytest.mark.parametrize(
    "change, message",
    [
        (_with("config.directories.Corp", {"urls": ["ldaps://x"], "user_search": {"base_dn": "dc=x"}}), "'Corp'"),
        (_with("config.directories.1hr", {"urls": ["ldaps://x"], "user_search": {"base_dn": "dc=x"}}), "'1hr'"),
        (
            _with("config.directories." + "a" * 33, {"urls": ["ldaps://x"], "user_search": {"base_dn": "dc=x"}}),
            "a" * 33,
        ),
        (_with("config.directories.hr.join.identifier", True), r"/config/directories/hr/join.*oneOf"),
        (_with("config.directories.hr.bind_password_file", "/x"), "bind_password_file"),
        (_with("secret.directoryBindPasswords.Hr", "x"), "'Hr'"),
        (
            _with("secret.existingSecretKeys.directoryBindPasswords.hr", ""),
            "/existingSecretKeys/directoryBindPasswords/hr",
        ),
        (_with("ldapCa.directories.hr", {"configMapName": "x", "path": "ca.crt"}), "path"),
    ],
)
def test_schema_rejects_bad_directory_names_and_keys(change: Any, message: str) -> None:
    values = several_values()
    change(values)
    with pytest.raises(helm.HelmValuesError, match=message):
        render_objects(values)


def test_schema_keeps_join_out_of_the_one_directory_form() -> None:
    with pytest.raises(helm.HelmValuesError, match="/config/directory/join"):
        render_objects({"config": {"directory": {"join": {"attribute": "employeeID"}}}})


def _documented_several_directory_values() -> dict[str, dict[str, Any]]:
    """The several-directory examples of values.yaml (commented out) and docs/install.md, as values."""
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    start = lines.index("  # directory: null")
    block = []
    for line in lines[start:]:
        if not line.startswith("  # ") or line.startswith("  # ..."):
            break
        block.append("  " + line[len("  # ") :])
    in_values = yaml.safe_load("config:\n" + "\n".join(block))
    in_values["secret"] = {"directoryBindPasswords": {"corp": "corp-password", "hr": "hr-password"}}
    install = (REPO_ROOT / "docs" / "install.md").read_text()
    section = install[install.index("## 5. Several directories") :]
    example = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert example is not None
    return {"values.yaml": in_values, "docs/install.md": yaml.safe_load(example.group(1))}


@pytest.mark.parametrize("where", ["values.yaml", "docs/install.md"])
def test_documented_several_directory_examples_render(where: str) -> None:
    values = _documented_several_directory_values()[where]
    r = render_objects(values)
    directories = service_config(r)["directories"]
    assert set(directories) == set(values["config"]["directories"]) == {"corp", "hr"}
    spec, container = deployment(r)["spec"]["template"]["spec"], main_container(r)
    for section in directories.values():
        mounted_file(spec, container, section["bind_password_file"])
    assert directories["hr"]["join"] == {"attribute": "employeeID"}


def test_several_directories_config_is_what_the_service_parses() -> None:
    """The contract with the service (service/settings.py): the rendered config.directories parses, each
    directory reading its own password file and CA bundle."""
    from service.settings import parse_settings

    config = service_config(rendered(SEVERAL))
    settings = parse_settings(config)
    directories = settings.directories
    assert set(directories) == {"corp", "emea", "hr"}
    for name, directory in directories.items():
        assert directory.bind_password_file == config["directories"][name]["bind_password_file"]
        assert directory.ca_file == config["directories"][name]["ca_file"]


# ------------------------------------------------------------------------------------ pods


@pytest.mark.parametrize("case", CASES)
def test_probes_use_the_ops_port_and_livez_readyz(case: str) -> None:
    container = main_container(rendered(case))
    ports = container_ports(container)
    assert set(ports) == {"hook", "ops"}
    expected = {"startupProbe": "/livez", "livenessProbe": "/livez", "readinessProbe": "/readyz"}
    for probe, path in expected.items():
        action = container[probe]["httpGet"]
        assert action["path"] == path
        assert action["port"] in ("ops", ports["ops"])
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60  # time to start before liveness


@pytest.mark.parametrize("case", CASES)
def test_one_process_per_pod_and_graceful_drain(case: str) -> None:
    r = rendered(case)
    spec = deployment(r)["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert "initContainers" not in spec
    assert container["args"][0] == "serve" and "command" not in container  # the image's entrypoint
    sleep = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep" and 5 <= int(sleep[1]) <= 10
    # preStop pause + the service's 10 s drain + trace flush must fit in the grace period.
    assert spec["terminationGracePeriodSeconds"] >= int(sleep[1]) + 10 + 2
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]


@pytest.mark.parametrize("case", CASES)
def test_restricted_security_context_everywhere(case: str) -> None:
    r = rendered(case)
    for spec in pod_specs(r):
        assert spec["automountServiceAccountToken"] is False
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["seccompProfile"] == {"type": "RuntimeDefault"}
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context.get("privileged", False) is False
            uid = context.get("runAsUser", pod.get("runAsUser"))
            assert isinstance(uid, int) and uid >= 10000
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert tmp and "emptyDir" in volumes[tmp[0]["name"]]
    for account in r.of_kind("ServiceAccount"):
        assert account["automountServiceAccountToken"] is False


def test_topology_spread_over_zones_and_nodes_with_the_pod_selector() -> None:
    spec = deployment(rendered("default"))["spec"]["template"]["spec"]
    selector = deployment(rendered("default"))["spec"]["selector"]["matchLabels"]
    keys = {c["topologyKey"] for c in spec["topologySpreadConstraints"]}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for constraint in spec["topologySpreadConstraints"]:
        assert constraint["labelSelector"]["matchLabels"] == selector
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"


@pytest.mark.parametrize("case", CASES)
def test_labels_selectors_and_service_ports(case: str) -> None:
    r = rendered(case)
    dep = deployment(r)
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/name": "okta-ldap-hook", "app.kubernetes.io/instance": RELEASE}
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    for obj in r.objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm" and "helm.sh/chart" in labels
    service = r.one("Service")
    assert service["spec"]["selector"] == selector
    names = container_ports(main_container(r))
    assert {p["name"]: p["targetPort"] for p in service["spec"]["ports"]} == {"hook": "hook", "ops": "ops"}
    assert all(p["targetPort"] in names for p in service["spec"]["ports"])
    test_labels = helm_test_pod(r)["metadata"]["labels"]
    assert not selector.items() <= test_labels.items(), "the helm test Pod must not join the Service"


# ------------------------------------------------------------------------------------ exposure


def hook_paths(case: str) -> set[str]:
    hooks = case_values(case)["config"]["hooks"]
    return {f"/hooks/{name.replace('_', '-')}" for name, section in hooks.items() if section is not None}


def test_ingress_exposes_only_the_configured_hook_paths() -> None:
    r = rendered("ingress-networkpolicy")
    ingress = r.one("Ingress")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "okta-hook.example.com"
    paths = rule["http"]["paths"]
    assert (
        {p["path"] for p in paths}
        == hook_paths("ingress-networkpolicy")
        == {
            "/hooks/registration",
            "/hooks/token",
            "/hooks/saml",
            "/hooks/user-import",
        }
    )
    service_ports = {p["name"] for p in r.one("Service")["spec"]["ports"]}
    for path in paths:
        assert path["pathType"] == "Exact"
        assert path["backend"]["service"] == {"name": RELEASE, "port": {"name": "hook"}}
        assert path["backend"]["service"]["port"]["name"] in service_ports
    assert ingress["spec"]["tls"][0]["secretName"] == "okta-hook-tls"
    for url in (
        "https://okta-hook.example.com/hooks/registration",
        "https://okta-hook.example.com/hooks/user-import",
    ):
        assert url in r.notes
    assert rendered("default").of_kind("Ingress") == []


def _ldap_ports(urls: list[str]) -> set[int]:
    return {urlsplit(url).port or (636 if url.startswith("ldaps:") else 389) for url in urls}


def _rule_ports(rule: dict[str, Any]) -> set[tuple[int, str]]:
    return {(p["port"], p.get("protocol", "TCP")) for p in rule.get("ports", [])}


@pytest.mark.parametrize("case", CASES)
def test_networkpolicy_admits_every_port_in_use(case: str) -> None:
    r = rendered(case)
    values = case_values(case)
    policies = [np for np in r.of_kind("NetworkPolicy") if "helm.sh/hook" not in np["metadata"].get("annotations", {})]
    (policy,) = policies
    spec = policy["spec"]
    pod_labels = deployment(r)["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    ports = container_ports(main_container(r))
    ingress_ports = set().union(*(_rule_ports(rule) for rule in spec["ingress"]))
    assert {(ports["hook"], "TCP"), (ports["ops"], "TCP")} <= ingress_ports
    egress_ports = set().union(*(_rule_ports(rule) for rule in spec["egress"]))
    urls = [url for section in directory_sections(values["config"]).values() for url in section["urls"]]
    needed = {(53, "UDP"), (53, "TCP")} | {(p, "TCP") for p in _ldap_ports(urls)}
    endpoint = values["telemetry"]["otlpEndpoint"]
    if endpoint:
        parts = urlsplit(endpoint)
        needed.add((parts.port or (443 if parts.scheme == "https" else 4318), "TCP"))
    assert needed <= egress_ports, needed - egress_ports
    assert not [rule for rule in spec["egress"] if not rule.get("ports")], "no egress rule without ports"
    # The helm test Pod can reach the hook port, through its own policy and the service's.
    test_labels = helm_test_pod(r)["metadata"]["labels"]
    hook_rule = next(rule for rule in spec["ingress"] if (ports["hook"], "TCP") in _rule_ports(rule))
    if "from" in hook_rule:
        assert any(
            peer.get("podSelector", {}).get("matchLabels", {}).items() <= test_labels.items()
            and "namespaceSelector" not in peer
            and peer.get("podSelector")
            for peer in hook_rule["from"]
        )
    (test_policy,) = [np for np in r.of_kind("NetworkPolicy") if np not in policies]
    assert test_policy["spec"]["podSelector"]["matchLabels"].items() <= test_labels.items()
    assert (ports["hook"], "TCP") in set().union(*(_rule_ports(rule) for rule in test_policy["spec"]["egress"]))


def test_networkpolicy_sources_and_destinations_from_values() -> None:
    spec = next(
        np for np in rendered("ingress-networkpolicy").of_kind("NetworkPolicy") if "annotations" not in np["metadata"]
    )["spec"]
    hook_rule, ops_rule = spec["ingress"]
    assert hook_rule["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ingress-nginx"}
    assert ops_rule["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    ldap_rule = next(rule for rule in spec["egress"] if (10389, "TCP") in _rule_ports(rule))
    assert _rule_ports(ldap_rule) == {(10389, "TCP"), (636, "TCP")}
    assert ipaddress.ip_network(ldap_rule["to"][0]["ipBlock"]["cidr"])
    otlp_rule = next(rule for rule in spec["egress"] if (4318, "TCP") in _rule_ports(rule))
    assert otlp_rule["to"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "observability"}
    # Default: Okta's source is unknown, so the hook port is open; the ops port is not.
    default = next(np for np in rendered("default").of_kind("NetworkPolicy") if "annotations" not in np["metadata"])
    assert "from" not in default["spec"]["ingress"][0] and "from" in default["spec"]["ingress"][1]


# ------------------------------------------------------------------------------------ availability


def test_hpa_replaces_replicas_and_pdb_only_with_two_or_more_pods() -> None:
    scaled = rendered("ingress-networkpolicy")
    hpa = scaled.one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": RELEASE}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 8)
    assert "replicas" not in deployment(scaled)["spec"]
    for case in ("default", "ingress-networkpolicy"):
        pdb = rendered(case).one("PodDisruptionBudget")
        assert pdb["spec"]["maxUnavailable"] == 1
        assert pdb["spec"]["selector"] == deployment(rendered(case))["spec"]["selector"]
    single = rendered("starttls-ca-configmap")
    assert deployment(single)["spec"]["replicas"] == 1
    assert single.of_kind("PodDisruptionBudget") == []
    assert "WARNING: replicaCount is 1" in single.notes
    strategy = deployment(rendered("default"))["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0


# ------------------------------------------------------------------------------------ monitoring


DASHBOARDS = REPO_ROOT / "dashboards"


@pytest.mark.parametrize("name", ["okta-ldap-hook.json", "alerts.rules.yml"])
def test_chart_files_are_the_dashboards_files(name: str) -> None:
    """Helm reads only files inside the chart: files/ holds links to dashboards/ (followed by Helm)."""
    link = CHART_DIR / "files" / name
    assert link.is_symlink() and link.resolve() == (DASHBOARDS / name).resolve(), f"{link} -> dashboards/{name}"
    assert link.read_bytes() == (DASHBOARDS / name).read_bytes()


def test_packaged_chart_holds_the_dashboard_files_and_no_ci_values(tmp_path: Path) -> None:
    """helm package follows the links: a published chart needs no repository checkout."""
    import tarfile

    package = helm.package(str(CHART_DIR), destination=str(tmp_path))
    with tarfile.open(package) as archive:
        names = set(archive.getnames())
        for name in ("okta-ldap-hook.json", "alerts.rules.yml"):
            member = archive.getmember(f"okta-ldap-hook/files/{name}")
            assert member.isfile()
            assert archive.extractfile(member).read() == (DASHBOARDS / name).read_bytes()  # type: ignore[union-attr]
    assert {"okta-ldap-hook/values.schema.json", "okta-ldap-hook/templates/tests/test-hook.yaml"} <= names
    assert not [name for name in names if "/ci/" in name]


def test_service_monitor_scrapes_the_ops_port_of_the_service() -> None:
    r = rendered("monitoring")
    monitor = r.one("ServiceMonitor")
    service = r.one("Service")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "ops" and endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("15s", "5s")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    # job="okta-ldap-hook" whatever the release name: the alert rules select on it.
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "okta-ldap-hook"
    assert 'job="okta-ldap-hook"' in (DASHBOARDS / "alerts.rules.yml").read_text()
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_prometheus_rule_is_the_alert_rules_file() -> None:
    rule = rendered("monitoring").one("PrometheusRule")
    source = yaml.safe_load((DASHBOARDS / "alerts.rules.yml").read_text())
    assert rule["spec"] == {"groups": source["groups"]}
    assert any("alert" in r for group in source["groups"] for r in group["rules"])
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_dashboard_configmap_for_the_grafana_sidecar() -> None:
    r = rendered("monitoring")
    (dashboard,) = [cm for cm in r.of_kind("ConfigMap") if "okta-ldap-hook.json" in cm["data"]]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["annotations"]["grafana_folder"] == "Identity"
    assert json.loads(dashboard["data"]["okta-ldap-hook.json"]) == json.loads(
        (DASHBOARDS / "okta-ldap-hook.json").read_text()
    )
    assert len(json.dumps(dashboard).encode()) < 1024 * 1024  # ConfigMap limit
    assert {"ServiceMonitor", "PrometheusRule"}.isdisjoint(o["kind"] for o in rendered("default").objects)


# ------------------------------------------------------------------------------------ helm test


class _StubHook(http.server.BaseHTTPRequestHandler):
    answer: tuple[int, bytes] = (200, b"{}")
    seen: list[dict[str, Any]] = []  # noqa: RUF012

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        status, payload = type(self).answer
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


def _run_helm_test_pod(pod: dict[str, Any], tmp_path: Path, answer: tuple[int, bytes]) -> subprocess.CompletedProcess:
    """Runs the test Pod's script locally against a stub of the service."""
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    secret_file = tmp_path / "hook-secret"
    secret_file.write_text("the-okta-secret\n")
    _StubHook.answer, _StubHook.seen = answer, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StubHook)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        path = urlsplit(env["HOOK_URL"]).path
        env |= {
            "HOOK_URL": f"http://127.0.0.1:{server.server_address[1]}{path}",
            "SECRET_FILE": str(secret_file),
        }
        return subprocess.run(
            [sys.executable, *container["command"][1:], *container["args"]],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "answer, passes",
    [
        ((200, b"{}"), True),
        ((200, b'{"commands": [{"type": "com.okta.user.profile.update", "value": {}}]}'), True),
        ((401, b'{"error": "unauthorized"}'), False),
        ((500, b"{}"), False),
        ((200, b"not json"), False),
        ((200, b'{"debugContext": {"outcome": "no_match"}}'), True),
        ((200, b'{"message": "not an Okta answer"}'), False),
    ],
)
def test_helm_test_pod_posts_a_sample_event_with_the_secret_header(
    answer: tuple[int, bytes], passes: bool, tmp_path: Path
) -> None:
    r = rendered("existing-secret")  # custom header, token hook
    pod = helm_test_pod(r)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["containers"][0]["image"] == main_container(r)["image"]  # no extra image
    assert pod["spec"]["restartPolicy"] == "Never"
    result = _run_helm_test_pod(pod, tmp_path, answer)
    assert (result.returncode == 0) is passes, result.stdout + result.stderr
    (request,) = _StubHook.seen
    assert request["path"] == "/hooks/token"
    assert request["headers"]["X-Okta-Hook-Secret"] == "the-okta-secret"
    assert "the-okta-secret" not in result.stdout + result.stderr


@pytest.mark.parametrize("hook_type", ["registration", "token", "saml", "user_import"])
def test_helm_test_sample_event_is_accepted_by_the_service_parser(hook_type: str) -> None:
    from service.hooks.registry import HookType
    from service.okta import parse_event

    hooks = {name: ({} if name == hook_type else None) for name in ("registration", "token", "saml", "user_import")}
    pod = helm_test_pod(render_objects({"config": {"hooks": hooks}}))
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert urlsplit(env["HOOK_URL"]).path == HookType(hook_type).path
    assert env["HOOK_URL"].startswith(f"http://{RELEASE}.{NAMESPACE}.svc:80/")
    event = parse_event(env["EVENT"].encode(), HookType(hook_type))
    assert "helm-test@example.invalid" in (event.subject.login, event.subject.email)


def test_helm_test_pod_passes_against_the_real_service_with_the_chart_config(
    slapd: Any, start_in_process: Any, tmp_path: Path
) -> None:
    """End to end, minus Kubernetes: the service runs the ConfigMap the chart renders for the dev
    values (all four hook types, an authenticated bind) against the demo slapd, with the mounted files
    replaced by local ones; the helm test script then passes for every hook type."""
    values = load_values(DEV_VALUES)
    config = service_config(render_objects(values))
    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir()
    files = {Path(p).name: p for p in [*config["auth"]["secret_files"], config["directory"]["bind_password_file"]]}
    (secret_dir / "hook-secret-1").write_text(values["secret"]["hookSecrets"][0] + "\n")
    (secret_dir / "bind-password").write_text(values["secret"]["bindPassword"] + "\n")
    assert set(files) == {"hook-secret-1", "bind-password"}
    config["auth"]["secret_files"] = [str(secret_dir / "hook-secret-1")]
    config["directory"] |= {"urls": [slapd.url], "bind_password_file": str(secret_dir / "bind-password")}
    service = start_in_process(config)  # the service's apps in this process, on real sockets
    for hook_type in ("registration", "token", "saml", "user_import"):
        hooks = {
            name: (values["config"]["hooks"][name] if name == hook_type else None) for name in values["config"]["hooks"]
        }
        (container,) = helm_test_pod(render_objects(_merge(values, {"config": {"hooks": hooks}})))["spec"]["containers"]
        env = {e["name"]: e["value"] for e in container["env"]}
        path = urlsplit(env["HOOK_URL"]).path
        env |= {"HOOK_URL": service.hook_url + path, "SECRET_FILE": str(secret_dir / "hook-secret-1")}
        result = subprocess.run(
            [sys.executable, *container["command"][1:], *container["args"]],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"{hook_type}: {result.stdout}{result.stderr}"
        assert result.stdout.startswith(f"OK: POST {service.hook_url}{path} answered 200")


# ------------------------------------------------------------------------------------ dev / skaffold


SKAFFOLD = REPO_ROOT / "skaffold.yaml"


def _closed(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "required": required or [],
    }


_STR, _BOOL, _INT = {"type": "string"}, {"type": "boolean"}, {"type": "integer"}
_STRS = {"type": "array", "items": _STR}
_STRMAP = {"type": "object", "additionalProperties": _STR}
# The parts of the skaffold/v4beta13 schema (docs-v2/content/en/schemas/v4beta13.json in the skaffold
# repository) that skaffold.yaml uses, closed like the real schema: an unknown or misspelt field fails.
_SYNC_RULE = _closed({"src": _STR, "dest": _STR, "strip": _STR}, ["src", "dest"])
_ARTIFACT = _closed(
    {
        "image": _STR,
        "context": _STR,
        "docker": _closed({"dockerfile": _STR, "target": _STR, "buildArgs": _STRMAP, "cliFlags": _STRS}),
        "sync": _closed({"manual": {"type": "array", "items": _SYNC_RULE}, "infer": _STRS, "auto": _BOOL}),
        "requires": {"type": "array"},
        "platforms": _STRS,
    },
    ["image"],
)
_BUILD = _closed(
    {
        "artifacts": {"type": "array", "items": _ARTIFACT, "minItems": 1},
        "local": _closed(
            {
                "push": _BOOL,
                "useBuildkit": _BOOL,
                "useDockerCLI": _BOOL,
                "concurrency": _INT,
                "tryImportMissing": _BOOL,
            }
        ),
        "tagPolicy": {"type": "object"},
        "platforms": _STRS,
    }
)
_HELM_RELEASE = _closed(
    {
        "name": _STR,
        "chartPath": _STR,
        "remoteChart": _STR,
        "valuesFiles": _STRS,
        "namespace": _STR,
        "version": _STR,
        "setValues": {"type": "object"},
        "setValueTemplates": {"type": "object"},
        "setFiles": _STRMAP,
        "createNamespace": _BOOL,
        "wait": _BOOL,
        "recreatePods": _BOOL,
        "skipBuildDependencies": _BOOL,
        "skipTests": _BOOL,
        "upgradeOnChange": _BOOL,
    },
    ["name"],
)
_DEPLOY = _closed(
    {
        "helm": _closed({"releases": {"type": "array", "items": _HELM_RELEASE}, "flags": {"type": "object"}}),
        "kubectl": _closed({"defaultNamespace": _STR, "flags": {"type": "object"}, "remoteManifests": _STRS}),
        "statusCheck": _BOOL,
        "statusCheckDeadlineSeconds": _INT,
        "kubeContext": _STR,
    }
)
_PORT_FORWARD = {
    "type": "array",
    "items": _closed(
        {
            "resourceType": {"enum": ["service", "pod", "deployment", "Service", "Pod", "Deployment"]},
            "resourceName": _STR,
            "namespace": _STR,
            "port": {"type": ["integer", "string"]},
            "address": _STR,
            "localPort": _INT,
        },
        ["resourceType", "resourceName", "port"],
    ),
}
_MANIFESTS = _closed({"rawYaml": _STRS, "kustomize": {"type": "object"}, "helm": {"type": "object"}})
SKAFFOLD_SCHEMA = _closed(
    {
        "apiVersion": {"enum": ["skaffold/v4beta13", "skaffold/v4beta14"]},
        "kind": {"const": "Config"},
        "metadata": _closed({"name": _STR, "labels": _STRMAP, "annotations": _STRMAP}),
        "build": _BUILD,
        "manifests": _MANIFESTS,
        "deploy": _DEPLOY,
        "portForward": _PORT_FORWARD,
        "profiles": {
            "type": "array",
            "items": _closed(
                {
                    "name": _STR,
                    "activation": {
                        "type": "array",
                        "items": _closed({"env": _STR, "kubeContext": _STR, "command": _STR}),
                    },
                    "build": _BUILD,
                    "manifests": _MANIFESTS,
                    "deploy": _DEPLOY,
                    "portForward": _PORT_FORWARD,
                    "patches": {"type": "array"},
                },
                ["name"],
            ),
        },
    },
    ["apiVersion", "kind", "build", "deploy"],
)


def _skaffold() -> dict[str, Any]:
    return yaml.safe_load(SKAFFOLD.read_text())


def _pipelines() -> dict[str, dict[str, Any]]:
    """The default pipeline and each profile's, with the profile's sections replacing the top level."""
    config = _skaffold()
    pipelines = {"default": {k: config[k] for k in ("build", "deploy", "portForward") if k in config}}
    for profile in config.get("profiles", []):
        pipelines[profile["name"]] = pipelines["default"] | {k: v for k, v in profile.items() if k != "name"}
    return pipelines


def test_skaffold_yaml_matches_the_v4beta_schema_subset() -> None:
    config = _skaffold()
    jsonschema.validate(config, SKAFFOLD_SCHEMA)
    dev = next(p for p in config["profiles"] if p["name"] == "dev")
    assert {"command": "dev"} in dev["activation"]  # `skaffold dev` uses the dev profile


def _sanitized(image: str) -> str:
    return re.sub(r"[/\-.:]", "_", image)


@pytest.mark.parametrize("pipeline", ["default", "dev"])
def test_skaffold_builds_and_deploys_consistently(pipeline: str) -> None:
    config = _pipelines()[pipeline]
    artifacts = {a["image"]: a for a in config["build"]["artifacts"]}
    assert "okta-ldap-hook" in artifacts and config["build"]["local"]["push"] is False
    for artifact in artifacts.values():
        dockerfile = REPO_ROOT / artifact.get("context", ".") / artifact["docker"]["dockerfile"]
        assert dockerfile.is_file(), dockerfile
        if "target" in artifact["docker"]:
            assert re.search(rf"^FROM \S+ AS {artifact['docker']['target']}$", dockerfile.read_text(), re.M)
        for rule in artifact.get("sync", {}).get("manual", []):
            matches = glob.glob(rule["src"], root_dir=REPO_ROOT / artifact.get("context", "."), recursive=True)
            assert matches and all(fnmatch.fnmatch(m, "*.py") for m in matches), rule
            # The dev image keeps the sources where sync writes them: COPY ... /app/service/.
            assert f"{rule['dest'].rstrip('/')}/service/" in dockerfile.read_text()
    (release,) = config["deploy"]["helm"]["releases"]
    assert (REPO_ROOT / release["chartPath"]) == CHART_DIR
    templates = release["setValueTemplates"]
    assert templates["image.repository"] == "{{.IMAGE_REPO_" + _sanitized("okta-ldap-hook") + "}}"
    assert templates["image.tag"].startswith("{{.IMAGE_TAG_okta_ldap_hook}}")
    values: dict[str, Any] = {
        "image": {"repository": "registry.local/okta-ldap-hook", "tag": "abc123@sha256:" + "0" * 64}
    }
    for path in release.get("valuesFiles", []):
        assert (REPO_ROOT / path).is_file()
        values = _merge(load_values(REPO_ROOT / path), values)
    r = render_objects(values, name=release["name"], namespace=release["namespace"])
    assert main_container(r)["image"] == "registry.local/okta-ldap-hook:abc123@sha256:" + "0" * 64
    service = r.one("Service")
    service_ports = {p["port"] for p in service["spec"]["ports"]}
    forwarded = [pf for pf in config["portForward"] if pf["resourceName"] == service["metadata"]["name"]]
    assert {pf["port"] for pf in forwarded} == service_ports  # hook and ops ports
    assert {pf["namespace"] for pf in forwarded} == {release["namespace"]}
    for obj in r.objects:
        if obj["kind"] not in CRD_KINDS:
            kubernetes_validate.validate(obj, KUBE_VERSIONS[-1], strict=True)
    if pipeline == "dev":
        _check_dev_environment(config, r, release)


def _check_dev_environment(config: dict[str, Any], r: Rendered, release: dict[str, Any]) -> None:
    manifests = [
        obj
        for path in config["manifests"]["rawYaml"]
        for obj in yaml.safe_load_all((REPO_ROOT / path).read_text())
        if obj
    ]
    for obj in manifests:
        kubernetes_validate.validate(obj, KUBE_VERSIONS[0], strict=True)
    images = {
        c["image"]
        for obj in manifests
        if obj["kind"] == "Deployment"
        for c in obj["spec"]["template"]["spec"]["containers"]
    }
    assert images <= {a["image"] for a in config["build"]["artifacts"]}, "skaffold replaces only artifact images"
    namespace = next(obj for obj in manifests if obj["kind"] == "Namespace")["metadata"]["name"]
    assert namespace == release["namespace"] == config["deploy"]["kubectl"]["defaultNamespace"]
    ldap_service = next(obj for obj in manifests if obj["kind"] == "Service")
    container = main_container(r)
    assert container["args"][-1] == "--reload"
    assert container["securityContext"]["readOnlyRootFilesystem"] is False  # skaffold sync writes to /app
    directory = service_config(r)["directory"]
    (url,) = directory["urls"]
    assert urlsplit(url).hostname == ldap_service["metadata"]["name"]
    assert urlsplit(url).port in {p["port"] for p in ldap_service["spec"]["ports"]}
    assert directory["bind_dn"] == "cn=okta-hook,ou=services,dc=example,dc=com"
    secret = r.one("Secret")
    assert base64.b64decode(secret["data"]["bind-password"]).decode() == "demo-bind-password"
    demo = yaml.safe_load((REPO_ROOT / "service" / "demo" / "data" / "demo-config.yaml").read_text())
    assert service_config(r)["hooks"] == demo["hooks"], "deploy/dev/values.yaml hooks drifted from the demo config"
    assert directory["user_search"] == demo["directory"]["user_search"]
