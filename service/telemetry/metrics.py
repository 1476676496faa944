"""Prometheus metrics: what operators alert on before the hook starts failing Okta logins.

Names follow ops-conventions §1: a generic RED histogram (``http_server_request_duration_seconds``, the
OTel name for the same thing) and ``okta_hook_*`` domain metrics. Labels only ever hold values from
small fixed sets: hook types, outcomes, stages, error kinds, route templates, configured server names,
configured directory names (``directory``: the name under ``directories:``, ``default`` for the
one-directory form ``directory:``).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from service import __version__

#: Dense below one second, with bounds exactly at the hook's 2.5 s deadline and Okta's 3 s limit, so
#: "share of answers later than Okta waits" is exact rather than interpolated.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 10.0)
LDAP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5)


class Metrics:
    """Every metric of the service, registered in ``registry`` (a fresh one by default, with the
    process, platform and GC collectors, so several instances can live in one test process)."""

    def __init__(self, registry: CollectorRegistry | None = None, revision: str = "unknown") -> None:
        if registry is None:
            registry = CollectorRegistry()
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                registry.register(collector)
        self.registry = registry
        #: What /metrics exposes: the registry without ``*_created`` series.
        self.exposed: Collector = WithoutCreated(registry)
        self.request_duration = Histogram(
            "http_server_request_duration_seconds",
            "Time to answer a request on the hook port, from the arrival of its first byte to the response.",
            ["method", "route", "status_code"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "http_server_requests_in_flight", "Requests being answered on the hook port.", registry=registry
        )
        self.hook_requests = Counter(
            "okta_hook_requests",
            "Hook requests by hook type and outcome (what Okta effectively received).",
            ["hook_type", "outcome"],
            registry=registry,
        )
        self.denials = Counter(
            "okta_hook_denials",
            "Registrations denied by the failure policy, by the reason that triggered it.",
            ["hook_type", "reason"],
            registry=registry,
        )
        self.refusals = Counter(
            "okta_hook_refusals",
            "Requests on the hook port answered without a hook answer (4xx, client gone), by route template "
            "and reason (a fixed vocabulary).",
            ["route", "reason"],
            registry=registry,
        )
        self.deadline_exceeded = Counter(
            "okta_hook_deadline_exceeded",
            "Hook requests answered with a fallback because the deadline passed, by what the directory "
            "work was doing then.",
            ["hook_type", "stage"],
            registry=registry,
        )
        self.groups_truncated = Counter(
            "okta_hook_groups_truncated",
            "Answers whose group claims lack some of the person's groups: cut to a rule's max "
            "(limit=claim_max) or from a nested walk stopped by max_depth/max_groups (limit=walk_bound).",
            ["hook_type", "limit"],
            registry=registry,
        )
        self.refused_identifiers = Counter(
            "okta_hook_refused_identifiers",
            "Events whose login or email was never looked up because no real Okta identifier looks like "
            "it (control characters, too long, outside the company's domains...), by reason.",
            ["hook_type", "reason"],
            registry=registry,
        )
        self.password_verifications = Counter(
            "okta_hook_password_verifications",
            "Password import checks by result: verified, unverified (the person: wrong password, locked, "
            "unknown...) or error (the directory could not say; Okta asks again at the next sign-in), and "
            "reason (a fixed vocabulary).",
            ["result", "reason"],
            registry=registry,
        )
        self.ldap_duration = Histogram(
            "okta_hook_ldap_operation_duration_seconds",
            "Duration of LDAP operations, by directory and operation.",
            ["directory", "operation"],
            buckets=LDAP_BUCKETS,
            registry=registry,
        )
        self.ldap_errors = Counter(
            "okta_hook_ldap_errors",
            "Failed LDAP operations by directory, operation and error type.",
            ["directory", "operation", "error_type"],
            registry=registry,
        )
        self.ldap_up = Gauge(
            "okta_hook_ldap_up",
            "1 when the last background bind to the server succeeded, else 0.",
            ["directory", "server"],
            registry=registry,
        )
        self.directory_up = Gauge(
            "okta_hook_directory_up",
            "1 when at least one of the directory's servers passed its last background check, else 0 "
            "(0 before the first check). role: accounts (it holds people: down, their answers fall back) or "
            "joined (read through a join: down, answers leave without its part).",
            ["directory", "role"],
            registry=registry,
        )
        self.directory_missing = Counter(
            "okta_hook_directory_missing",
            "Answers sent without a directory's part (outcome enriched_partial), by hook type, directory and "
            "reason: deadline, or the directory's error kind (timeout, connect, tls, bind_failed, "
            "session_lost, ambiguous, server_error, other).",
            ["hook_type", "directory", "reason"],
            registry=registry,
        )
        self.pool_size = Gauge(
            "okta_hook_ldap_pool_size", "Open LDAP connections, by directory.", ["directory"], registry=registry
        )
        self.pool_in_use = Gauge(
            "okta_hook_ldap_pool_in_use",
            "LDAP connections lent to a lookup, by directory.",
            ["directory"],
            registry=registry,
        )
        self.pool_waiting = Gauge(
            "okta_hook_ldap_pool_waiting",
            "Lookups waiting for a free LDAP worker, by directory.",
            ["directory"],
            registry=registry,
        )
        self.cache_lookups = Counter(
            "okta_hook_cache_lookups",
            "Directory lookups through the cache, by result: hit (fresh), negative_hit (fresh 'no such "
            "user'), miss (asked the directory), stale (the directory failed; an older answer served). One cache "
            "per hook type and directory.",
            ["hook_type", "directory", "result"],
            registry=registry,
        )
        self.cache_entries = Gauge(
            "okta_hook_cache_entries",
            "Directory answers held in the cache of a hook type and directory.",
            ["hook_type", "directory"],
            registry=registry,
        )
        self.cache_evictions = Counter(
            "okta_hook_cache_evictions",
            "Cache entries dropped before their time, by cause: lru (the max_entries bound), or a change the "
            "directory's change feed reported: entry (the person's entry changed), deleted, reference (an entry "
            "the answer refers to: a memberOf group, a manager), group (a group the person is listed in), "
            "member (a changed group lists the person: perhaps just added).",
            ["hook_type", "directory", "cause"],
            registry=registry,
        )
        self.cache_refreshes = Counter(
            "okta_hook_cache_refreshes",
            "Background refreshes of entries about to go stale, by result (ok, or the error type).",
            ["hook_type", "directory", "result"],
            registry=registry,
        )
        self.cache_flushes = Counter(
            "okta_hook_cache_flushes", "Times an operator emptied the cache (SIGHUP).", registry=registry
        )
        self.change_feed_changes = Counter(
            "okta_hook_change_feed_changes",
            "Directory entries the change feed saw changed (kind=changed: modified, added, moved) or deleted.",
            ["directory", "kind"],
            registry=registry,
        )
        self.change_feed_polls = Counter(
            "okta_hook_change_feed_polls",
            "Polls of the directory's change feed by result: ok, resync (started over: first poll, another "
            "server, an answer cut by a size limit), or why it failed (behind: slower than the feed may lag; "
            "timeout, connect, session_lost, server_error...).",
            ["directory", "result"],
            registry=registry,
        )
        self.change_feed_lag = Gauge(
            "okta_hook_change_feed_lag_seconds",
            "Seconds since the last good poll of the directory's change feed started.",
            ["directory"],
            registry=registry,
        )
        self.change_feed_current = Gauge(
            "okta_hook_change_feed_current",
            "1 while the change feed is current (caches keep entries feed_fresh_seconds); 0 when a poll failed "
            "or none succeeded for two poll intervals (entries live fresh_seconds).",
            ["directory"],
            registry=registry,
        )
        self.replayed_answers = Counter(
            "okta_hook_replayed_answers",
            "Events Okta sent again (same eventId) answered with the answer given the first time.",
            ["hook_type"],
            registry=registry,
        )
        self.oauth_fetch_errors = Counter(
            "okta_hook_oauth_jwks_fetch_errors",
            "Failed fetches of the OAuth issuer's metadata or key set, by reason.",
            ["reason"],
            registry=registry,
        )
        self.oauth_last_fetch = Gauge(
            "okta_hook_oauth_jwks_last_success_timestamp_seconds",
            "Unix time of the last successful fetch of the OAuth issuer's key set (0: never).",
            registry=registry,
        )
        self.oauth_keys = Gauge(
            "okta_hook_oauth_jwks_keys", "Usable signing keys of the OAuth issuer held in memory.", registry=registry
        )
        self.oauth_rejections = Counter(
            "okta_hook_oauth_token_rejections",
            "Bearer tokens refused (the call is answered 401), by reason.",
            ["reason"],
            registry=registry,
        )
        self.auth_accepted = Counter(
            "okta_hook_auth_accepted",
            "Hook calls accepted, by the configured source whose secret they carried (auth.secret_env[i], "
            "auth.secret_files[i]) or auth.oauth for a bearer token: when the old secret's source stays at "
            "zero, it can be removed.",
            ["source"],
            registry=registry,
        )
        self.credential_file_reloads = Counter(
            "okta_hook_credential_file_reloads",
            "Changes seen in a credential file (file: its configuration key, e.g. directory.bind_password_file), "
            "by result: changed (the new value is in use) or why it was not taken (empty, unreadable, "
            "not_utf8, changing, invalid): the previous value stays in use.",
            ["file", "result"],
            registry=registry,
        )
        self.credential_file_unusable = Gauge(
            "okta_hook_credential_file_unusable",
            "1 while a credential file's content cannot be taken (empty, unreadable, half-written, not a CA "
            "bundle): the service keeps the previous value, and would not start with this file.",
            ["file"],
            registry=registry,
        )
        self.bind_password_refused = Gauge(
            "okta_hook_ldap_bind_password_refused",
            "1 while the directory has refused the service account's current password: no new connection "
            "is opened to that directory until the password changes (its file), SIGHUP or a restart. 0 otherwise.",
            ["directory"],
            registry=registry,
        )
        self.build_info = Gauge(
            "okta_hook_build_info", "Always 1; labels carry the version.", ["version", "revision"], registry=registry
        )
        self.build_info.labels(__version__, revision).set(1)


class WithoutCreated(Collector):
    """A view of ``registry`` without the ``*_created`` samples of counters and histograms.

    They double the series count and no dashboard or alert reads them. prometheus_client's own switch
    (``disable_created_metrics()``) is process-wide and would change every registry in the process
    (tests build several); this view filters one registry, at scrape time only."""

    _WITH_CREATED = ("counter", "histogram", "summary", "gaugehistogram")

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for metric in self._registry.collect():
            if metric.type in self._WITH_CREATED:
                created = metric.name + "_created"
                metric.samples = [sample for sample in metric.samples if sample.name != created]
            yield metric
