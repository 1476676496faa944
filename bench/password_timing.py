"""How long the password import hook takes for an unknown user, a known user with a wrong password
and the right one (issue 19, item 8: does the answer time tell whether a user exists?).

    .venv/bin/python bench/password_timing.py [--calls 200]

The service runs as a real process (``python -m service serve``) on the demo slapd, over StartTLS and
then over LDAPS. Calls are sequential and interleaved (unknown, wrong, right, unknown...) so that load
from other work on the machine falls on every kind alike. Latency is measured by the client, from
sending the request to the whole answer. Results go to stdout (Markdown).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from benchmark import BASE_DN, SECRET, percentile, run_service, stop

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from service.demo.slapd import DEMO_USER_PASSWORD, SERVICE_BIND_DN, Slapd, demo_ldif  # noqa: E402

KNOWN = "alice.wong@example.com"
CASES = {
    "unknown user": ("nobody.here@example.com", "some-password"),
    "known user, wrong password": (KNOWN, "wrong-password"),
    "known user, right password": (KNOWN, DEMO_USER_PASSWORD),
}


def event(username: str, password: str) -> dict[str, Any]:
    return {
        "eventType": "com.okta.user.credential.password.import",
        "eventId": "bench",
        "data": {"context": {"credential": {"username": username, "password": password}}},
    }


def config(url: str, ldap: Slapd, start_tls: bool) -> dict[str, Any]:
    return {
        "auth": {"header": "Authorization", "secret_env": ["OKTA_HOOK_SECRET"]},
        "directory": {
            "urls": [url],
            "bind_dn": SERVICE_BIND_DN,
            "bind_password_env": "LDAP_BIND_PASSWORD",
            "start_tls": start_tls,
            "ca_file": str(ldap.ca_file),
            "user_search": {"base_dn": BASE_DN, "filter": "(objectClass=inetOrgPerson)"},
        },
        "hooks": {"password_import": {}},
        "logging": {"level": "warning", "format": "json"},
    }


def measure(hook_url: str, calls: int) -> dict[str, list[float]]:
    """Milliseconds per call, by case; the first round (connections, TLS session setup) is left out."""
    timings: dict[str, list[float]] = {name: [] for name in CASES}
    with httpx.Client(headers={"Authorization": SECRET}, timeout=10) as client:
        for round_number in range(calls + 1):
            for name, (username, password) in CASES.items():
                started = time.perf_counter()
                answer = client.post(hook_url, json=event(username, password))
                elapsed = (time.perf_counter() - started) * 1000
                assert answer.status_code == 200, answer.text
                verdict = answer.json()["commands"][0]["value"]["credential"]
                assert verdict == ("VERIFIED" if name.endswith("right password") else "UNVERIFIED"), name
                if round_number:
                    timings[name].append(elapsed)
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    print("| transport | case | p50 ms | p90 ms | p99 ms | mean ms |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="password-timing-") as tmp, Slapd(Path(tmp) / "ldap", demo_ldif()) as ldap:
        for transport, url, start_tls in (("StartTLS", ldap.url, True), ("LDAPS", ldap.ldaps_url, False)):
            process, hook_url, _ = run_service(config(url, ldap, start_tls), Path(tmp), {})
            try:
                timings = measure(hook_url.replace("/hooks/registration", "/hooks/password-import"), args.calls)
            finally:
                stop(process)
            for name, samples in timings.items():
                p50, p90, p99 = (percentile(samples, f) for f in (0.5, 0.9, 0.99))
                mean = sum(samples) / len(samples)
                print(f"| {transport} | {name} | {p50:.1f} | {p90:.1f} | {p99:.1f} | {mean:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
