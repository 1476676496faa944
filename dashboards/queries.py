"""Every PromQL expression of the dashboard and the rule file, in one place.

Used by tests/test_dashboards.py (parse, metric catalogue), by dashboards/render_panels.py (query_range
against a live Prometheus) and meant for the live test that runs Prometheus against the real service:

    import sys; sys.path.insert(0, "dashboards")
    import queries
    for q in queries.all_queries():
        promql = queries.expand(q.expr, job="okta-ldap-hook", rate_interval="1m")
        ...                                  # GET /api/v1/query?query=promql must succeed

Dashboard expressions keep Grafana's variables ($job, $namespace, $__rate_interval, ...); `expand()`
replaces them with concrete values. Rule expressions are plain PromQL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DASHBOARD_PATH = HERE / "okta-ldap-hook.json"
RULES_PATH = HERE / "alerts.rules.yml"
JOB = "okta-ldap-hook"


@dataclass(frozen=True)
class Query:
    source: str  # "panel", "annotation" or "rule"
    where: str  # panel title, annotation name, or the recorded series / alert name
    ref: str  # target refId, "annotation", "record" or "alert"
    expr: str
    legend: str = ""
    panel_type: str = ""
    panel_id: int | None = None
    instant: bool = False


def load_dashboard(path: Path = DASHBOARD_PATH) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)  # type: ignore[no-any-return]


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """All panels, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(dashboard: dict[str, Any] | None = None) -> list[Query]:
    dashboard = dashboard if dashboard is not None else load_dashboard()
    found = []
    for panel in iter_panels(dashboard):
        for t in panel.get("targets", []):
            found.append(
                Query(
                    source="panel",
                    where=panel.get("title", ""),
                    ref=t.get("refId", ""),
                    expr=t["expr"],
                    legend=t.get("legendFormat", ""),
                    panel_type=panel.get("type", ""),
                    panel_id=panel.get("id"),
                    instant=bool(t.get("instant")),
                )
            )
    for ann in dashboard.get("annotations", {}).get("list", []):
        if ann.get("expr"):
            found.append(Query(source="annotation", where=ann["name"], ref="annotation", expr=ann["expr"]))
    return found


def load_rules(path: Path = RULES_PATH) -> dict[str, Any]:
    import yaml  # PyYAML: a service dependency, but keep the import local for the dashboard-only users

    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)  # type: ignore[no-any-return]


def rule_queries(rules: dict[str, Any] | None = None) -> list[Query]:
    rules = rules if rules is not None else load_rules()
    found = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            kind = "alert" if "alert" in rule else "record"
            found.append(Query(source="rule", where=rule[kind], ref=kind, expr=rule["expr"].strip()))
    return found


def all_queries() -> list[Query]:
    """Every dashboard target, dashboard annotation and rule expression."""
    return dashboard_queries() + rule_queries()


def expand(
    expr: str,
    *,
    job: str = JOB,
    namespace: str = ".*",
    directory: str = ".*",
    rate_interval: str = "1m",
    interval: str = "15s",
    range_: str = "1h",
) -> str:
    """Replaces Grafana's variables with concrete values. `job`, `namespace` and `directory` are regexes
    (the dashboard matches them with =~; Grafana gives the row repeated per directory one name each).
    `rate_interval` stands for $__rate_interval (Grafana: max(4 x scrape interval, step + scrape
    interval))."""
    values = {
        "__rate_interval": rate_interval,
        "__interval": interval,
        "__range": range_,
        "job": job,
        "namespace": namespace,
        "directory": directory,
    }

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise KeyError(f"unknown dashboard variable ${name} in {expr!r}")
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, expr)


def selectors(expr: str) -> list[tuple[str | None, dict[str, tuple[str, str]]]]:
    """(metric name, {label: (op, value)}) of every vector selector in a PromQL expression (no variables)."""
    import promql_parser

    found: list[tuple[str | None, dict[str, tuple[str, str]]]] = []

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = {m.name: (str(m.op).rsplit(".", 1)[-1], m.value) for m in node.matchers.matchers}
            name = node.name or (matchers.get("__name__", ("", None))[1])
            found.append((name, matchers))

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def metric_names(expr: str) -> set[str]:
    """Names of the series an expression reads (variables must be expanded first)."""
    return {name for name, _ in selectors(expr) if name}
