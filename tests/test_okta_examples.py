"""Every hook type can be tried: the demo data holds Okta's documented example event of each type, and
``okta-ldap-hook try`` sends them all to the running demo (a real process), which answers each one
enriched, in a shape Okta's response schema accepts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import okta_spec
import pytest
from demo_support import Demo, running_demo
from support.config import REPO

from service.demo.examples import examples, send
from service.demo.run import DEMO_SECRET
from service.demo.slapd import free_port
from service.hooks.registry import HookType

#: Which of Okta's spec examples each demo file is (unmodified).
SPEC_EXAMPLE_OF = {
    "registration-event.json": "registration",
    "registration-progressive-event.json": "registration_progressive",
    "token-event.json": "token",
    "saml-event.json": "saml",
    "user-import-event.json": "user_import",
    "password-import-event.json": "password_import",
}
#: Okta's password import example aimed at a demo user, with the password the demo LDIF gives everyone.
RETARGETED = {"password-import-event.json": ("alice.wong@example.com", "demo-user-password")}
#: What a right answer says, per example: enriched, or for password import, verified.
OUTCOMES = {name: "verified" if name in RETARGETED else "enriched" for name in SPEC_EXAMPLE_OF}


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    with running_demo() as started:
        yield started


def test_the_demo_data_has_okta_s_own_example_of_every_hook_type() -> None:
    found = examples()
    assert {example.name for example in found} == set(SPEC_EXAMPLE_OF)
    assert {example.hook_type for example in found} == set(HookType)
    for example in found:
        expected = okta_spec.example(SPEC_EXAMPLE_OF[example.name])
        if example.name in RETARGETED:
            username, password = RETARGETED[example.name]
            expected["data"]["context"]["credential"] = {"username": username, "password": password}
        assert json.loads(example.body) == expected, example.name


def test_the_demo_answers_every_example_enriched(demo: Demo) -> None:
    for example in examples():
        answer = send(example, demo.hook_url, "Authorization", DEMO_SECRET)
        assert answer.status == 200, example.name
        assert answer.body is not None
        assert answer.body["debugContext"]["outcome"] == OUTCOMES[example.name], (example.name, answer.body)
        assert answer.body["commands"], example.name
        okta_spec.validate_response(example.hook_type.value, answer.body)


def test_try_prints_every_answer(demo: Demo) -> None:
    """The command the banner prints, run as the reader would, with the demo's secret found by itself."""
    command = re.search(r"installed: (okta-ldap-hook try --url \S+)\)", demo.banner).group(1)
    env = {key: value for key, value in os.environ.items() if key != "OKTA_HOOK_SECRET"}
    result = subprocess.run(
        [sys.executable, "-m", "service", *command.split()[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in SPEC_EXAMPLE_OF:
        assert f"[{name}]" in result.stdout
    assert result.stdout.count("HTTP 200") == len(SPEC_EXAMPLE_OF)
    assert result.stdout.count("outcome: enriched") == len(SPEC_EXAMPLE_OF) - len(RETARGETED)
    assert result.stdout.count("outcome: verified") == len(RETARGETED)
    assert '{"credential": "VERIFIED"}' in result.stdout
    for command_type in (
        "com.okta.user.profile.update",
        "com.okta.user.progressive.profile.update",
        "com.okta.identity.patch",
        "com.okta.access.patch",
        "com.okta.assertion.patch",
        "com.okta.appUser.profile.update",
    ):
        assert command_type in result.stdout
    assert '"department": "Engineering"' in result.stdout  # rosario.jones, Okta's registration example


def test_try_with_a_wrong_secret_fails_visibly(demo: Demo) -> None:
    env = {**os.environ, "OKTA_HOOK_SECRET": "not-the-demo-secret"}
    result = subprocess.run(
        [sys.executable, "-m", "service", "try", "--url", demo.hook_url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
    )
    assert result.returncode == 1
    assert result.stdout.count("HTTP 401") == len(SPEC_EXAMPLE_OF)


def test_try_without_a_service_says_so_in_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = subprocess.run(
        [sys.executable, "-m", "service", "try", "--url", url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 1
    assert f"nothing answers at {url}" in result.stderr
    assert "make run" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_the_okta_setup_guide_covers_every_hook_type_and_is_linked() -> None:
    """docs/okta-setup.md names every endpoint and Okta type the service answers, and the README, the
    install guide and the chart's install notes point to it."""
    guide = (REPO / "docs" / "okta-setup.md").read_text()
    for hook_type in HookType:
        assert hook_type.path in guide, hook_type
        assert hook_type.event_type in guide, hook_type
    assert "Email verification" in guide
    assert "(docs/okta-setup.md)" in (REPO / "README.md").read_text()
    assert "(okta-setup.md)" in (REPO / "docs" / "install.md").read_text()
    assert "docs/okta-setup.md" in (REPO / "chart" / "okta-ldap-hook" / "templates" / "NOTES.txt").read_text()
