"""Bugs leave a trace, and no personal data: an exception in a hook, in the request path and in the
background tasks is logged with its type and frames (file, line, function), never its message or
locals; the hook still answers, and the background loop keeps running."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from connection_support import log_lines, metric_value, wait_until
from fault_injection import PERSONAL
from okta_spec import example
from support.config import service_config

from service.demo.slapd import Slapd

TESTS = Path(__file__).resolve().parent


def faulty_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        f"import sys\nsys.path.insert(0, {str(TESTS)!r})\nimport fault_injection\nfault_injection.install()\n"
    )
    return {"PYTHONPATH": str(site)}


def assert_traceback(line: dict[str, Any], kind: str) -> None:
    chain = line["exception"]
    assert chain[0]["type"] == kind, chain
    frames = chain[0]["frames"]
    assert frames and all(set(frame) == {"file", "line", "function"} for frame in frames), frames
    assert any(frame["file"].endswith("fault_injection.py") for frame in frames), frames  # where it was raised


def test_bugs_are_logged_with_frames_but_no_personal_data(slapd: Slapd, start_service, tmp_path: Path) -> None:
    service = start_service(service_config(slapd.url), env=faulty_env(tmp_path))

    # in the hook's guarded part: still Okta's answer (the fallback), and the traceback in the log line
    answer = service.post("registration", example("registration"))
    assert answer.status_code == 200
    diagnostics = answer.json()["debugContext"]
    assert (diagnostics["outcome"], diagnostics["error"]) == ("fallback_internal_error", "KeyError")
    # outside it: a real 500, counted as such
    crash = service.post("saml", example("saml"))
    assert crash.status_code == 500
    assert crash.json() == {"message": "Internal Server Error"}

    def ldap_up() -> float:
        return metric_value(service.metrics(), "okta_hook_ldap_up")

    assert wait_until(ldap_up, timeout=15), "the health loop stopped after its first round failed"
    metrics = service.metrics()
    assert metric_value(metrics, "okta_hook_requests_total", hook_type="saml", outcome="server_error") == 1
    assert metric_value(metrics, "http_server_request_duration_seconds_count", status_code="500") == 1
    assert metric_value(metrics, "okta_hook_requests_total", outcome="fallback_internal_error") == 1

    log = service.log()
    for word in ("alice", "uid=", "example.com"):
        assert word not in log, word
    lines = log_lines(log)
    hook_lines = [line for line in lines if line.get("event") == "hook_request"]
    assert sorted(line["hook_type"] for line in hook_lines) == ["registration", "saml"]
    hook_line, saml_line = sorted(hook_lines, key=lambda line: line["hook_type"])
    assert hook_line["level"] == "error" and hook_line["error_kind"] == "KeyError"
    assert_traceback(hook_line, "KeyError")
    (unexpected,) = [line for line in lines if line.get("event") == "unexpected_error"]
    assert unexpected["route"] == "/hooks/saml"
    assert_traceback(unexpected, "RuntimeError")
    assert (saml_line["status"], saml_line["outcome"]) == (500, "server_error")
    failed = {line["task"]: line for line in lines if line.get("event") == "background_task_failed"}
    assert set(failed) == {"health_check", "prewarm"}, failed
    assert_traceback(failed["health_check"], "ValueError")
    assert_traceback(failed["prewarm"], "LookupError")
    assert PERSONAL not in json.dumps(lines)
