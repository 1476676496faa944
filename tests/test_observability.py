"""Metrics, traces and logs: what operators see, checked with a real Prometheus, the OTel SDK's
in-memory exporter, the real OTLP/HTTP exporter, and the service's own log lines. None of them may carry
the user's login, email, DN or attribute values."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from connection_support import log_lines
from in_process import InProcessService
from okta_spec import example, registration_for
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from password_import_support import MAX_FAILURES, PEOPLE, RIGHT, PolicySlapd, password_event, password_ldif, ssha
from prometheus_server import PrometheusServer
from sanic import Sanic
from support.answers import unchanged
from support.config import SECRET, directory_config, service_config
from support.servers import HangingServer, RunningService

from service.demo.slapd import SERVICE_BIND_PASSWORD, Slapd, free_port
from service.server import create_apps
from service.settings import Secrets, parse_settings
from service.telemetry import Metrics, Telemetry
from service.telemetry.logs import Redact
from service.telemetry.tracing import provider_from_environment, tracing_enabled

#: What the demo directory holds about the user of Okta's registration example: none of it may leave
#: the service anywhere but in the answer to Okta.
PERSONAL = [
    "rosario.jones",
    "Rosario",
    "Jones",
    "uid=rosario.jones",
    "ou=people",
    "Senior Software Engineer",
    "carol.chen",
    "1002",
    "nobody.here",
    "stranger",
]
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


# -- Prometheus -------------------------------------------------------------------------------------


def test_prometheus_sees_outcomes_latency_bounds_and_fallbacks(
    slapd: Slapd, hanging_directory: HangingServer, start_in_process, tmp_path: Path
) -> None:
    start_service = start_in_process  # Prometheus scrapes the in-process services' real ops ports
    healthy = start_service(service_config(slapd.url))
    # a long socket timeout keeps the background health check stuck on the hanging server for the
    # whole test, so every request meets the deadline (rather than the fast cooldown fallback)
    hanging_config = service_config(
        hanging_directory.url, directory=directory_config(hanging_directory.url, operation_timeout_seconds=30.0)
    )
    hanging_config["hooks"]["registration"]["deadline_seconds"] = 0.5
    hanging = start_service(hanging_config)
    prometheus = PrometheusServer(
        tmp_path / "prometheus", [f"127.0.0.1:{healthy.ops_port}", f"127.0.0.1:{hanging.ops_port}"]
    )
    try:
        prometheus.wait_scraped()
        unknown = registration_for("nobody.here@example.com")
        for _ in range(3):
            assert "commands" in healthy.post("registration", example("registration")).json()
        for _ in range(2):
            assert unchanged(healthy.post("registration", unknown).json())["outcome"] == "no_match"
        assert healthy.post("registration", example("registration"), secret="wrong").status_code == 401
        assert healthy.post("registration", b"{nope").status_code == 400
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: hanging.post("registration", example("registration")), range(4)))
        assert [a.status_code for a in answers] == [200] * 4

        def outcome(name: str) -> str:
            return f'sum(okta_hook_requests_total{{hook_type="registration",outcome="{name}"}})'

        assert prometheus.wait_for(outcome("fallback_deadline"), 4) == 4
        assert prometheus.wait_for(outcome("enriched"), 3) == 3
        assert prometheus.value(outcome("no_match")) == 2
        assert prometheus.value(outcome("unauthorized")) == 1
        assert prometheus.value(outcome("bad_request")) == 1
        assert prometheus.value(outcome("fallback_ldap_error")) == 0
        assert prometheus.value('sum(okta_hook_deadline_exceeded_total{hook_type="registration"})') == 4
        bounds = {
            series["metric"]["le"]
            for series in prometheus.query('http_server_request_duration_seconds_bucket{route="/hooks/registration"}')
        }
        assert {"2.5", "3.0"} <= bounds
        # every hanging request answered before the 2.5 s bucket bound, and none reached Okta's 3 s
        within = 'sum(http_server_request_duration_seconds_bucket{route="/hooks/registration",le="2.5"})'
        total = 'sum(http_server_request_duration_seconds_count{route="/hooks/registration"})'
        assert prometheus.value(within) == prometheus.value(total) == 11
        assert prometheus.value('count(http_server_request_duration_seconds_count{status_code=~"5.."})') is None
        server = hanging_directory.url.removeprefix("ldap://")
        # the one-directory form is the directory named "default" (issue 22): every directory series says so
        assert prometheus.value(f'okta_hook_ldap_up{{directory="default",server="{server}"}}') == 0  # never up
        healthy_server = slapd.url.removeprefix("ldap://")
        assert prometheus.value(f'okta_hook_ldap_up{{directory="default",server="{healthy_server}"}}') == 1
        assert prometheus.value(f'okta_hook_directory_up{{instance="127.0.0.1:{healthy.ops_port}"}}') == 1
        assert prometheus.value(f'okta_hook_directory_up{{instance="127.0.0.1:{hanging.ops_port}"}}') == 0
        assert {
            (series["metric"].get("directory"), series["metric"].get("role"))
            for series in prometheus.query("okta_hook_directory_up")
        } == {("default", "accounts")}
        assert prometheus.value('sum(okta_hook_ldap_operation_duration_seconds_count{directory="default"})') > 0
        assert prometheus.value('count(okta_hook_ldap_operation_duration_seconds_count{directory=""})') is None
        assert prometheus.value('count(okta_hook_ldap_pool_size{directory="default"})') == 2
        # the parts of answers missing and the partial outcome: declared at zero, by directory and reason
        assert prometheus.value(outcome("enriched_partial")) == 0
        missing = prometheus.query('okta_hook_directory_missing_total{hook_type="registration"}')
        assert {series["metric"]["directory"] for series in missing} == {"default"}
        assert {series["metric"]["reason"] for series in missing} >= {"deadline", "timeout", "connect"}
        assert {series["value"][1] for series in missing} == {"0"}
        assert prometheus.value('count(okta_hook_build_info{version="0.1.0"})') == 2
    finally:
        prometheus.stop()


def test_metrics_labels_hold_no_user_data(in_process: InProcessService) -> None:
    service = in_process
    unknown = registration_for("stranger@example.org")
    service.post("registration", example("registration"))
    service.post("registration", unknown)
    service.client.post(service.hook_url + "/hooks/rosario.jones", json={})  # an unmatched path
    metrics = service.metrics()
    # names and labels: sample values are numbers (the test process's memory may well contain "1002")
    series = "\n".join(line.rpartition(" ")[0] for line in metrics.splitlines() if not line.startswith("#"))
    for value in [*PERSONAL, "example.org", "/hooks/rosario"]:
        assert value not in series, value
    assert 'route="unmatched"' in series


# -- traces -----------------------------------------------------------------------------------------


@pytest.fixture
def in_process_app(slapd: Slapd) -> Iterator[tuple[Sanic, InMemorySpanExporter, Telemetry]]:
    Sanic.test_mode = True
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = Telemetry(Metrics(), provider)
    settings = parse_settings(service_config(slapd.url))
    hook_app, _ = create_apps(settings, Secrets((SECRET,), SERVICE_BIND_PASSWORD), telemetry, name=f"t{free_port()}")
    yield hook_app, exporter, telemetry


def test_server_and_ldap_spans(in_process_app) -> None:
    app, exporter, _ = in_process_app

    async def call():
        return await app.asgi_client.post(
            "/hooks/registration",
            json=example("registration"),
            headers={"Authorization": SECRET, "traceparent": TRACEPARENT},
        )

    _, response = asyncio.run(call())

    assert response.status == 200
    assert not {"traceparent", "x-trace-id", "tracestate"} & {h.lower() for h in response.headers}
    spans = exporter.get_finished_spans()
    server = next(span for span in spans if span.kind is SpanKind.SERVER)
    assert server.name == "POST /hooks/registration"
    assert format(server.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"  # incoming trace
    assert format(server.parent.span_id, "016x") == "b7ad6b7169203331"
    assert dict(server.attributes) == {
        "http.request.method": "POST",
        "url.scheme": "http",
        "http.route": "/hooks/registration",
        "http.response.status_code": 200,
        "okta_hook.outcome": "enriched",
    }
    children = [span for span in spans if span.parent is not None and span.parent.span_id == server.context.span_id]
    names = [span.name for span in children]
    assert "LDAP search" in names and "LDAP resolve" in names  # manager DN resolved
    for span in children:
        assert span.kind is SpanKind.CLIENT
        assert span.attributes["server.address"] == "127.0.0.1"
        assert span.attributes["network.protocol.name"] == "ldap"
    assert_no_personal_data(json.dumps([span_dump(span) for span in spans]))


def test_deadline_fallback_is_marked_on_the_span(hanging_directory: HangingServer) -> None:
    Sanic.test_mode = True
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    config = service_config(
        hanging_directory.url, directory=directory_config(hanging_directory.url, operation_timeout_seconds=5.0)
    )
    config["hooks"]["token"]["deadline_seconds"] = 0.3
    app, _ = create_apps(
        parse_settings(config), Secrets((SECRET,), "x"), Telemetry(Metrics(), provider), name=f"t{free_port()}"
    )

    async def call():
        return await app.asgi_client.post("/hooks/token", json=example("token"), headers={"Authorization": SECRET})

    _, response = asyncio.run(call())

    diagnostics = unchanged(response.json)  # Okta's System Log shows why, with no user data
    assert diagnostics["outcome"] == "fallback_deadline"
    assert diagnostics["deadlineStage"] in ("pool_wait", "connect", "bind")
    server = next(span for span in exporter.get_finished_spans() if span.kind is SpanKind.SERVER)
    assert server.attributes["okta_hook.outcome"] == "fallback_deadline"
    assert [event.name for event in server.events] == ["okta_hook.deadline_exceeded"]


class OtlpReceiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP trace endpoint inside the test (no collector binary can be had here)."""

    spans: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        request = ExportTraceServiceRequest.FromString(self.rfile.read(int(self.headers["Content-Length"])))
        for resource_spans in request.resource_spans:
            resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    OtlpReceiver.spans.append(
                        {
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "resource": resource,
                            "attributes": {kv.key: str(kv.value).strip() for kv in span.attributes},
                            "events": [event.name for event in span.events],
                        }
                    )
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_otlp_export_logs_and_exemplars_without_personal_data(slapd: Slapd, start_service) -> None:
    OtlpReceiver.spans = []
    receiver = ThreadingHTTPServer(("127.0.0.1", free_port()), OtlpReceiver)
    threading.Thread(target=receiver.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.server_address[1]}",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_SERVICE_NAME": "okta-ldap-hook-test",
        }
        service = start_service(service_config(slapd.url), env=env)
        unknown = registration_for("stranger@example.org")
        hostile = example("token")
        hostile["data"]["context"]["user"]["profile"]["login"] = "*)(uid=*"
        service.post("registration", example("registration"), headers={"traceparent": TRACEPARENT})
        service.post("registration", unknown)
        service.post("token", hostile)
        service.post("registration", example("registration"), secret="wrong-secret-value")
        openmetrics = service.client.get(
            service.ops_url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        ).text
        assert service.stop() == 0  # flushes the exporter
    finally:
        receiver.shutdown()

    spans = OtlpReceiver.spans
    servers = [span for span in spans if span["name"].startswith("POST ")]
    assert len(servers) == 4
    assert {span["resource"]["service.name"] for span in spans} == {"okta-ldap-hook-test"}
    first = next(span for span in servers if span["trace_id"] == "0af7651916cd43dd8448eb211c80319c")
    assert first["parent"] == "b7ad6b7169203331"
    assert any(span["parent"] == first["span_id"] and span["name"] == "LDAP search" for span in spans)
    # exemplars on the histogram buckets lead to the traces (each bucket keeps its latest one)
    exemplar = r'^http_server_request_duration_seconds_bucket\{.*\} \S+ # \{trace_id="([0-9a-f]{32})"\}'
    exemplars = set(re.findall(exemplar, openmetrics, re.M))
    assert exemplars and exemplars <= {span["trace_id"] for span in servers}
    assert_no_personal_data(json.dumps([without_ids(span) for span in spans]))

    log_lines = [json.loads(line) for line in service.log().splitlines() if line.startswith("{")]
    hook_lines = [line for line in log_lines if line["event"] == "hook_request"]
    assert [line["outcome"] for line in hook_lines] == ["enriched", "no_match", "no_match", "unauthorized"]
    assert hook_lines[0]["event_id"] == example("registration")["eventId"]
    assert hook_lines[0]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert {"hook_type", "status", "duration_ms", "directory_ms", "span_id", "timestamp", "level"} <= set(hook_lines[0])
    assert not any(line.get("logger") == "sanic.access" for line in log_lines)
    text = service.log()
    assert_no_personal_data(
        "\n".join(
            json.dumps(without_ids(json.loads(line))) if line.startswith("{") else line for line in text.splitlines()
        )
    )
    assert SECRET not in text and "wrong-secret-value" not in text and "example.org" not in text


def test_tracing_is_off_without_an_endpoint(service: RunningService) -> None:
    assert not tracing_enabled({})
    assert not tracing_enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"})
    assert type(provider_from_environment({})).__name__ == "NoOpTracerProvider"
    service.post("registration", example("registration"))
    assert service.stop() == 0
    assert '"level": "error"' not in service.log() and "Traceback" not in service.log()


#: Fields made of random hex or clock digits, where a short value such as "1002" can turn up by chance.
_ID_AND_CLOCK_FIELDS = {"trace_id", "span_id", "parent", "timestamp", "duration_ms", "directory_ms"}


def without_ids(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in _ID_AND_CLOCK_FIELDS}


def assert_no_personal_data(text: str) -> None:
    for value in [*PERSONAL, "*)(uid=*"]:
        assert value not in text, f"{value!r} leaked"


def span_dump(span) -> dict:
    return {"name": span.name, "attributes": dict(span.attributes or {}), "events": [e.name for e in span.events]}


# -- the password check's log line: why, never the password ------------------------------------------

#: A person whose password expired long ago under a policy with a maximum age (ppolicy answers the
#: bind with its passwordExpired error).
EXPIRED_LDIF = f"""
dn: uid=exa.expired,{PEOPLE}
objectClass: inetOrgPerson
uid: exa.expired
cn: exa.expired
sn: exa.expired
mail: exa.expired@example.com
userPassword: {ssha(RIGHT)}
pwdPolicySubentry: cn=expiry,ou=services,dc=example,dc=com
pwdChangedTime: 20000101000000Z

dn: cn=expiry,ou=services,dc=example,dc=com
objectClass: organizationalRole
objectClass: pwdPolicy
cn: expiry
pwdAttribute: userPassword
pwdMaxAge: 86400
"""

#: A bug planted in the service process (see tests/test_failure_traces.py): the check of one user raises.
PLANTED_BUG = """
from service.directory import Directory

verify = Directory.verify_password

async def verify_or_crash(self, query, *args, **kwargs):
    if query.identifier == "planted.bug@example.com":
        raise RuntimeError("a bug")
    return await verify(self, query, *args, **kwargs)

Directory.verify_password = verify_or_crash
"""


def test_the_password_check_line_says_why_and_never_the_password(tmp_path: Path, start_service) -> None:
    """Every row of README's password table ("Password import"), read from the log the service process
    writes: ``credential`` and ``credential_reason`` say what happened (they are fixed vocabularies, not
    secrets); the password, the hook secret and the bind password are in no line."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(PLANTED_BUG)
    with PolicySlapd(tmp_path / "ppolicy", password_ldif() + EXPIRED_LDIF) as ldap:
        assert ldap.pid is not None
        directory = directory_config(ldap.url, start_tls=True, ca_file=str(ldap.ca_file), operation_timeout_seconds=2.0)
        config = service_config(ldap.url, directory=directory, hooks={"password_import": {"deadline_seconds": 1.0}})
        service = start_service(config, env={"PYTHONPATH": str(site)})
        rows: list[tuple[str, str, str, str, str]] = []  # username, password, credential, reason, outcome

        def check(username: str, password: str, credential: str, reason: str, outcome: str) -> None:
            event = password_event(username, password)
            event["eventId"] = f"row{len(rows)}"
            rows.append((username, password, credential, reason, outcome))
            assert service.post("password-import", event).status_code == 200

        check("pia.pass@example.com", RIGHT, "verified", "ok", "verified")
        check("pia.pass@example.com", "Wr0ng-Pa55word!", "unverified", "invalid_credentials", "unverified")
        check("exa.expired@example.com", RIGHT, "unverified", "password_expired", "unverified")
        for guess in range(MAX_FAILURES):
            check("lou.locked@example.com", f"lockout-guess-{guess}", "unverified", "invalid_credentials", "unverified")
        check("lou.locked@example.com", RIGHT, "unverified", "locked", "unverified")
        check("noel.nopassword@example.com", "", "unverified", "empty_password", "unverified")
        check("nobody@example.com", "nobody-password", "unverified", "unknown_user", "no_match")
        check("twin@example.com", "twin-password", "unverified", "ambiguous_user", "fallback_ldap_error")
        check("pia.pass@example.com\x00x", "refused-password", "unverified", "refused_identifier", "refused_identifier")
        check("planted.bug@example.com", "bug-password", "error", "internal_error", "fallback_internal_error")
        freeze(ldap.pid)
        try:
            check("pia.pass@example.com", "frozen-password", "error", "deadline", "fallback_deadline")
        finally:
            os.kill(ldap.pid, signal.SIGCONT)
        ldap.stop()
        check("pia.pass@example.com", "down-password", "error", "directory_error", "fallback_ldap_error")
        assert service.stop() == 0

    log = service.log()
    lines = {line["event_id"]: line for line in log_lines(log) if line.get("event") == "hook_request"}
    for number, (_, _, credential, reason, outcome) in enumerate(rows):
        line = lines[f"row{number}"]
        assert (line["credential"], line["credential_reason"], line["outcome"]) == (credential, reason, outcome)
    for secret in {password for _, password, *_ in rows if password} | {SECRET, SERVICE_BIND_PASSWORD}:
        assert secret not in log and json.dumps(secret) not in log, secret


def freeze(pid: int) -> None:
    """SIGSTOP ``pid`` and wait until its threads have all stopped (kill() returns before then)."""
    os.kill(pid, signal.SIGSTOP)
    tasks = Path(f"/proc/{pid}/task")
    for _ in range(500):
        if all((task / "stat").read_text().rpartition(")")[2].split()[0] in ("T", "t") for task in tasks.iterdir()):
            return
        time.sleep(0.01)
    raise AssertionError(f"pid {pid} did not stop")


def test_redaction_is_by_whole_key_and_names_the_secret_header() -> None:
    """The second line of defence: keys that name a secret (the password, the configured secret header,
    bearer tokens) lose their value; keys that merely contain such a word keep theirs."""
    redact = Redact("X-Okta-Hook-Key")
    secret_keys = [
        "password",
        "Authorization",
        "x_okta_hook_key",
        "X-Okta-Hook-Key",
        "bearer",
        "access_token",
        "cookie",
    ]
    kept = {"credential": "verified", "credential_reason": "locked", "hook_type": "token", "reason": "mismatch"}
    event = redact(None, "info", {**dict.fromkeys(secret_keys, "s3cr3t"), **kept})
    assert event == {**dict.fromkeys(secret_keys, "[REDACTED]"), **kept}
