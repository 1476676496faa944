"""The README's first command: the demo answers the printed curl with an enriched registration, and
Ctrl-C stops the service and its directory, leaving nothing running."""

from __future__ import annotations

import json
import re
import socket
import subprocess

from demo_support import running_demo
from support.config import REPO


def test_demo_answers_the_printed_curl_and_stops_cleanly() -> None:
    with running_demo() as demo:
        curl = re.search(r"^\s+(curl .*)$", demo.banner, re.M).group(1)
        answer = subprocess.run(curl, shell=True, capture_output=True, text=True, timeout=10, cwd=REPO)
        ldap_url = re.search(r"demo directory : (ldap://\S+)", demo.banner).group(1)

    profile = json.loads(answer.stdout)["commands"][0]["value"]
    assert profile["department"] == "Engineering"
    assert profile["managerEmail"] == "carol.chen@example.com"
    assert demo.process.returncode == 0, demo.output
    port = int(ldap_url.rsplit(":", 1)[1])
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the demo slapd is still running"
    assert '"level": "error"' not in demo.output and "Traceback" not in demo.output


def test_several_directories_demo_joins_hr_to_the_account_directory_and_stops_them_all() -> None:
    """`make run DIRECTORY=several`: the printed curl (rosario.jones@example.com, in the accounts
    directory) is answered with department, title, cost centre and manager from HR and groups from the
    accounts directory; Ctrl-C stops the three slapds."""
    with running_demo("several") as demo:
        curl = re.search(r"^\s+(curl .*)$", demo.banner, re.M).group(1)
        answer = subprocess.run(curl, shell=True, capture_output=True, text=True, timeout=10, cwd=REPO)
        ldap_urls = re.findall(r"(ldap://127\.0\.0\.1:\d+)", demo.banner)

    body = json.loads(answer.stdout)
    assert body["commands"][0]["value"] == {
        "department": "Platform Engineering",  # HR (the accounts directory says Engineering)
        "title": "Staff Software Engineer",  # HR
        "costCenter": "CC-1100",  # HR
        "division": "Technology",  # HR
        "managerEmail": "carol.chen@example.com",  # HR's manager DN, resolved in HR
        "employeeNumber": "1002",  # the accounts directory
        "groups": ["all-staff", "engineering"],  # the accounts directory
    }
    assert body["debugContext"]["outcome"] == "enriched"
    assert demo.process.returncode == 0, demo.output
    assert len(set(ldap_urls)) == 3, demo.banner
    for url in ldap_urls:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", int(url.rsplit(":", 1)[1]))) != 0, f"{url} still running"
    assert '"level": "error"' not in demo.output and "Traceback" not in demo.output
