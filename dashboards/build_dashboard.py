"""Builds dashboards/okta-ldap-hook.json, the Grafana dashboard of okta-ldap-hook.

The JSON is committed (the Helm chart ships it in a ConfigMap); this script is its source. After editing a
panel here, regenerate and commit both:

    python dashboards/build_dashboard.py            # writes dashboards/okta-ldap-hook.json
    python dashboards/build_dashboard.py --check    # exit 1 if the committed JSON is out of date

Plain dictionaries in Grafana's classic dashboard model (schemaVersion 39), standard library only.
grafana-foundation-sdk (1769699998!10.1.0) was tried for the panel helpers: 95 lines instead of 104, the
panel definitions unchanged, but it emits schemaVersion 36, extra defaults and no panel ids, so the
committed JSON would change wholesale for a 10 % shorter source; not adopted.
Rows read top-down from "are Okta logins at risk?" to "why": Okta risk, answers to Okta, deadline and
timeouts, cache, directory, one row per configured directory (repeated over the `directory` variable),
credentials, saturation and versions. tests/test_dashboards.py checks the structure and every query.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).with_name("okta-ldap-hook.json")

UID = "okta-ldap-hook"
TITLE = "Okta LDAP hook"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
REPO_URL = "https://github.com/okta-ldap-hook/okta-ldap-hook/blob/main"

# Every selector carries the dashboard's job and namespace variables; a series labelled by directory (the
# configured name: "default" for the one-directory form) also carries the directory variable.
SEL = 'job=~"$job",namespace=~"$namespace"'
DSEL = f'{SEL},directory=~"$directory"'
HOOKS = f'{SEL},route=~"/hooks/.+"'
REQ_BUCKET = "http_server_request_duration_seconds_bucket"
REQ_COUNT = "http_server_request_duration_seconds_count"
# The SLI leaves out calls the client abandoned (499) or sent too slowly (408), as alerts.rules.yml does.
GOOD = f'{REQ_BUCKET}{{{HOOKS},le="2.5",status_code!~"5..",status_code!~"408|499"}}'
ALL_CALLS = f'{REQ_COUNT}{{{HOOKS},status_code!~"408|499"}}'
RI = "$__rate_interval"
# Answers that could carry directory data, and those that left without all of it (a fallback, or
# enriched_partial: a directory's part missing), as OktaHookUsersNotEnriched counts them.
ENRICHABLE = 'outcome!~"no_match|refused_identifier|unauthorized|bad_request|client_closed"'
NOT_ENRICHED = 'outcome!~"enriched|enriched_stale|no_match|refused_identifier|unauthorized|bad_request|client_closed"'

Panel = dict[str, Any]
#: A row: its title, its panels, and the variable it is repeated over (None: shown once).
Section = tuple[str, list[Panel], str | None]


def target(
    expr: str, legend: str = "__auto", ref: str = "A", *, instant: bool = False, fmt: str = "time_series"
) -> dict[str, Any]:
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "format": fmt,
        "instant": instant,
        "legendFormat": legend,
        "range": not instant,
        "refId": ref,
    }


def targets(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    return [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(pairs)]


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for value, color in steps]}


def stat(
    title: str,
    description: str,
    expr: str,
    unit: str,
    steps: dict[str, Any],
    *,
    decimals: int | None = None,
    legend: str = "__auto",
    mappings: list[dict[str, Any]] | None = None,
) -> Panel:
    defaults: dict[str, Any] = {
        "unit": unit,
        "thresholds": steps,
        "color": {"mode": "thresholds"},
        "mappings": mappings or [],
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "colorMode": "background",
            "graphMode": "none",
            "justifyMode": "center",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "value_and_name" if mappings else "value",
        },
        "targets": [target(expr, legend, instant=True)],
        "_size": (4, 5),
    }


def timeseries(
    title: str,
    description: str,
    tgts: list[dict[str, Any]],
    unit: str,
    *,
    w: int = 12,
    h: int = 8,
    min_: float | None = 0,
    soft_max: float | None = None,
    steps: dict[str, Any] | None = None,
    threshold_style: str = "off",
    stack: bool = False,
) -> Panel:
    custom: dict[str, Any] = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 10,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "thresholdsStyle": {"mode": threshold_style},
    }
    defaults: dict[str, Any] = {
        "unit": unit,
        "custom": custom,
        "color": {"mode": "palette-classic"},
        "thresholds": steps or thresholds((None, "green")),
    }
    if min_ is not None:
        defaults["min"] = min_
    if soft_max is not None:
        custom["axisSoftMax"] = soft_max
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {
                "displayMode": "table",
                "placement": "bottom",
                "calcs": ["mean", "max", "lastNotNull"],
                "showLegend": True,
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": tgts,
        "_size": (w, h),
    }


def heatmap(title: str, description: str, expr: str, *, w: int = 12, h: int = 8) -> Panel:
    return {
        "type": "heatmap",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {
            "defaults": {
                "unit": "short",
                "custom": {"hideFrom": {"legend": False, "tooltip": False, "viz": False}},
            },
            "overrides": [],
        },
        "options": {
            "calculate": False,
            "cellGap": 1,
            "color": {
                "mode": "scheme",
                "scheme": "Oranges",
                "scale": "exponential",
                "exponent": 0.5,
                "fill": "dark-orange",
                "reverse": False,
                "steps": 64,
            },
            "filterValues": {"le": 1e-9},
            "legend": {"show": True},
            "rowsFrame": {"layout": "auto"},
            "tooltip": {"mode": "single", "yHistogram": True, "showColorScale": True},
            "yAxis": {"axisPlacement": "left", "unit": "s", "reverse": False},
        },
        "targets": [target(expr, "{{le}}", fmt="heatmap")],
        "_size": (w, h),
    }


def state_timeline(title: str, description: str, expr: str, legend: str, *, w: int = 8, h: int = 8) -> Panel:
    return {
        "type": "state-timeline",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {
            "defaults": {
                "unit": "none",
                "color": {"mode": "thresholds"},
                "thresholds": thresholds((None, "red"), (1, "green")),
                "mappings": [
                    {
                        "type": "value",
                        "options": {
                            "0": {"text": "down", "color": "red", "index": 0},
                            "1": {"text": "up", "color": "green", "index": 1},
                        },
                    }
                ],
                "custom": {"fillOpacity": 80, "lineWidth": 0},
            },
            "overrides": [],
        },
        "options": {
            "showValue": "never",
            "mergeValues": True,
            "rowHeight": 0.8,
            "alignValue": "left",
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "single", "sort": "none"},
        },
        "targets": [target(expr, legend)],
        "_size": (w, h),
    }


def table(title: str, description: str, expr: str, *, w: int = 16, h: int = 6) -> Panel:
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": {"unit": "none", "custom": {"align": "auto"}}, "overrides": []},
        "options": {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"]}},
        "transformations": [
            {
                "id": "organize",
                "options": {"excludeByName": {"Time": True}, "renameByName": {"Value": "pods"}},
            }
        ],
        "targets": [target(expr, "__auto", instant=True, fmt="table")],
        "_size": (w, h),
    }


UP_DOWN = [
    {
        "type": "value",
        "options": {
            "0": {"text": "DOWN", "color": "red", "index": 0},
            "1": {"text": "UP", "color": "green", "index": 1},
        },
    }
]


def rows() -> list[tuple[str, list[Panel]]]:
    """The dashboard's rows, top to bottom, each with its panels left to right."""
    risk = [
        stat(
            "Good answers (SLI, last 1h)",
            "Share of hook calls answered without a 5xx within 2.5 s (the SLI) over the last hour. "
            "Objective: 99.9 % over 30 days. Below 98.56 % for an hour pages (OktaHookErrorBudgetBurnFast).",
            f"(sum(rate({GOOD}[1h])) or vector(0)) / sum(rate({ALL_CALLS}[1h]))",
            "percentunit",
            thresholds((None, "red"), (0.99, "orange"), (0.999, "green")),
            decimals=2,
        ),
        stat(
            "Error budget left (30 d)",
            "Share of the 30-day error budget (0.1 % of hook calls may be slow or fail) that is still "
            "unspent. Negative: the SLO is already missed for this period.",
            f"1 - (1 - (sum(increase({GOOD}[30d])) or vector(0)) / sum(increase({ALL_CALLS}[30d]))) / 0.001",
            "percentunit",
            thresholds((None, "red"), (0.25, "orange"), (0.5, "green")),
            decimals=1,
        ),
        stat(
            "Answered after Okta's 3 s (last 1h)",
            "Share of hook calls the service answered after 3 s: Okta had already given up (registration "
            "denied, token or SAML sent without directory attributes). Should be 0: the internal deadline "
            "is 2.5 s.",
            f'1 - (sum(rate({REQ_BUCKET}{{{HOOKS},le="3.0"}}[1h])) or vector(0)) / sum(rate({ALL_CALLS}[1h]))',
            "percentunit",
            thresholds((None, "green"), (0.0001, "orange"), (0.001, "red")),
            decimals=2,
        ),
        stat(
            "Deadline fallbacks (last 1h)",
            "Hook calls answered with a fallback because the directory did not answer within the 2.5 s "
            "deadline. Any fallback raises OktaHookDeadlineFallback.",
            f"sum(increase(okta_hook_deadline_exceeded_total{{{SEL}}}[1h])) or vector(0)",
            "short",
            thresholds((None, "green"), (0.5, "red")),
            decimals=0,
        ),
        stat(
            "Registrations denied by a failure (last 1h)",
            "Self-service registrations the service denied because the directory failed or was too slow "
            "(failure policy on_directory_error: deny). Denials of users who are not in the directory "
            "(on_unknown_user: deny) are intended and not counted here.",
            f'sum(increase(okta_hook_denials_total{{{SEL},hook_type="registration",reason=~"deadline|ldap_error|internal_error"}}[1h]))'
            " or vector(0)",
            "short",
            thresholds((None, "green"), (0.5, "red")),
            decimals=0,
        ),
        stat(
            "Directory servers",
            "Result of the background check of each configured LDAP server (every 15 s), by directory; DOWN "
            "when any pod fails to reach it. All of a directory's servers DOWN: OktaHookDirectoryDown "
            "(OktaHookJoinedDirectoryDown for a joined one).",
            f"min by (directory, server) (okta_hook_ldap_up{{{DSEL}}})",
            "none",
            thresholds((None, "red"), (1, "green")),
            legend="{{directory}} {{server}}",
            mappings=UP_DOWN,
        ),
        stat(
            "Not enriched: fallbacks and partial answers (last 1h)",
            "Share of the hook answers that could have been enriched (unknown users, refused identifiers, "
            "401/400, abandoned calls and password import left out) that left without all their directory "
            "data: fallbacks, and enriched_partial (a directory's part missing). What OktaHookUsersNotEnriched "
            "reads, over an hour.",
            f'(sum(increase(okta_hook_requests_total{{{SEL},hook_type!="password_import",{NOT_ENRICHED}}}[1h]))'
            " or vector(0))"
            f' / sum(increase(okta_hook_requests_total{{{SEL},hook_type!="password_import",{ENRICHABLE}}}[1h]))',
            "percentunit",
            thresholds((None, "green"), (0.001, "orange"), (0.01, "red")),
            decimals=2,
        )
        | {"_size": (6, 5)},
    ]
    answers = [
        timeseries(
            "Hook calls by type and outcome",
            "What Okta received, per hook type: enriched (directory attributes returned), enriched_stale "
            "(attributes from the cache while the directory fails), enriched_partial (several directories: "
            "a directory's part missing, the rest answered), no_match (user "
            "not in the directory), refused_identifier (a login no real Okta user has: never looked up), "
            "fallback_deadline / fallback_ldap_error / fallback_internal_error "
            "(fallback answer), "
            "unauthorized (401, wrong secret), bad_request (400/405/408/413), client_closed (499: the "
            'caller left before the answer), server_error (5xx, a bug). "refused" series: every refusal on the hook '
            "port, by reason (not_found, too_large, request_timeout, client_closed...).",
            targets(
                (
                    f"sum by (hook_type, outcome) (rate(okta_hook_requests_total{{{SEL}}}[{RI}]))",
                    "{{hook_type}} {{outcome}}",
                ),
                (
                    f"sum by (reason) (rate(okta_hook_refusals_total{{{SEL}}}[{RI}]))",
                    "refused: {{reason}}",
                ),
            ),
            "reqps",
        ),
        timeseries(
            "Bad, fallback and rejected answers",
            "SLI bad: share of hook calls slower than 2.5 s or answered with a 5xx (budget: 0.1 %). "
            "Not enriched: share of authenticated calls answered with a fallback (no directory data) or "
            "enriched_partial (a directory's part missing), per hook type. "
            "HTTP 5xx: should be 0, the service answers failures with a fallback. Rejected: 401/400 "
            "answers, e.g. after a secret rotation on one side only.",
            targets(
                (
                    f"1 - (sum(rate({GOOD}[{RI}])) or vector(0)) / sum(rate({ALL_CALLS}[{RI}]))",
                    "SLI bad (over 2.5 s or 5xx)",
                ),
                (
                    f"sum by (hook_type) (rate(okta_hook_requests_total"
                    f'{{{SEL},outcome=~"fallback_.+|enriched_partial"}}[{RI}]))'
                    f" / sum by (hook_type) (rate(okta_hook_requests_total"
                    f'{{{SEL},outcome!~"unauthorized|bad_request"}}[{RI}]))',
                    "not enriched (fallback or partial) {{hook_type}}",
                ),
                (
                    f'(sum(rate({REQ_COUNT}{{{HOOKS},status_code=~"5.."}}[{RI}])) or vector(0))'
                    f" / sum(rate({ALL_CALLS}[{RI}]))",
                    "HTTP 5xx",
                ),
                (
                    f'sum(rate(okta_hook_requests_total{{{SEL},outcome=~"unauthorized|bad_request"}}[{RI}]))'
                    f" / sum(rate(okta_hook_requests_total{{{SEL}}}[{RI}]))",
                    "rejected (401/400)",
                ),
            ),
            "percentunit",
        ),
        timeseries(
            "Latency per hook: p50 / p95 / p99",
            "Time to answer Okta, per hook route. Orange line: the internal deadline (2.5 s), after which "
            "the service answers with a fallback. Red line: Okta's 3 s timeout. p99 over 2 s for 10 "
            "minutes raises OktaHookLatencyNearOktaTimeout.",
            targets(
                *[
                    (
                        f"histogram_quantile({q}, sum by (route, le) "
                        f'(rate({REQ_BUCKET}{{{HOOKS},status_code!~"408|499"}}[{RI}])))',
                        f"p{int(q * 100)} {{{{route}}}}",
                    )
                    for q in (0.99, 0.95, 0.5)
                ]
            ),
            "s",
            soft_max=3.5,
            steps=thresholds((None, "green"), (2.5, "orange"), (3, "red")),
            threshold_style="dashed",
        ),
        heatmap(
            "Latency distribution (all hooks)",
            "Hook calls per latency bucket. A band at 2.5-3 s means calls hit the deadline and got a "
            "fallback; anything above 3 s reached Okta too late.",
            f"sum by (le) (increase({REQ_BUCKET}{{{HOOKS}}}[{RI}]))",
        ),
        timeseries(
            "Identifiers refused before the directory",
            "Hook calls per minute whose login or email no real Okta user has, by reason: control or "
            "invisible characters, too long, spaces, not NFKC-normalized, outside strip_domains. They are "
            "never looked up and get the unknown-user answer. A steady stream from one hook type is "
            "someone probing it (they passed the hook secret: check where it leaked).",
            targets(
                (
                    f"60 * sum by (hook_type, reason) (rate(okta_hook_refused_identifiers_total{{{SEL}}}[{RI}]))",
                    "{{hook_type}} {{reason}}",
                )
            ),
            "opm",
        ),
        timeseries(
            "Password import checks by result and reason",
            "Password import calls per minute. verified: Okta keeps the password. unverified: the person's "
            "sign-in is refused (invalid_credentials, locked, password_expired, account_disabled... from "
            "the directory; unknown_user, ambiguous_user, empty_password, refused_identifier). error: the "
            "directory could not say (deadline, directory_error): Okta asks again at the next sign-in. A "
            "rise of locked or expired accounts is a migration problem to tell the help desk about.",
            targets(
                (
                    f"60 * sum by (result, reason) (rate(okta_hook_password_verifications_total{{{SEL}}}[{RI}]))",
                    "{{result}} {{reason}}",
                )
            ),
            "opm",
        ),
    ]
    deadline = [
        timeseries(
            "Deadline exceeded by hook and stage",
            "Calls per minute that hit the 2.5 s deadline, by what the directory work was doing: "
            "pool_wait (no free connection: pool too small or connections stuck), connect, bind, "
            "search, resolve (manager lookups), groups (group searches).",
            targets(
                (
                    f"60 * sum by (hook_type, stage) (rate(okta_hook_deadline_exceeded_total{{{SEL}}}[{RI}]))",
                    "{{hook_type}} {{stage}}",
                )
            ),
            "opm",
            w=8,
        ),
        timeseries(
            "Timeouts: after Okta's 3 s, LDAP timeouts",
            "Per minute: hook calls answered after 3 s (Okta had already given up) and LDAP operations "
            "that timed out (each costs up to the operation timeout of the deadline).",
            targets(
                (
                    f"60 * (sum by (route) (rate({ALL_CALLS}[{RI}]))"
                    f' - sum by (route) (rate({REQ_BUCKET}{{{HOOKS},le="3.0"}}[{RI}])))',
                    "over 3 s {{route}}",
                ),
                (
                    f'60 * sum by (operation) (rate(okta_hook_ldap_errors_total{{{DSEL},error_type="timeout"}}[{RI}]))'
                    " or vector(0)",
                    "LDAP {{operation}} timeout",
                ),
            ),
            "opm",
            w=8,
        ),
        timeseries(
            "Registrations denied by reason",
            "Registrations denied per minute. no_match: the user is not in the directory and the policy "
            "denies unknown users (intended). deadline / ldap_error: the directory failed and the "
            "failure policy denied the user (OktaHookRegistrationsDenied).",
            targets(
                (
                    f'60 * sum by (reason) (rate(okta_hook_denials_total{{{SEL},hook_type="registration"}}[{RI}]))',
                    "{{reason}}",
                )
            ),
            "opm",
            w=8,
        ),
    ]
    directory = [
        timeseries(
            "Directory operation latency p95 / p99",
            "LDAP latency by operation (connect, bind, search, resolve, groups; changes: one page of a change "
            "feed poll, in the background). One hook call may need several operations; together they must fit "
            "in the 2.5 s deadline.",
            targets(
                *[
                    (
                        f"histogram_quantile({q}, sum by (operation, le) "
                        f"(rate(okta_hook_ldap_operation_duration_seconds_bucket{{{DSEL}}}[{RI}])))",
                        f"p{int(q * 100)} {{{{operation}}}}",
                    )
                    for q in (0.99, 0.95)
                ]
            ),
            "s",
            w=8,
        ),
        timeseries(
            "Directory errors by type",
            "Failed LDAP operations per second by operation and error type: timeout, connect, tls, "
            "bind_failed (check the service account), session_lost, ambiguous (several entries "
            "matched), server_error, other. Over 5 % of operations raises OktaHookDirectoryErrors.",
            targets(
                (
                    f"sum by (operation, error_type) (rate(okta_hook_ldap_errors_total{{{DSEL}}}[{RI}]))",
                    "{{operation}} {{error_type}}",
                )
            ),
            "ops",
            w=8,
        ),
        state_timeline(
            "Directory server reachability",
            "Background check of each LDAP server (every 15 s), worst pod. Red: unreachable from at "
            "least one pod (OktaHookDirectoryServerDown; all red: OktaHookDirectoryDown or OktaHookJoinedDirectoryDown).",
            f"min by (directory, server) (okta_hook_ldap_up{{{DSEL}}})",
            "{{directory}} {{server}}",
        ),
        timeseries(
            "Connection pool",
            "LDAP connections open, lent out, and lookups waiting for a connection, summed over pods. "
            "Waiting above 0 for long means the pool is saturated: lookups spend their deadline in "
            "pool_wait.",
            targets(
                (f"sum by (directory) (okta_hook_ldap_pool_size{{{DSEL}}})", "size {{directory}}"),
                (f"sum by (directory) (okta_hook_ldap_pool_in_use{{{DSEL}}})", "in use {{directory}}"),
                (f"sum by (directory) (okta_hook_ldap_pool_waiting{{{DSEL}}})", "waiting {{directory}}"),
            ),
            "short",
        ),
        timeseries(
            "Directory operations",
            "LDAP operations per second by operation. Searches follow hook traffic; connects and binds "
            "should stay low (a rise means connections are being lost and re-opened).",
            targets(
                (
                    f"sum by (operation) (rate(okta_hook_ldap_operation_duration_seconds_count{{{DSEL}}}[{RI}]))",
                    "{{operation}}",
                )
            ),
            "ops",
        ),
        timeseries(
            "Group claims truncated",
            "Answers per minute whose group claims lack some of the person's groups: claim_max (a rule's "
            "max cut the sorted list; raise max or narrow name_pattern) or walk_bound (the nested walk "
            "stopped at directory.groups max_depth/max_groups). Okta's System Log shows groupsTruncated.",
            targets(
                (
                    f"60 * sum by (hook_type, limit) (rate(okta_hook_groups_truncated_total{{{SEL}}}[{RI}]))",
                    "{{hook_type}} {{limit}}",
                )
            ),
            "opm",
        ),
    ]
    oauth = [
        timeseries(
            "Bearer tokens refused by reason",
            "Hook calls on Okta's OAUTH channel answered 401, per minute, by why the access token was "
            "refused: expired, not_yet_valid (clock skew), wrong_issuer, wrong_audience, missing_scope, "
            "wrong_client, unknown_key (key not published, or the issuer unreachable), bad_signature, "
            "bad_algorithm, malformed, not_bearer. Empty when auth.oauth is not configured.",
            targets(
                (
                    f"60 * sum by (reason) (rate(okta_hook_oauth_token_rejections_total{{{SEL}}}[{RI}]))",
                    "{{reason}}",
                )
            ),
            "opm",
            w=8,
        ),
        timeseries(
            "Issuer key fetch errors",
            "Failed fetches of the authorization server's metadata or key set per minute, by reason. "
            "Cached keys keep working; new keys (rotation) cannot be learnt (OktaHookOAuthKeysFetchFailing).",
            targets(
                (
                    f"60 * sum by (reason) (rate(okta_hook_oauth_jwks_fetch_errors_total{{{SEL}}}[{RI}]))",
                    "{{reason}}",
                )
            ),
            "opm",
            w=8,
        ),
        timeseries(
            "Issuer keys held, and age of the last fetch",
            "Signing keys in memory per pod (0: every bearer token is refused, OktaHookOAuthNoKeys) and "
            "seconds since the last successful fetch of the key set (refreshed hourly by default).",
            targets(
                (f"min by (instance) (okta_hook_oauth_jwks_keys{{{SEL}}})", "keys {{instance}}"),
                (
                    f"time() - max by (instance) (okta_hook_oauth_jwks_last_success_timestamp_seconds{{{SEL}}} > 0)",
                    "age (s) {{instance}}",
                ),
            ),
            "short",
            w=8,
        ),
        timeseries(
            "Hook calls accepted by secret source",
            "Accepted hook calls per minute by the configured source whose secret they carried "
            "(auth.secret_env[N], auth.secret_files[N], N from 0 in the configuration's order; with the chart, "
            "the order of secret.existingSecretKeys.hookSecrets) or auth.oauth for a bearer token. While "
            "rotating the header secret: once the old secret's source stays at 0, it can be removed.",
            targets(
                (f"60 * sum by (source) (rate(okta_hook_auth_accepted_total{{{SEL}}}[{RI}]))", "{{source}}"),
            ),
            "opm",
            w=8,
        ),
        timeseries(
            "Credential file changes",
            "Changes the pods saw in their credential files, per minute, by file (the configuration key) "
            "and result: changed (the new value is in use: a rotation was taken) or why it was not taken "
            "(empty, unreadable, not_utf8, changing, invalid); the previous value then stays in use.",
            targets(
                (
                    f"60 * sum by (file, result) (rate(okta_hook_credential_file_reloads_total{{{SEL}}}[{RI}]))",
                    "{{file}} {{result}}",
                ),
            ),
            "opm",
            w=8,
        ),
        timeseries(
            "Credentials not usable",
            "1 while a pod keeps an older value because its credential file is unusable "
            "(OktaHookCredentialFileUnusable), and while the directory refuses the service account's "
            "password: no new LDAP connection until the file changes (OktaHookBindPasswordRefused).",
            targets(
                (f"max by (file) (okta_hook_credential_file_unusable{{{SEL}}})", "{{file}} unusable"),
                (
                    f"max by (directory) (okta_hook_ldap_bind_password_refused{{{DSEL}}})",
                    "bind password refused {{directory}}",
                ),
            ),
            "short",
            w=8,
        ),
    ]
    saturation = [
        timeseries(
            "In-flight hook requests per pod",
            "Hook requests being handled right now, per pod. A steady rise with flat traffic means "
            "requests are waiting (directory slow, pool saturated, CPU throttled).",
            targets((f"sum by (instance) (http_server_requests_in_flight{{{SEL}}})", "{{instance}}")),
            "short",
            w=8,
        ),
        timeseries(
            "CPU per pod (cores)",
            "CPU used by the service process, in cores. One Sanic process per pod uses at most one core; "
            "near 1 (or the pod's CPU limit) latency grows.",
            targets((f"sum by (instance) (rate(process_cpu_seconds_total{{{SEL}}}[{RI}]))", "{{instance}}")),
            "short",
            w=8,
        ),
        timeseries(
            "Memory per pod (RSS)",
            "Resident memory of the service process per pod.",
            targets((f"sum by (instance) (process_resident_memory_bytes{{{SEL}}})", "{{instance}}")),
            "bytes",
            w=8,
        ),
        table(
            "Running versions",
            "Versions and revisions reported by okta_hook_build_info, with the number of pods running each. "
            "Two rows: a rollout is in progress (or stuck).",
            f"count by (version, revision) (okta_hook_build_info{{{SEL}}})",
        ),
        stat(
            "Pods scraped",
            "Pods whose /metrics answered the last scrape. 0: nothing is serving Okta or Prometheus lost the "
            "target (OktaHookNotScraped).",
            f"sum(up{{{SEL}}})",
            "short",
            thresholds((None, "red"), (1, "green")),
            decimals=0,
        )
        | {"_size": (8, 6)},
    ]
    return [
        ("Are Okta logins at risk?", risk, None),
        ("Answers to Okta", answers, None),
        ("Deadline and timeouts", deadline, None),
        ("Cache", cache_row(), None),
        ("Directory (LDAP)", directory, None),
        ("Directory $directory", directory_row(), "directory"),
        ("Hook authentication and credentials", oauth, None),
        ("Saturation and versions", saturation, None),
    ]


def directory_row() -> list[Panel]:
    """One configured directory (the row is repeated for each value of the ``directory`` variable): is it
    up, how fast and how it fails, its pool, its caches, its change feed, and the answers that left without
    its part (several directories: README, "Several directories")."""
    return [
        stat(
            "Directory up",
            "UP while at least one of this directory's servers passed its last background check (every 15 s) "
            "on every pod. DOWN for 2 minutes raises OktaHookDirectoryDown, or OktaHookJoinedDirectoryDown for a "
            "directory joined to the one that holds the person (its outage costs only its part).",
            f"min by (directory) (okta_hook_directory_up{{{DSEL}}})",
            "none",
            thresholds((None, "red"), (1, "green")),
            legend="{{directory}}",
            mappings=UP_DOWN,
        )
        | {"_size": (4, 8)},
        timeseries(
            "LDAP latency p50 / p99",
            "This directory's LDAP operations by operation (connect, bind, search, resolve, groups, "
            "user_bind; changes: a change-feed page). With several directories the ones a lookup needs are "
            "asked in parallel: an answer waits about as long as the slowest of them, within the deadline.",
            targets(
                *[
                    (
                        f"histogram_quantile({q}, sum by (operation, le) "
                        f"(rate(okta_hook_ldap_operation_duration_seconds_bucket{{{DSEL}}}[{RI}])))",
                        f"p{int(q * 100)} {{{{operation}}}}",
                    )
                    for q in (0.99, 0.5)
                ]
            ),
            "s",
            w=10,
        ),
        timeseries(
            "LDAP errors by kind",
            "This directory's failed LDAP operations per second by error kind (timeout, connect, tls, "
            "bind_failed, session_lost, ambiguous, server_error, other) and operation. Over 5 % of its "
            "operations raises OktaHookDirectoryErrors.",
            targets(
                (
                    f"sum by (error_type, operation) (rate(okta_hook_ldap_errors_total{{{DSEL}}}[{RI}]))",
                    "{{error_type}} {{operation}}",
                )
            ),
            "ops",
            w=10,
        ),
        timeseries(
            "Pool",
            "This directory's LDAP connections open and lent out, and lookups waiting for one, summed over "
            "pods. Waiting above 0 for long: its pool_size is too small for the traffic.",
            targets(
                (f"sum(okta_hook_ldap_pool_size{{{DSEL}}})", "size"),
                (f"sum(okta_hook_ldap_pool_in_use{{{DSEL}}})", "in use"),
                (f"sum(okta_hook_ldap_pool_waiting{{{DSEL}}})", "waiting"),
            ),
            "short",
            w=6,
        ),
        timeseries(
            "Cache hit ratio",
            "Share of this directory's lookups answered from memory, by hook type (one cache per hook type "
            "and directory: stale-if-error works per directory).",
            targets(
                (
                    f'sum by (hook_type) (rate(okta_hook_cache_lookups_total{{{DSEL},result=~"hit|negative_hit"}}'
                    f"[{RI}])) / sum by (hook_type) (rate(okta_hook_cache_lookups_total{{{DSEL}}}[{RI}]))",
                    "{{hook_type}}",
                )
            ),
            "percentunit",
            w=6,
        ),
        timeseries(
            "Change feed lag",
            "Per pod: seconds since the last good poll of this directory's change feed started (0 to "
            "poll_seconds while it works). Behind for 5 minutes raises OktaHookChangeFeedBehind. Empty "
            "without change_feed.",
            targets(
                (f"max by (instance) (okta_hook_change_feed_lag_seconds{{{DSEL}}})", "{{instance}}"),
            ),
            "s",
            w=6,
        ),
        timeseries(
            "Answers without this directory's part",
            "Answers per minute sent without this directory's part (outcome enriched_partial), by hook type "
            "and reason: deadline, or its error kind. Rules reading it were left out of those answers. "
            "Above 5 % of the answers for 5 minutes raises OktaHookDirectoryPartMissing.",
            targets(
                (
                    f"60 * sum by (hook_type, reason) (rate(okta_hook_directory_missing_total{{{DSEL}}}[{RI}]))",
                    "{{hook_type}} {{reason}}",
                )
            ),
            "opm",
            w=6,
        ),
    ]


def cache_row() -> list[Panel]:
    """The cache between the hooks and the directory (README, "Answering from memory")."""
    lookups = f"okta_hook_cache_lookups_total{{{DSEL}}}"
    hits = f'okta_hook_cache_lookups_total{{{DSEL},result=~"hit|negative_hit"}}'
    return [
        timeseries(
            "Cache hit ratio",
            "Share of directory lookups answered from memory (fresh entries and fresh 'no such user'), by "
            "hook type. Low after a deploy or a flush (SIGHUP); lower than usual for long: fresh_seconds "
            "too short, max_entries too small (see evictions), or many new users.",
            targets(
                (
                    f"sum by (hook_type) (rate({hits}[{RI}])) / sum by (hook_type) (rate({lookups}[{RI}]))",
                    "{{hook_type}}",
                )
            ),
            "percentunit",
            w=6,
        ),
        timeseries(
            "Answers served stale",
            "Answers per second enriched from an older cache entry because the directory failed (outcome "
            "enriched_stale). Users are still enriched, with data up to stale_seconds old; any of it "
            "raises OktaHookServingStale.",
            targets(
                (
                    f'sum by (hook_type) (rate(okta_hook_requests_total{{{SEL},outcome="enriched_stale"}}[{RI}]))',
                    "{{hook_type}}",
                )
            ),
            "reqps",
            w=6,
        ),
        timeseries(
            "Cache entries",
            "Directory answers held in memory per hook type, summed over pods (bounded by max_entries per "
            "pod and hook type).",
            targets(
                (f"sum by (hook_type, directory) (okta_hook_cache_entries{{{DSEL}}})", "{{hook_type}} {{directory}}")
            ),
            "short",
            w=6,
        ),
        timeseries(
            "Cache churn",
            "Per second: entries evicted by cause (lru: the max_entries bound; entry, deleted, reference, "
            "group, member: a change the directory's change feed reported), background refreshes by result, "
            "Okta retries answered again, flushes by an operator.",
            targets(
                (f"sum by (cause) (rate(okta_hook_cache_evictions_total{{{DSEL}}}[{RI}]))", "evicted: {{cause}}"),
                (f"sum by (result) (rate(okta_hook_cache_refreshes_total{{{DSEL}}}[{RI}]))", "refresh {{result}}"),
                (f"sum(rate(okta_hook_replayed_answers_total{{{SEL}}}[{RI}]))", "replayed answers"),
                (f"sum(rate(okta_hook_cache_flushes_total{{{SEL}}}[{RI}]))", "flushes"),
            ),
            "ops",
            w=6,
        ),
        state_timeline(
            "Change feed current",
            "Per pod: up while the directory's change feed is current (a good poll within two poll "
            "intervals), so caches keep entries feed_fresh_seconds; down: a poll failed or fell behind and "
            "entries live fresh_seconds (OktaHookChangeFeedBehind after 5 minutes).",
            f"min by (directory, instance) (okta_hook_change_feed_current{{{DSEL}}})",
            "{{directory}} {{instance}}",
        ),
        timeseries(
            "Change feed lag",
            "Per pod: seconds since the last good poll of the directory's change feed started. Between 0 and "
            "poll_seconds while it works; a change reaches Okta within about this long.",
            targets(
                (
                    f"max by (directory, instance) (okta_hook_change_feed_lag_seconds{{{DSEL}}})",
                    "{{directory}} {{instance}}",
                )
            ),
            "s",
            w=8,
        ),
        timeseries(
            "Directory changes seen",
            "Per second, all pods: entries the change feed saw changed or deleted, and its polls by result "
            "(ok; resync: started over, entries read before live fresh_seconds; or why a poll failed).",
            targets(
                (f"sum by (kind) (rate(okta_hook_change_feed_changes_total{{{DSEL}}}[{RI}]))", "{{kind}}"),
                (f"sum by (result) (rate(okta_hook_change_feed_polls_total{{{DSEL}}}[{RI}]))", "poll {{result}}"),
            ),
            "ops",
            w=8,
        ),
    ]


def layout(sections: list[Section]) -> list[Panel]:
    """Assigns ids and gridPos: each row header on its own line, panels flowing left to right (24 columns).
    A row with a variable is repeated by Grafana for each of its values, with the panels below it."""
    panels: list[Panel] = []
    next_id = 1
    y = 0
    for title, members, repeat in sections:
        row: Panel = {
            "type": "row",
            "title": title,
            "id": next_id,
            "collapsed": False,
            "panels": [],
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
        }
        if repeat is not None:
            row["repeat"] = repeat
        panels.append(row)
        next_id += 1
        y += 1
        x = 0
        line_height = 0
        for panel in members:
            w, h = panel.pop("_size")
            if x + w > 24:
                y += line_height
                x, line_height = 0, 0
            panel["id"] = next_id
            panel["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
            next_id += 1
            x += w
            line_height = max(line_height, h)
            panels.append(panel)
        y += line_height
    return panels


def variables() -> list[dict[str, Any]]:
    def query_var(name: str, label: str, query: str, all_value: str | None) -> dict[str, Any]:
        var: dict[str, Any] = {
            "name": name,
            "label": label,
            "type": "query",
            "datasource": DATASOURCE,
            "definition": query,
            "query": {"query": query, "refId": f"{name}-variable"},
            "refresh": 2,
            "sort": 1,
            "multi": True,
            "includeAll": True,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [],
            "hide": 0,
            "regex": "",
        }
        if all_value is not None:
            var["allValue"] = all_value
        return var

    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "includeAll": False,
            "multi": False,
            "options": [],
            "refresh": 1,
            "regex": "",
        },
        # ".*" also matches series without a namespace label (Prometheus outside Kubernetes).
        query_var("namespace", "Namespace", "label_values(okta_hook_build_info, namespace)", ".*"),
        query_var("job", "Job", 'label_values(okta_hook_build_info{namespace=~"$namespace"}, job)', None),
        # the configured directories ("default" for the one-directory form): one repeated row each
        query_var(
            "directory",
            "Directory",
            'label_values(okta_hook_directory_up{job=~"$job",namespace=~"$namespace"}, directory)',
            ".*",
        ),
    ]


def annotation_list() -> list[dict[str, Any]]:
    return [
        {
            "builtIn": 1,
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True,
            "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard",
        },
        {
            "name": "Deploys",
            "datasource": DATASOURCE,
            "enable": True,
            "hide": False,
            "iconColor": "blue",
            "expr": f"count by (version) (okta_hook_build_info{{{SEL}}})"
            f" unless count by (version) (okta_hook_build_info{{{SEL}}} offset 5m)",
            "step": "1m",
            "titleFormat": "Deployed {{version}}",
            "textFormat": "",
            "useValueForTime": False,
        },
    ]


def build() -> dict[str, Any]:
    return {
        "id": None,
        "uid": UID,
        "title": TITLE,
        "description": "Answers of okta-ldap-hook to Okta inline hooks: are logins at risk, and why "
        "(deadline, directory, saturation). Alerts: dashboards/alerts.rules.yml.",
        "tags": ["okta-ldap-hook", "okta", "ldap", "slo"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "weekStart": "",
        "links": [
            {
                "title": "Operator guide",
                "type": "link",
                "url": f"{REPO_URL}/docs/operations.md",
                "targetBlank": True,
                "icon": "doc",
                "tooltip": "What to watch, what each alert means",
                "asDropdown": False,
                "includeVars": False,
                "keepTime": False,
                "tags": [],
            },
        ],
        "annotations": {"list": annotation_list()},
        "templating": {"list": variables()},
        "panels": layout(rows()),
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON differs from the source")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run python dashboards/build_dashboard.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
