"""The Grafana dashboard, the Prometheus rules and their runbooks (dashboards/, docs/runbooks/).

Static checks (promtool, JSON structure, every PromQL expression against the metric catalogue). The
live checks, a real Prometheus scraping the real service, are in test_live_monitoring.py.

Needs `promtool` and `prometheus` on PATH (Debian: apt-get install --no-install-recommends prometheus).

The metric catalogue comes from the service (`service.telemetry.metrics.Metrics`) when that module exists,
else from CATALOGUE below. For a live test against the real service, reuse `all_expressions()`.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS = REPO / "dashboards"
RULES = DASHBOARDS / "alerts.rules.yml"
RULE_TESTS = DASHBOARDS / "alerts.test.yml"
DASHBOARD = DASHBOARDS / "okta-ldap-hook.json"
RUNBOOKS = REPO / "docs" / "runbooks"
RUNBOOK_URL = "https://github.com/okta-ldap-hook/okta-ldap-hook/blob/main/docs/runbooks/{}.md"
JOB = "okta-ldap-hook"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


queries = _load("okta_hook_dashboard_queries", DASHBOARDS / "queries.py")
build_dashboard = _load("okta_hook_build_dashboard", DASHBOARDS / "build_dashboard.py")


def all_expressions(*, job: str = JOB, namespace: str = ".*", rate_interval: str = "1m") -> list[tuple[str, str]]:
    """(where, PromQL) for every dashboard target, annotation and rule, variables replaced: what a live
    Prometheus scraping the service must accept."""
    return [
        (
            f"{q.source} {q.where!r} {q.ref}",
            queries.expand(q.expr, job=job, namespace=namespace, rate_interval=rate_interval),
        )
        for q in queries.all_queries()
    ]


# --------------------------------------------------------------------------------------------- catalogue

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 10.0)
LDAP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5)

# Fallback when service.telemetry.metrics is not importable: (type, name as given to prometheus_client).
CATALOGUE = {
    ("histogram", "http_server_request_duration_seconds"),
    ("gauge", "http_server_requests_in_flight"),
    ("counter", "okta_hook_requests"),
    ("counter", "okta_hook_denials"),
    ("counter", "okta_hook_deadline_exceeded"),
    ("counter", "okta_hook_groups_truncated"),
    ("histogram", "okta_hook_ldap_operation_duration_seconds"),
    ("counter", "okta_hook_ldap_errors"),
    ("gauge", "okta_hook_ldap_up"),
    ("gauge", "okta_hook_ldap_pool_size"),
    ("gauge", "okta_hook_ldap_pool_in_use"),
    ("gauge", "okta_hook_ldap_pool_waiting"),
    ("gauge", "okta_hook_build_info"),
    ("gauge", "okta_hook_directory_up"),
    ("counter", "okta_hook_directory_missing"),
}

# Label values the queries may match (bounded enums of the service, plus the bucket bounds).
LABEL_VALUES = {
    "route": {"/hooks/registration", "/hooks/token", "/hooks/saml", "/hooks/user-import", "unmatched"},
    "hook_type": {"registration", "token", "saml", "user_import", "password_import"},
    "outcome": {
        "enriched",
        "enriched_stale",
        "enriched_partial",
        "no_match",
        "refused_identifier",
        "fallback_deadline",
        "fallback_ldap_error",
        "fallback_internal_error",
        "unauthorized",
        "bad_request",
        "client_closed",
        "server_error",
    },
    "reason": {"no_match", "deadline", "ldap_error", "internal_error"},
    "stage": {"queue", "pool_wait", "connect", "bind", "search", "resolve", "groups"},
    "result": {"hit", "miss", "stale", "negative_hit", "ok", "deadline", "cancelled"},
    "operation": {"connect", "bind", "search", "resolve", "groups", "changes"},
    "limit": {"claim_max", "walk_bound"},
    "error_type": {"timeout", "connect", "tls", "bind_failed", "session_lost", "ambiguous", "server_error", "other"},
    "status_code": {"200", "204", "400", "401", "404", "405", "408", "413", "499", "500", "503"},
    "le": {f"{b}" for b in HTTP_BUCKETS + LDAP_BUCKETS} | {"+Inf"},
}


def _sample_names(families: Any) -> set[str]:
    names = set()
    for family in families:
        if family.type == "histogram":
            names |= {f"{family.name}_bucket", f"{family.name}_count", f"{family.name}_sum"}
        elif family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "summary":
            names |= {family.name, f"{family.name}_count", f"{family.name}_sum"}
        elif family.type == "info":
            names.add(f"{family.name}_info")
        else:
            names.add(family.name)
    return names


def _client_defaults() -> set[str]:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    PlatformCollector(registry=registry)
    # process_* only exist on Linux; list the two the dashboard uses in case this runs elsewhere.
    return _sample_names(registry.collect()) | {"process_cpu_seconds_total", "process_resident_memory_bytes"}


def _service_metric_names() -> tuple[set[str], str]:
    try:
        from service.telemetry.metrics import Metrics
    except ModuleNotFoundError as e:
        if e.name not in {"service", "service.telemetry", "service.telemetry.metrics"}:
            raise
        return _sample_names(_FakeFamily(t, n) for t, n in CATALOGUE), "the catalogue in tests/test_dashboards.py"
    registry = CollectorRegistry()
    Metrics(registry)
    return _sample_names(registry.collect()), "service.telemetry.metrics.Metrics"


class _FakeFamily:
    def __init__(self, type_: str, name: str) -> None:
        self.type, self.name = type_, name


SERVICE_METRICS, CATALOGUE_SOURCE = _service_metric_names()
KNOWN_METRICS = SERVICE_METRICS | _client_defaults() | {"up"}


def _rules() -> dict[str, Any]:
    rules: dict[str, Any] = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return rules


def _alerts() -> list[dict[str, Any]]:
    return [r for g in _rules()["groups"] for r in g["rules"] if "alert" in r]


def _records() -> list[dict[str, Any]]:
    return [r for g in _rules()["groups"] for r in g["rules"] if "record" in r]


def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def _panels() -> list[dict[str, Any]]:
    return list(queries.iter_panels(_dashboard()))


def _check_label_values(where: str, expr: str) -> list[str]:
    problems = []
    for name, matchers in queries.selectors(expr):
        for label, (op, value) in matchers.items():
            known = LABEL_VALUES.get(label)
            if known is None:
                continue
            if op in {"Equal", "NotEqual"}:
                if value not in known:
                    problems.append(f"{where}: {name}{{{label}={value!r}}} is not a known {label}")
            else:
                alternatives = value.split("|") if re.fullmatch(r"[\w/.-]+(\|[\w/.-]+)*", value) else [value]
                for alt in alternatives:
                    if not any(re.fullmatch(alt, v) for v in known):
                        problems.append(f"{where}: {name}{{{label}=~{alt!r}}} matches no known {label}")
    return problems


# --------------------------------------------------------------------------------------------- promtool


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not on PATH: apt-get install --no-install-recommends prometheus (Debian ships it)")
    return path


def test_promtool_check_rules(promtool: str) -> None:
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests(promtool: str) -> None:
    result = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name], capture_output=True, text=True, timeout=120, cwd=DASHBOARDS
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    spec = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in spec["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {a["alert"] for a in _alerts()}
    assert names - fires == set(), "alerts without a unit test that makes them fire"
    assert names - quiet == set(), "alerts without a unit test where they stay quiet"
    assert (fires | quiet) - names == set(), "unit tests for alerts that do not exist"


# --------------------------------------------------------------------------------------------- rules


def test_alerts_have_severity_annotations_and_a_runbook() -> None:
    alerts = _alerts()
    assert len(alerts) >= 10
    names = [a["alert"] for a in alerts]
    assert len(names) == len(set(names)), "duplicate alert names"
    for alert in alerts:
        name = alert["alert"]
        assert re.fullmatch(r"OktaHook[A-Z][A-Za-z]+", name), name
        assert alert.get("labels", {}).get("severity") in {"page", "ticket", "warning"}, name
        annotations = alert.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            assert annotations.get(key, "").strip(), f"{name}: no {key}"
        assert annotations["runbook_url"] == RUNBOOK_URL.format(name), name
        runbook = RUNBOOKS / f"{name}.md"
        assert runbook.is_file(), f"{name}: {runbook.relative_to(REPO)} is missing"
        text = runbook.read_text(encoding="utf-8")
        assert text.startswith(f"# {name}\n"), f"{runbook.name} must start with '# {name}'"
        for heading in ("## What it means for Okta users", "## First checks"):
            assert heading in text, f"{runbook.name}: no '{heading}' section"
        # The description quotes what fired ({{ $value }}, {{ $labels.x }}); absent() has neither.
        if not alert["expr"].lstrip().startswith("absent("):
            assert "{{ $value" in annotations["description"] or "{{ $labels" in annotations["description"], name


def test_every_runbook_belongs_to_an_alert() -> None:
    names = {a["alert"] for a in _alerts()}
    extra = {p.stem for p in RUNBOOKS.glob("*.md")} - names - {"README"}
    assert extra == set(), f"runbooks without an alert: {sorted(extra)}"


def test_operations_guide_lists_every_alert() -> None:
    text = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    missing = [a["alert"] for a in _alerts() if a["alert"] not in text]
    assert missing == [], f"docs/operations.md does not mention {missing}"


def test_rule_expressions_parse_and_read_known_metrics() -> None:
    recorded = {r["record"] for r in _records()}
    problems = []
    for q in queries.rule_queries():
        for name, matchers in queries.selectors(q.expr):  # raises on a syntax or type error
            if name in recorded:
                continue
            if name not in KNOWN_METRICS:
                problems.append(f"{q.where}: {name} is not exported (catalogue: {CATALOGUE_SOURCE})")
            elif matchers.get("job") != ("Equal", JOB):
                problems.append(f'{q.where}: {name} must select job="{JOB}"')
        problems += _check_label_values(q.where, q.expr)
    assert problems == []


def test_recording_rules_follow_the_naming_convention_and_the_same_sli_per_window() -> None:
    records = {r["record"]: " ".join(r["expr"].split()) for r in _records()}
    for name in records:
        assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", name), f"{name}: use level:metric:operations"
    windows = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
    for kind in ("namespace_job:okta_hook_sli_requests:rate", "namespace_job:okta_hook_sli_errors:ratio_rate"):
        template = records[f"{kind}5m"]
        for w in windows:
            assert records.get(f"{kind}{w}") == template.replace("5m", w), f"{kind}{w} differs from {kind}5m"
    good = records["namespace_job:okta_hook_sli_errors:ratio_rate5m"]
    assert 'le="2.5"' in good and 'status_code!~"5.."' in good and 'route=~"/hooks/.+"' in good


# --------------------------------------------------------------------------------------------- dashboard


def test_dashboard_json_is_generated_from_build_dashboard_py() -> None:
    assert DASHBOARD.read_text(encoding="utf-8") == build_dashboard.render(), (
        "dashboards/okta-ldap-hook.json is out of date: run python dashboards/build_dashboard.py"
    )


def test_dashboard_has_fixed_uid_and_variables() -> None:
    dash = _dashboard()
    assert dash["uid"] == "okta-ldap-hook" and dash["id"] is None
    assert "__inputs" not in dash and "__requires" not in dash
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "job", "directory"):
        var = variables[name]
        assert var["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        inner = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"]["query"])
        assert inner and inner.group(2) == name, var["query"]
        selector = queries.expand(inner.group(1))
        assert queries.metric_names(selector) <= KNOWN_METRICS, selector


def test_panels_have_datasource_targets_title_description_and_unit() -> None:
    for panel in _panels():
        if panel["type"] == "row":
            assert "targets" not in panel
            continue
        title = panel.get("title", "")
        assert title and panel.get("description"), f"panel {panel['id']} needs a title and a description"
        assert panel.get("datasource") == {"type": "prometheus", "uid": "${datasource}"}, title
        assert panel.get("targets"), f"{title}: no targets"
        for t in panel["targets"]:
            assert t.get("datasource") == {"type": "prometheus", "uid": "${datasource}"}, title
            assert t.get("expr", "").strip() and t.get("refId"), title
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), f"{title}: duplicate refId"
        assert panel.get("fieldConfig", {}).get("defaults", {}).get("unit"), f"{title}: no unit"


def test_panel_ids_are_unique_and_the_grid_has_no_overlap() -> None:
    panels = _panels()
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    taken: dict[tuple[int, int], str] = {}
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in taken, f"{p['title']!r} overlaps {taken[(x, y)]!r} at x={x} y={y}"
                taken[(x, y)] = p["title"]


def test_rows_read_from_risk_to_cause() -> None:
    rows = [p["title"] for p in sorted(_panels(), key=lambda p: p["gridPos"]["y"]) if p["type"] == "row"]
    assert rows[0] == "Are Okta logins at risk?"
    assert rows == [
        "Are Okta logins at risk?",
        "Answers to Okta",
        "Deadline and timeouts",
        "Cache",
        "Directory (LDAP)",
        "Directory $directory",
        "Hook authentication and credentials",
        "Saturation and versions",
    ]


#: Series labelled by directory (service.telemetry.metrics): every selector of them on the dashboard selects
#: the directory variable, so that choosing a directory narrows every panel about directories.
DIRECTORY_METRICS = re.compile(
    r"okta_hook_(ldap_\w+|cache_(lookups|entries|evictions|refreshes)\w*|change_feed_\w+|directory_\w+)"
)


def test_directory_series_select_the_directory_variable_and_one_row_repeats_per_directory() -> None:
    from service.telemetry.metrics import Metrics

    labelled = {
        name
        for metric in vars(Metrics(CollectorRegistry())).values()
        if isinstance(metric, MetricWrapperBase) and "directory" in metric._labelnames
        for name in _sample_names(metric.describe())
    }
    assert {n for n in labelled if DIRECTORY_METRICS.fullmatch(n)} == labelled  # the pattern covers them all
    assert {"okta_hook_directory_up", "okta_hook_directory_missing_total", "okta_hook_ldap_up"} <= labelled
    problems = []
    for q in queries.dashboard_queries():
        promql = queries.expand(q.expr, directory="DIRECTORY_VARIABLE")
        for name, matchers in queries.selectors(promql):
            if name in labelled and matchers.get("directory") != ("Re", "DIRECTORY_VARIABLE"):
                problems.append(f'{q.where}: {name} must select directory=~"$directory"')
    assert problems == []

    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    inner = re.fullmatch(r"label_values\((.+), directory\)", variables["directory"]["query"]["query"])
    assert inner and queries.metric_names(queries.expand(inner.group(1))) == {"okta_hook_directory_up"}
    assert variables["directory"]["includeAll"] and variables["directory"]["multi"]
    rows = [p for p in _dashboard()["panels"] if p["type"] == "row"]
    (repeated,) = [row for row in rows if "repeat" in row]
    assert repeated["repeat"] == "directory" and "$directory" in repeated["title"]
    # the panels of the repeated row: up, latency p50/p99, errors by kind, pool, cache hit ratio,
    # change-feed lag, missing parts; each about this one directory
    panels = _dashboard()["panels"]
    start = panels.index(repeated) + 1
    end = next((i for i in range(start, len(panels)) if panels[i]["type"] == "row"), len(panels))
    members = panels[start:end]
    read = set()
    for panel in members:
        for t in panel["targets"]:
            names = queries.metric_names(queries.expand(t["expr"]))
            assert names and names <= labelled, (panel["title"], names)
            read |= names
    assert read >= {
        "okta_hook_directory_up",
        "okta_hook_ldap_operation_duration_seconds_bucket",
        "okta_hook_ldap_errors_total",
        "okta_hook_ldap_pool_size",
        "okta_hook_cache_lookups_total",
        "okta_hook_change_feed_lag_seconds",
        "okta_hook_directory_missing_total",
    }
    (latency,) = [p for p in members if "latency" in p["title"].lower()]
    assert {t["expr"].split(",")[0] for t in latency["targets"]} == {
        "histogram_quantile(0.5",
        "histogram_quantile(0.99",
    }


def test_enriched_partial_counts_as_not_enriched_on_the_dashboard_and_in_the_alert() -> None:
    """A partial answer (a directory's part missing) is a risk signal: the not-enriched ratio of the
    dashboard and OktaHookUsersNotEnriched count it, the outcome panel shows it, and both count it the
    same way."""
    panels = {p["title"]: p for p in _panels()}
    ratio = panels["Bad, fallback and rejected answers"]
    (not_enriched,) = [t for t in ratio["targets"] if t["legendFormat"].startswith("not enriched")]
    assert "enriched_partial" in not_enriched["expr"]
    assert "enriched_partial" in panels["Hook calls by type and outcome"]["description"]
    stat = next(p for title, p in panels.items() if title.startswith("Not enriched"))
    (alert,) = [a for a in _alerts() if a["alert"] == "OktaHookUsersNotEnriched"]
    outcome_matchers = [
        (name, matchers["outcome"]) for name, matchers in queries.selectors(alert["expr"]) if "outcome" in matchers
    ]
    stat_matchers = [
        (name, matchers["outcome"])
        for name, matchers in queries.selectors(queries.expand(stat["targets"][0]["expr"]))
        if "outcome" in matchers
    ]
    assert outcome_matchers == stat_matchers  # the same numerator and denominator as the alert
    numerator_op, numerator = outcome_matchers[0][1]
    # a negative match: enriched_partial (and any outcome added later) counts as not enriched
    assert numerator_op == "NotRe" and not re.fullmatch(numerator, "enriched_partial")
    assert re.fullmatch(numerator, "enriched") and re.fullmatch(numerator, "enriched_stale")


def test_dashboard_queries_parse_select_the_variables_and_read_known_metrics() -> None:
    problems = []
    for q in queries.dashboard_queries():
        promql = queries.expand(q.expr, job="JOB_VARIABLE", namespace="NAMESPACE_VARIABLE")
        for name, matchers in queries.selectors(promql):  # raises on a syntax or type error
            if name not in KNOWN_METRICS:
                problems.append(f"{q.where}: {name} is not exported (catalogue: {CATALOGUE_SOURCE})")
            if matchers.get("job") != ("Re", "JOB_VARIABLE") or matchers.get("namespace") != (
                "Re",
                "NAMESPACE_VARIABLE",
            ):
                problems.append(f'{q.where}: {name} must select job=~"$job",namespace=~"$namespace"')
        problems += _check_label_values(q.where, queries.expand(q.expr))
    assert problems == []


def test_range_panels_use_rate_interval() -> None:
    for q in queries.dashboard_queries():
        if q.instant or q.source != "panel":
            continue
        windows = re.findall(r"\[([^\]]+)\]", q.expr)
        assert all(w == "$__rate_interval" for w in windows), f"{q.where}: use [$__rate_interval], not {windows}"


def test_latency_panel_marks_the_deadline_and_oktas_limit() -> None:
    (panel,) = [p for p in _panels() if p["title"].startswith("Latency per hook")]
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults["unit"] == "s"
    assert {s["value"] for s in defaults["thresholds"]["steps"]} >= {2.5, 3}
    assert defaults["custom"]["thresholdsStyle"]["mode"] != "off"
    assert defaults["custom"]["axisSoftMax"] > 3
    assert {t["expr"].split(",")[0] for t in panel["targets"]} == {
        "histogram_quantile(0.5",
        "histogram_quantile(0.95",
        "histogram_quantile(0.99",
    }


def test_dashboard_covers_every_exported_okta_metric() -> None:
    used = set()
    for q in queries.dashboard_queries():
        used |= queries.metric_names(queries.expand(q.expr))
    wanted = {n for n in SERVICE_METRICS if not n.endswith("_sum") and not n.endswith("_created")}
    # A histogram is covered by its _bucket or _count series.
    missing = {
        n
        for n in wanted
        if n not in used and not any(n.rsplit("_", 1)[0] + suffix in used for suffix in ("_bucket", "_count"))
    }
    assert missing == set(), f"exported but not on the dashboard ({CATALOGUE_SOURCE})"
