"""Several directories against real servers: the demo's accounts slapd, the emea slapd and the HR slapd
(service/demo/data/several-config.yaml), and the Samba AD DC as corporate AD beside the HR slapd.
Routing by domain, joins, a person in two account directories, a directory killed mid-request or frozen,
and password import across directories. The same logic on fakes, with a fake clock: test_federation.py."""

from __future__ import annotations

import copy
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from in_process import InProcessService
from okta_spec import registration_for
from password_import_support import password_event

from service.demo.ad_data import ADA_TOKEN_GROUPS
from service.demo.hr_data import HR_SERVICE_BIND_PASSWORD, HR_SUFFIX, hr_ldif
from service.demo.run import ad_document, several_document, several_passwords
from service.demo.samba import SambaDC
from service.demo.slapd import DEMO_USER_PASSWORD, Slapd, demo_ldif

ROSARIO = "rosario.jones@example.com"  # accounts, employee 1002, in HR
INGRID = "ingrid.larsen@emea.example.com"  # emea, employee 4001, in HR
JOHN = "john.smith@example.com"  # in accounts AND in emea

#: Rosario's registration answer: the HR values (they differ from the accounts directory's on purpose),
#: her employee number and groups from the accounts directory.
ROSARIO_PROFILE = {
    "department": "Platform Engineering",
    "title": "Staff Software Engineer",
    "costCenter": "CC-1100",
    "division": "Technology",
    "managerEmail": "carol.chen@example.com",
    "employeeNumber": "1002",
    "groups": ["all-staff", "engineering"],
}


@pytest.fixture
def own_hr(tmp_path: Path) -> Iterator[Slapd]:
    """An HR slapd of this test's own, to kill or freeze without touching the session's."""
    with Slapd(tmp_path / "hr", hr_ldif(), suffix=HR_SUFFIX, service_bind_password=HR_SERVICE_BIND_PASSWORD) as hr:
        yield hr


def start_several(
    start_in_process: Callable[..., InProcessService],
    servers: dict[str, Slapd],
    *,
    remember: bool = True,
    **changes: Any,
) -> InProcessService:
    """several-config.yaml on ``servers``; ``changes``: directory name -> keys merged into it;
    ``remember=False``: the registration hook's cache and retry memory off (every call asks every directory)."""
    document = several_document(servers)
    if not remember:
        document["hooks"]["registration"]["cache"] = {"fresh_seconds": 0, "stale_seconds": 0, "replay_seconds": 0}
    for name, change in changes.items():
        document["directories"][name].update(change)
    return start_in_process(document, several_passwords(servers))


def profile(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    commands = response.json().get("commands", [])
    return dict(commands[0]["value"]) if commands else {}


def context(response: httpx.Response) -> dict[str, Any]:
    return dict(response.json()["debugContext"])


def register(service: InProcessService, email: str) -> httpx.Response:
    return service.post("registration", registration_for(email))


def test_one_answer_joins_the_account_directory_and_hr(
    slapd: Slapd, emea_slapd: Slapd, hr_slapd: Slapd, start_in_process: Callable[..., InProcessService]
) -> None:
    service = start_several(start_in_process, {"accounts": slapd, "emea": emea_slapd, "hr": hr_slapd})

    rosario = register(service, ROSARIO)
    ingrid = register(service, INGRID)

    assert profile(rosario) == ROSARIO_PROFILE
    assert context(rosario)["outcome"] == "enriched"
    assert profile(ingrid)["employeeNumber"] == "4001" and profile(ingrid)["department"]
    assert context(ingrid)["outcome"] == "enriched"


def test_a_person_in_two_account_directories_is_routed_by_domain_or_ambiguous(
    slapd: Slapd, emea_slapd: Slapd, hr_slapd: Slapd, start_in_process: Callable[..., InProcessService]
) -> None:
    """John is in both account directories. With domains, example.com is the accounts directory's alone;
    without, he is ambiguous and nobody's values are answered, while Ingrid (in emea only) still is."""
    servers = {"accounts": slapd, "emea": emea_slapd, "hr": hr_slapd}
    routed = start_several(start_in_process, servers)
    unrouted_search = {
        name: {**several_document(servers)["directories"][name]["user_search"], "domains": []}
        for name in ("accounts", "emea")
    }
    unrouted = start_several(
        start_in_process,
        servers,
        accounts={"user_search": unrouted_search["accounts"]},
        emea={"user_search": unrouted_search["emea"]},
    )

    assert context(register(routed, JOHN))["outcome"] == "enriched"
    ambiguous = register(unrouted, JOHN)
    assert context(ambiguous) == {**context(ambiguous), "outcome": "fallback_ldap_error", "error": "ambiguous"}
    assert "commands" not in ambiguous.json()
    assert context(register(unrouted, INGRID))["outcome"] == "enriched"


def test_a_dead_directory_costs_only_the_logins_it_holds(
    slapd: Slapd, hr_slapd: Slapd, closed_port_url: str, start_in_process: Callable[..., InProcessService]
) -> None:
    """emea is down (nothing listens): an accounts login is answered whole, an emea login falls back."""
    service = with_emea_dead(start_in_process, slapd, hr_slapd, closed_port_url)

    assert profile(register(service, ROSARIO)) == ROSARIO_PROFILE
    emea_login = context(register(service, INGRID))
    assert (emea_login["outcome"], emea_login["error"]) == ("fallback_ldap_error", "connect")


def with_emea_dead(
    start_in_process: Callable[..., InProcessService], accounts: Slapd, hr: Slapd, closed_port_url: str
) -> InProcessService:
    """several-config.yaml with emea's URL where nothing listens."""
    servers = {"accounts": accounts, "hr": hr}
    document = _document(servers, emea={"urls": [closed_port_url]})
    return start_in_process(document, several_passwords(servers) | {"EMEA_BIND_PASSWORD": "unused"})


def _document(servers: dict[str, Slapd], **replaced: dict[str, Any]) -> dict[str, Any]:
    """several-config.yaml with ``servers`` for some directories and ``replaced`` keys for the others."""
    document = several_document({**servers, **{name: next(iter(servers.values())) for name in replaced}})
    for name, change in replaced.items():
        document["directories"][name].update(change)
        document["directories"][name].pop("ca_file", None)
    return document


def test_hr_killed_mid_request_leaves_the_account_directorys_part(
    slapd: Slapd, emea_slapd: Slapd, own_hr: Slapd, start_in_process: Callable[..., InProcessService]
) -> None:
    """HR is stopped (SIGSTOP) so the lookup is in flight, then killed: the answer comes before the
    deadline with the accounts directory's values, and says HR's part is missing."""
    service = start_several(start_in_process, {"accounts": slapd, "emea": emea_slapd, "hr": own_hr}, remember=False)
    assert profile(register(service, ROSARIO)) == ROSARIO_PROFILE  # every connection open and warm
    pid = own_hr.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    answers: list[httpx.Response] = []
    started = time.monotonic()
    asking = threading.Thread(target=lambda: answers.append(register(service, ROSARIO)))
    asking.start()
    time.sleep(0.3)  # the HR search is on the wire, unanswered
    os.kill(pid, signal.SIGKILL)
    asking.join(10)
    elapsed = time.monotonic() - started

    (answer,) = answers
    diagnostics = context(answer)
    assert diagnostics["outcome"] == "enriched_partial"
    assert diagnostics["missingDirectories"].startswith("hr:")
    assert profile(answer) == {"employeeNumber": "1002", "groups": ["all-staff", "engineering"]}
    assert elapsed < 2.9  # within Okta's 3 s, whatever HR does


def test_hr_frozen_is_answered_at_the_deadline_with_what_arrived(
    slapd: Slapd, emea_slapd: Slapd, own_hr: Slapd, start_in_process: Callable[..., InProcessService]
) -> None:
    service = start_several(start_in_process, {"accounts": slapd, "emea": emea_slapd, "hr": own_hr}, remember=False)
    assert profile(register(service, ROSARIO)) == ROSARIO_PROFILE
    pid = own_hr.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        answer = register(service, ROSARIO)
        elapsed = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)

    diagnostics = context(answer)
    assert diagnostics["outcome"] == "enriched_partial"
    # the HR search's own timeout (operation_timeout_seconds: 2.0) or the deadline, whichever comes first
    assert diagnostics["missingDirectories"] in ("hr:timeout", "hr:deadline")
    assert profile(answer) == {"employeeNumber": "1002", "groups": ["all-staff", "engineering"]}
    assert elapsed < 2.9
    # HR back: whole answers again (the broken connection is replaced)
    deadline = time.monotonic() + 10
    while context(answer := register(service, ROSARIO))["outcome"] != "enriched" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert profile(answer) == ROSARIO_PROFILE


def test_directories_health_is_reported_per_directory(
    slapd: Slapd, hr_slapd: Slapd, closed_port_url: str, start_in_process: Callable[..., InProcessService]
) -> None:
    service = with_emea_dead(start_in_process, slapd, hr_slapd, closed_port_url)
    deadline = time.monotonic() + 10
    while True:
        report = service.client.get(service.ops_url + "/directories").json()
        if not report["emea"]["up"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)

    assert {name: entry["up"] for name, entry in report.items()} == {"accounts": True, "emea": False, "hr": True}
    assert list(report["accounts"]["servers"].values()) == [True]
    # the gauge agrees, and tells the alerts what an outage costs: a directory holding people, or a joined one
    exported = [line for line in service.metrics().splitlines() if line.startswith("okta_hook_directory_up{")]
    assert sorted(exported) == [
        'okta_hook_directory_up{directory="accounts",role="accounts"} 1.0',
        'okta_hook_directory_up{directory="emea",role="accounts"} 0.0',
        'okta_hook_directory_up{directory="hr",role="joined"} 1.0',
    ]


@pytest.mark.parametrize(("login", "home"), [(ROSARIO, "accounts"), (INGRID, "emea")])
def test_password_import_checks_the_password_in_the_directory_holding_the_person(
    login: str,
    home: str,
    slapd: Slapd,
    emea_slapd: Slapd,
    hr_slapd: Slapd,
    start_in_process: Callable[..., InProcessService],
) -> None:
    service = start_several(start_in_process, {"accounts": slapd, "emea": emea_slapd, "hr": hr_slapd})

    right = service.post("password-import", password_event(login, DEMO_USER_PASSWORD))
    wrong = service.post("password-import", password_event(login, DEMO_USER_PASSWORD + "x"))

    assert right.json()["commands"][0]["value"] == {"credential": "VERIFIED"}
    assert wrong.json()["commands"][0]["value"] == {"credential": "UNVERIFIED"}
    assert context(wrong)["reason"] == "invalid_credentials"


# -- the Samba AD DC as corporate AD, the HR slapd beside it ----------------------------------------


def test_groups_from_active_directory_and_department_from_hr_in_one_token(
    samba_dc: SambaDC, hr_slapd: Slapd, start_in_process: Callable[..., InProcessService]
) -> None:
    """Ada is in AD (ada@corp.example.com, employeeID 2001) and in HR (employeeNumber 2001): her
    registration gets AD's groups (tokenGroups) and HR's department and title, in one answer."""
    document = copy.deepcopy(ad_document(samba_dc))
    corp = document.pop("directory")
    hr = several_document_hr(hr_slapd)
    document["directories"] = {"corp": corp, "hr": hr}
    document["hooks"] = {
        "registration": {
            "subject": "email",
            "profile": {
                "department": {"attribute": "departmentNumber", "directory": "hr"},
                "title": {"attribute": "title", "directory": "hr"},
                "groups": {"source": "groups", "nested": True},
                "adDepartment": "department",
            },
        }
    }
    service = start_in_process(
        document, {"LDAP_BIND_PASSWORD": samba_dc.service_bind_password, "HR_BIND_PASSWORD": HR_SERVICE_BIND_PASSWORD}
    )

    answer = register(service, "ada@corp.example.com")

    values = profile(answer)
    assert context(answer)["outcome"] == "enriched"
    assert (values["department"], values["title"]) == ("Payroll", "Head of Payroll")
    assert values["adDepartment"] == "Finance"  # the AD value is there too, under its own name
    assert values["groups"] == sorted(ADA_TOKEN_GROUPS)


def several_document_hr(hr: Slapd) -> dict[str, Any]:
    """The HR directory of several-config.yaml on ``hr``, joined to AD's ``employeeID``."""
    document = several_document({"accounts": hr, "emea": hr, "hr": hr})
    section: dict[str, Any] = document["directories"]["hr"]
    section["join"] = {"attribute": "employeeID"}
    return section


def test_two_hr_records_for_one_join_value_leave_hrs_part_missing(
    slapd: Slapd, emea_slapd: Slapd, hr_slapd: Slapd, start_in_process: Callable[..., InProcessService]
) -> None:
    """Alice's employee number (1003) is held by two HR records: HR's part is ambiguous, so it is left
    out rather than guessed; her account directory's values are answered."""
    service = start_several(start_in_process, {"accounts": slapd, "emea": emea_slapd, "hr": hr_slapd})

    answer = register(service, "alice.wong@example.com")

    assert context(answer)["outcome"] == "enriched_partial"
    assert context(answer)["missingDirectories"] == "hr:ambiguous"
    assert set(profile(answer)) == {"employeeNumber", "groups"}


#: People whose join value is an LDAP filter: HR must compare it as the exact bytes, so that it matches
#: nobody (not everyone, not Rosario).
HOSTILE_JOINS = {
    "star@example.com": "*",
    "paren@example.com": "1002)(employeeNumber=*",
    "escape@example.com": "1002\\2a",
}


def _hostile_people() -> str:
    return "".join(
        f"dn: uid={mail.partition('@')[0]},ou=people,dc=example,dc=com\n"
        "objectClass: inetOrgPerson\n"
        f"uid: {mail.partition('@')[0]}\ncn: Hostile\nsn: Hostile\nmail: {mail}\n"
        + f"employeeNumber: {value}\n\n"
        for mail, value in HOSTILE_JOINS.items()
    )


def test_a_join_value_is_compared_as_it_is_never_as_a_filter(
    tmp_path: Path, emea_slapd: Slapd, hr_slapd: Slapd, start_in_process: Callable[..., InProcessService]
) -> None:
    """Account entries whose employeeNumber is ``*``, ``1002)(employeeNumber=*`` or an escape: HR finds
    nobody for each (its rules get their defaults, the answer is whole), never every record (ambiguous)
    nor Rosario's (1002). (Spaces around a value are another matter: HR's matching rule for
    employeeNumber, caseIgnoreMatch, finds " 1002" equal to "1002", as the directory defines it.)"""
    with Slapd(tmp_path / "accounts", demo_ldif() + "\n" + _hostile_people()) as accounts:
        service = start_several(
            start_in_process, {"accounts": accounts, "emea": emea_slapd, "hr": hr_slapd}, remember=False
        )
        for mail in HOSTILE_JOINS:
            answer = register(service, mail)

            assert context(answer)["outcome"] == "enriched", mail
            assert profile(answer)["costCenter"] == "unassigned", mail  # HR: nobody, so the default
            assert "department" not in profile(answer), mail
