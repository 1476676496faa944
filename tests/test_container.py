"""The container images and their scanners: hadolint and checkov, plus the conventions of the
Dockerfile that no linter knows (same Python as CI, locked install, numeric user, exec entrypoint).

The production image is built and run in tests/test_image.py (buildah, no docker engine); here the dev
OpenLDAP's entrypoint script is run as a plain process against the system's slapd.

checkov lives in its own virtualenv (its pinned dependencies clash with the app's): set $CHECKOV_BIN
or install it at .venv-checkov (see .ci/checkov-requirements.txt).
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_tools import CHART_DIR, REPO_ROOT, ci_values_files, load_values, render_objects, write_helm_shim

DOCKERFILE = REPO_ROOT / "Dockerfile"
DEV_LDAP_DIR = REPO_ROOT / "deploy" / "dev" / "openldap"
DOCKERFILES = [DOCKERFILE, DEV_LDAP_DIR / "Dockerfile"]
HADOLINT = Path(sys.executable).parent / "hadolint"
CHECKOV_INSTALL = (
    "python3.11 -m venv .venv-checkov && .venv-checkov/bin/pip install -r .ci/checkov-requirements.txt "
    "(or point $CHECKOV_BIN at a checkov executable)"
)


# ------------------------------------------------------------------------------------ Dockerfile parsing


@functools.cache
def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        pending += " " + stripped.removesuffix("\\").strip()
        if not stripped.endswith("\\"):
            keyword, _, arguments = pending.strip().partition(" ")
            result.append((keyword.upper(), arguments.strip()))
            pending = ""
    return result


def stages(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its instructions (FROM included), in file order."""
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for keyword, arguments in instructions(path):
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", arguments, re.I)
            assert match, f"every stage is named: FROM {arguments}"
            current = found.setdefault(match.group(2), [])
        current.append((keyword, arguments))
    return found


def effective(path: Path, stage: str, keyword: str) -> str | None:
    """The last `keyword` value in effect for `stage`, following FROM <other stage> parents."""
    all_stages = stages(path)
    chain = []
    name: str | None = stage
    while name in all_stages:
        chain.append(name)
        name = all_stages[name][0][1].split()[0]
    value = None
    for name in reversed(chain):
        for key, arguments in all_stages[name]:
            if key == keyword:
                value = arguments
    return value


# ------------------------------------------------------------------------------------ hadolint


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_hadolint_passes(dockerfile: Path) -> None:
    result = subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    """Guards the test above against a hadolint that passes everything (wrong binary, no rules)."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nRUN pip install requests\nCMD python app.py\n")
    result = subprocess.run([str(HADOLINT), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    for rule in ("DL3007", "DL3008", "DL3013", "DL3025"):
        assert rule in result.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_ignored_rule_has_a_written_reason(dockerfile: Path) -> None:
    lines = dockerfile.read_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"\s*#\s*(hadolint ignore=|checkov:skip=)", line):
            if "checkov:skip=" in line:
                assert re.search(r"checkov:skip=CKV2?_DOCKER_\d+:\S.{10,}", line), f"line {number + 1}: reason"
            else:
                reason = lines[number - 1].strip() if number else ""
                assert reason.startswith("#") and len(reason) > 20, f"line {number + 1}: no reason above"


# ------------------------------------------------------------------------------------ conventions


def test_dockerfile_is_multi_stage_on_the_ci_python_minor() -> None:
    all_stages = stages(DOCKERFILE)
    assert list(all_stages)[-1] == "runtime", "the default (last) stage is the production image"
    assert {"build", "runtime-base", "dev", "runtime"} <= set(all_stages)
    bases = {s[0][1].split()[0] for s in all_stages.values()} - set(all_stages)
    (base,) = bases  # one base image for the build and the runtime (the venv is copied between them)
    match = re.fullmatch(r"python:(\d+)\.(\d+)-slim(-\w+)?", base)
    assert match, base
    assert (int(match.group(1)), int(match.group(2))) == sys.version_info[:2], "same Python minor as CI"
    requires = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert f">={match.group(1)}.{match.group(2)}" in requires
    build = " ".join(arguments for keyword, arguments in all_stages["build"] if keyword == "RUN")
    assert "--require-hashes -r requirements.lock" in build and build.count("--no-deps") == 2
    assert "--no-build-isolation ." in build  # built with the locked setuptools
    assert "requirements-dev.lock" not in DOCKERFILE.read_text()
    runtime_keywords = {keyword for stage in ("runtime-base", "runtime") for keyword, _ in all_stages[stage]}
    assert "RUN" in runtime_keywords and not any(
        "pip install" in a for k, a in all_stages["runtime-base"] if k == "RUN"
    )


def test_runtime_runs_as_numeric_user_with_an_exec_entrypoint() -> None:
    for stage in ("runtime", "dev"):
        assert effective(DOCKERFILE, stage, "USER") == "10001:10001"
    entrypoint = json.loads(effective(DOCKERFILE, "runtime", "ENTRYPOINT"))  # JSON = exec form
    command = json.loads(effective(DOCKERFILE, "runtime", "CMD"))
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["okta-ldap-hook"] and "okta-ldap-hook" in scripts
    # The chart passes the same arguments (the pod has no `command`, so the entrypoint stays PID 1).
    chart = render_objects().one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert command == chart["args"][:3] == ["serve", "--config", "/etc/okta-ldap-hook/config.yaml"]
    exposed = {int(port) for port in effective(DOCKERFILE, "runtime", "EXPOSE").split()}
    assert exposed == {port["containerPort"] for port in chart["ports"]}
    env = " ".join(a for k, a in instructions(DOCKERFILE) if k == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env  # read-only root fs, logs
    assert "HEALTHCHECK" not in {k for k, _ in instructions(DOCKERFILE)}  # Kubernetes uses probes
    dev = dict(stages(DOCKERFILE)["dev"][1:])
    assert dev["COPY"] == "--chown=10001:10001 service/ /app/service/" and "PYTHONPATH=/app" in dev["ENV"]


def _dockerignore_rules() -> list[tuple[bool, str]]:
    rules = []
    for line in (REPO_ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), line.lstrip("!").rstrip("/")))
    return rules


def in_build_context(path: str) -> bool:
    """Docker's .dockerignore semantics, enough for our file: the last matching rule wins, a rule
    matching a parent directory matches its contents."""
    included = True
    parts = path.split("/")
    for negated, pattern in _dockerignore_rules():
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        matched = any(
            fnmatch.fnmatch(candidate, pattern) or fnmatch.fnmatch(candidate, pattern.replace("**/", ""))
            for candidate in candidates
        )
        if matched:
            included = negated
    return included


def test_dockerignore_sends_only_what_the_dockerfiles_copy() -> None:
    for dockerfile in DOCKERFILES:
        for keyword, arguments in instructions(dockerfile):
            if keyword != "COPY" or "--from=" in arguments:
                continue
            sources = [a for a in arguments.split() if not a.startswith("--")][:-1]
            for source in sources:
                assert (REPO_ROOT / source).exists(), source
                files = (
                    [source]
                    if (REPO_ROOT / source).is_file()
                    else [str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / source).rglob("*.py")]
                )
                assert files and all(in_build_context(f) for f in files), f"{source} is excluded by .dockerignore"
    for secret_or_bulky in (
        ".git/HEAD",
        ".venv/pyvenv.cfg",
        ".venv-checkov/x",
        "tests/test_chart.py",
        "chart/x",
        "requirements-dev.lock",
        "service/__pycache__/x.pyc",
        ".env",
        "config.local.yaml",
    ):
        assert not in_build_context(secret_or_bulky), secret_or_bulky


# ------------------------------------------------------------------------------------ checkov


@functools.cache
def checkov_binary() -> str:
    candidate = os.environ.get("CHECKOV_BIN") or str(REPO_ROOT / ".venv-checkov" / "bin" / "checkov")
    if not (Path(candidate).is_file() and os.access(candidate, os.X_OK)):
        pytest.fail(f"checkov not found at {candidate}: {CHECKOV_INSTALL}")
    return candidate


def _checkov(args: list[str], *, path_prefix: Path | None = None) -> subprocess.Popen[str]:
    """Starts checkov with a JSON report for one framework (offline: no downloads, no API calls)."""
    env = os.environ | {
        "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",
        "BC_SKIP_MAPPING": "TRUE",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("BC_API_KEY", None)
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env['PATH']}"
    return subprocess.Popen(
        [checkov_binary(), "--skip-download", "--output", "json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )


CASES = {"default": None} | {p.name.removesuffix("-values.yaml"): p for p in ci_values_files()}


@pytest.fixture(scope="module")
def checkov_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The three checkov scans, run concurrently (about 3 s each on 2 cores):
    - kubernetes: the chart rendered for the default values and every ci/*-values.yaml, and the dev
      profile's manifests;
    - helm: checkov's own helm framework on the chart, through the helm shim over helm-python-sdk;
    - dockerfile: both Dockerfiles."""
    manifests = tmp_path_factory.mktemp("rendered")
    for name, values in CASES.items():
        (manifests / name).mkdir()
        (manifests / name / "manifests.yaml").write_text(render_objects(load_values(values)).as_yaml_stream())
    shutil.copy(REPO_ROOT / "deploy" / "dev" / "openldap.yaml", manifests / "dev-openldap.yaml")
    shim = write_helm_shim(tmp_path_factory.mktemp("helm-shim"))
    version = subprocess.run([str(shim), "version"], capture_output=True, text=True, timeout=60)
    assert 'Version:"v4.' in version.stdout  # what checkov's helm dependency check parses
    processes = {
        "kubernetes": _checkov(["--framework", "kubernetes", "--directory", str(manifests)]),
        "helm": _checkov(["--framework", "helm", "--directory", str(CHART_DIR)], path_prefix=shim.parent),
        "dockerfile": _checkov(["--framework", "dockerfile", *[a for d in DOCKERFILES for a in ("--file", str(d))]]),
    }
    reports = {}
    for framework, process in processes.items():
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode in (0, 1), f"checkov {framework}: {stderr[-3000:]}"
        reports[framework] = json.loads(stdout)
        assert isinstance(reports[framework], dict), "one framework, one report"
    return reports


def assert_clean(report: dict[str, Any], *, check_type: str, resources: set[str]) -> None:
    """No failure; and proof that checkov scanned what we meant (the silent-pass trap: with no runner
    or nothing parsed it reports zero failures and exits 0)."""
    assert report.get("check_type") == check_type, report.get("summary", report)
    summary = report["summary"]
    results = report["results"]
    failed = [(c["check_id"], c["resource"], c["file_path"]) for c in results["failed_checks"]]
    assert summary["failed"] == 0 and not failed, failed
    assert summary["parsing_errors"] == 0 and not results.get("parsing_errors")
    assert summary["passed"] >= 40 and summary["resource_count"] >= len(resources)
    scanned = {c["resource"] for c in results["passed_checks"]}
    assert resources <= scanned, resources - scanned
    for skipped in results["skipped_checks"]:
        reason = skipped["check_result"].get("suppress_comment") or ""
        assert len(reason) > 20, f"{skipped['check_id']} on {skipped['resource']} is skipped without a reason"


def test_checkov_kubernetes_on_every_chart_render_and_the_dev_manifests(
    checkov_reports: dict[str, Any],
) -> None:
    report = checkov_reports["kubernetes"]
    assert_clean(
        report,
        check_type="kubernetes",
        resources={
            "Deployment.okta.okta-ldap-hook",
            "Pod.okta.okta-ldap-hook-test-hook",
            "Service.okta.okta-ldap-hook",
            "Ingress.okta.okta-ldap-hook",
            "Deployment.okta-ldap-hook-dev.okta-ldap-hook-dev-ldap",
        },
    )
    files = {c["file_path"].split("/")[1] for c in report["results"]["passed_checks"]}
    assert set(CASES) | {"dev-openldap.yaml"} <= files, "every render was scanned"


def test_checkov_helm_framework_through_the_helm_shim(checkov_reports: dict[str, Any]) -> None:
    assert_clean(
        checkov_reports["helm"],
        check_type="helm",
        resources={
            "Deployment.okta.okta-ldap-hook",
            "Service.okta.okta-ldap-hook",
            "Pod.okta.okta-ldap-hook-test-hook",
        },
    )


def test_checkov_dockerfiles(checkov_reports: dict[str, Any]) -> None:
    report = checkov_reports["dockerfile"]
    assert_clean(report, check_type="dockerfile", resources={f"{DOCKERFILE}.USER", f"{DOCKERFILES[1]}.USER"})
    assert {c["check_id"] for c in report["results"]["skipped_checks"]} == {"CKV_DOCKER_2"}  # HEALTHCHECK only


# ------------------------------------------------------------------------------------ dev OpenLDAP


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_dev_openldap_entrypoint_serves_the_demo_directory(tmp_path: Path) -> None:
    """deploy/dev/openldap/entrypoint.sh, run as in the container but as a plain process: it seeds the
    demo LDIF and the service account can bind and read memberOf (dynlist), as the dev profile needs."""
    from ldap3 import Connection, Server

    assert shutil.which("slapd", path="/usr/sbin:/usr/local/sbin:" + os.environ["PATH"]), (
        "slapd is needed: apt-get install -y slapd ldap-utils"
    )
    port = _free_port()
    env = os.environ | {
        "PATH": "/usr/sbin:/usr/local/sbin:" + os.environ["PATH"],
        "DEV_LDAP_CONF_DIR": str(DEV_LDAP_DIR),
        "DEV_LDAP_STATE_DIR": str(tmp_path / "state"),
        "DEV_LDAP_LDIF": str(REPO_ROOT / "service" / "demo" / "data" / "demo.ldif"),
        "DEV_LDAP_PORT": str(port),
        "DEV_LDAP_BIND_ADDRESS": "127.0.0.1",
    }
    process = subprocess.Popen(
        ["sh", str(DEV_LDAP_DIR / "entrypoint.sh")], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        values = load_values(REPO_ROOT / "deploy" / "dev" / "values.yaml")
        directory = values["config"]["directory"]
        deadline = time.monotonic() + 15
        while True:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            try:
                connection = Connection(
                    Server("127.0.0.1", port=port, connect_timeout=1),
                    directory["bind_dn"],
                    values["secret"]["bindPassword"],
                    auto_bind=True,
                )
                break
            except Exception:
                assert time.monotonic() < deadline, "dev OpenLDAP did not start"
                time.sleep(0.1)
        search = directory["user_search"]
        connection.search(
            search["base_dn"],
            f"(&{search['filter']}({search['match_attribute']}=carol.chen@example.com))",
            attributes=["mail", "memberOf", "departmentNumber", "userPassword"],
        )
        (entry,) = connection.entries
        assert entry.departmentNumber.value == "Engineering"
        assert "cn=engineering,ou=groups,dc=example,dc=com" in entry.memberOf.values
        assert not entry.userPassword.values  # the service account cannot read passwords
        connection.unbind()
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()


def test_dev_openldap_manifest_matches_the_image() -> None:
    manifest = [d for d in yaml.safe_load_all((REPO_ROOT / "deploy" / "dev" / "openldap.yaml").read_text()) if d]
    deployment = next(d for d in manifest if d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    dockerfile = DOCKERFILES[1]
    assert effective(dockerfile, list(stages(dockerfile))[-1], "USER") == "10002:10002"
    assert container["securityContext"]["runAsUser"] == 10002
    assert {p["containerPort"] for p in container["ports"]} == {
        int(p) for p in effective(dockerfile, list(stages(dockerfile))[-1], "EXPOSE").split()
    }
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == "/var/lib/okta-ldap-hook-dev"  # DEV_LDAP_STATE_DIR default
    assert mount["mountPath"] in (DEV_LDAP_DIR / "entrypoint.sh").read_text()


# ------------------------------------------------------------------------------------ read-only root fs


def test_service_runs_on_a_read_only_root_filesystem(tmp_path: Path) -> None:
    """As in the pod: the chart's config, secrets as read-only files, the root filesystem read-only
    and one writable emptyDir-like tmpfs (TMPDIR/HOME). Done in a private mount namespace (root in CI);
    the service must answer its probes and a hook call, then exit 0 on SIGTERM."""
    import urllib.request

    hook_port, ops_port, closed_port = _free_port(), _free_port(), _free_port()
    values = {
        "secret": {"hookSecrets": ["ro-test-secret"]},
        "config": {"directory": {"urls": [f"ldap://127.0.0.1:{closed_port}"]}},  # nothing listens there
    }
    config = yaml.safe_load(render_objects(values).one("ConfigMap")["data"]["config.yaml"])
    (tmp_path / "hook-secret-1").write_text("ro-test-secret\n")
    config["server"] |= {"host": "127.0.0.1", "hook_port": hook_port, "ops_port": ops_port}
    config["auth"]["secret_files"] = [str(tmp_path / "hook-secret-1")]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    script = tmp_path / "ro.sh"
    script.write_text(
        "set -e\n"
        "mount -o remount,bind,ro /\n"
        "mount -t tmpfs -o size=64m,mode=1777 tmpfs /mnt\n"
        "cd /mnt\n"
        f'exec env TMPDIR=/mnt HOME=/mnt PYTHONDONTWRITEBYTECODE=1 "{sys.executable}" -m service serve '
        f'--config "{tmp_path / "config.yaml"}"\n'
    )
    process = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", str(script)],
        cwd=REPO_ROOT,
        env=os.environ | {"PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ops_port}/readyz", timeout=1) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "not ready on a read-only root filesystem"
                time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{ops_port}/livez", timeout=5) as response:
            assert response.status == 200
        event = {
            "eventType": "com.okta.user.pre-registration",
            "data": {"userProfile": {"login": "ro@example.invalid", "email": "ro@example.invalid"}},
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{hook_port}/hooks/registration",
            data=json.dumps(event).encode(),
            headers={"Authorization": "ro-test-secret", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # directory down: the fallback
            assert response.status == 200
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode(errors="replace")
    assert process.returncode == 0, output[-3000:]
    assert "Read-only file system" not in output
