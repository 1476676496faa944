"""Helpers for the chart and container tests: render the Helm chart without a helm binary, and a `helm`
stand-in for tools that shell out to one (checkov's helm framework).

Rendering uses helm-python-sdk, which binds Helm's own Go SDK (v4), so templates, schema validation and
`.Files` behave as with `helm template`. Run as a script, this module *is* the shim:

    python tests/chart_tools.py version
    python tests/chart_tools.py template [NAME] CHART [--values F]... [--set k=v]... [-n NS]
    python tests/chart_tools.py lint CHART [--strict] [--values F]...
    python tests/chart_tools.py dependency list CHART
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
CHART_DIR = REPO_ROOT / "chart" / "okta-ldap-hook"
DEV_VALUES = REPO_ROOT / "deploy" / "dev" / "values.yaml"
RELEASE = "okta-ldap-hook"
NAMESPACE = "okta"

#: Kubernetes versions every rendered object is validated against (oldest supported, newest tested).
KUBE_VERSIONS = ("1.29.0", "1.34.0")


def ci_values_files() -> list[Path]:
    """The chart's CI values files (chart/okta-ldap-hook/ci/*-values.yaml), sorted."""
    return sorted(CHART_DIR.glob("ci/*-values.yaml"))


def load_values(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data or {}


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence fd 2 while the Go library runs: it logs INFO lines there (e.g. for followed symlinks),
    which tools reading `helm` output treat as errors."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def render(
    values: Mapping[str, Any] | None = None,
    *,
    name: str = RELEASE,
    namespace: str = NAMESPACE,
    chart: Path = CHART_DIR,
) -> dict[str, str]:
    """Template path -> rendered text, like `helm template` (schema validated; raises on errors)."""
    import helm_python as helm

    with _quiet_stderr(), helm.Chart.load(str(chart)) as loaded:
        return loaded.render(dict(values or {}), name=name, namespace=namespace, is_install=True)


@dataclass(frozen=True)
class Rendered:
    """One render of the chart: the objects (NOTES.txt excluded) and NOTES.txt."""

    objects: list[dict[str, Any]]
    sources: list[str]  # template path of each object, same order
    notes: str

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def one(self, kind: str, *, hook: bool | None = None) -> dict[str, Any]:
        found = [
            obj
            for obj in self.of_kind(kind)
            if hook is None or bool(obj["metadata"].get("annotations", {}).get("helm.sh/hook")) == hook
        ]
        assert len(found) == 1, f"expected one {kind}, found {len(found)}"
        return found[0]

    def as_yaml_stream(self) -> str:
        """The objects as `helm template` prints them (`---` and `# Source:` lines)."""
        parts = []
        for source, obj in zip(self.sources, self.objects, strict=True):
            parts.append(f"---\n# Source: {source}\n" + yaml.safe_dump(obj, sort_keys=False))
        return "".join(parts)


def render_objects(values: Mapping[str, Any] | None = None, **kwargs: Any) -> Rendered:
    files = render(values, **kwargs)
    objects: list[dict[str, Any]] = []
    sources: list[str] = []
    notes = ""
    for path in sorted(files):
        if path.endswith("NOTES.txt"):
            notes = files[path]
            continue
        for document in yaml.safe_load_all(files[path]):
            if document:
                objects.append(document)
                sources.append(path)
    return Rendered(objects, sources, notes)


def lint(values: Mapping[str, Any] | None = None, *, strict: bool = True, kube_version: str = "v1.34.0"):
    """helm lint (strict: warnings fail). Returns the SDK's report dict."""
    import helm_python as helm

    with _quiet_stderr():
        return helm.lint(str(CHART_DIR), dict(values or {}), strict=strict, kube_version=kube_version)


# --------------------------------------------------------------------------------------- helm shim


def write_helm_shim(directory: Path) -> Path:
    """An executable `helm` in `directory` that runs this module with the current interpreter (which
    has helm-python-sdk). Put `directory` first on PATH for tools that call `helm`."""
    directory.mkdir(parents=True, exist_ok=True)
    shim = directory / "helm"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" "$@"\n', encoding="utf-8")
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return shim


def _set_values(assignments: list[str]) -> dict[str, Any]:
    import helm_python as helm

    merged: dict[str, Any] = {}
    for assignment in assignments:
        _deep_merge(merged, helm.parse_set_string(assignment))
    return merged


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value
    return base


def _shim(argv: list[str]) -> int:
    if not argv or argv[0] in ("version", "--version"):
        import helm_python as helm

        # The format checkov parses: `version.BuildInfo{Version:"v4.x.y", ...}`.
        print(f'version.BuildInfo{{Version:"{helm.helm_sdk_version()}", GoVersion:"helm-python-sdk"}}')
        return 0
    if argv[:2] == ["dependency", "list"]:
        print("WARNING: no dependencies in the chart")  # the chart has none
        return 0
    command, rest = argv[0], argv[1:]
    positional: list[str] = []
    value_files: list[str] = []
    sets: list[str] = []
    namespace = NAMESPACE
    strict = False
    index = 0
    while index < len(rest):
        arg = rest[index]
        if arg in ("-f", "--values"):
            value_files.append(rest[index + 1])
            index += 2
        elif arg == "--set":
            sets.append(rest[index + 1])
            index += 2
        elif arg in ("-n", "--namespace"):
            namespace = rest[index + 1]
            index += 2
        elif arg == "--strict":
            strict = True
            index += 1
        elif arg.startswith("-"):
            index += 1  # --dependency-update and other flags without a value: nothing to do
        else:
            positional.append(arg)
            index += 1
    values: dict[str, Any] = {}
    for path in value_files:
        _deep_merge(values, load_values(Path(path)))
    _deep_merge(values, _set_values(sets))
    if command == "template":
        name, chart = positional if len(positional) == 2 else (RELEASE, positional[0])
        try:
            files = render(values, name=name, namespace=namespace, chart=Path(chart))
        except Exception as error:
            print(f"Error: {error}", file=sys.stderr)
            return 1
        for path in sorted(files):
            if path.endswith("NOTES.txt") or not files[path].strip():
                continue
            print(f"---\n# Source: {path}\n{files[path].strip()}")
        return 0
    if command == "lint":
        import helm_python as helm

        with _quiet_stderr():
            report = helm.lint(positional[0], values, strict=strict)
        for message in report.get("messages", []):
            print(f"[{message['severity']}] {message['path']}: {message['error']}")
        return (
            1 if report.get("errors") or any(m["severity"] >= (2 if strict else 3) for m in report["messages"]) else 0
        )
    print(f"Error: helm shim: unsupported command {argv!r}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(_shim(sys.argv[1:]))
