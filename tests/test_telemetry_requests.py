"""The request counters of every hook type (service/telemetry/requests.py): each request is counted
under its own hook type's label, with its outcome. The service runs in-process on the demo slapd, with
the five hook types at once (password import over StartTLS, as it requires)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from in_process import InProcessService
from okta_spec import example
from password_import_support import password_event
from support.config import directory_config, service_config

from service.demo.slapd import DEMO_USER_PASSWORD, Slapd

#: hook type label -> the path under /hooks/, Okta's example event, how many times it is sent (each type a
#: different count: a request counted under another type's label cannot go unnoticed).
SENT: dict[str, tuple[str, dict[str, Any], int]] = {
    "registration": ("registration", example("registration"), 1),
    "token": ("token", example("token"), 2),
    "saml": ("saml", example("saml"), 3),
    "user_import": ("user-import", example("user_import"), 4),
    "password_import": ("password-import", password_event("rosario.jones@example.com", DEMO_USER_PASSWORD), 5),
}


def requests_by_hook(service: InProcessService) -> dict[str, dict[str, float]]:
    """okta_hook_requests_total, hook type -> outcome -> count, leaving out the series at zero."""
    counted: dict[str, dict[str, float]] = {}
    for family in service.telemetry.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == "okta_hook_requests_total" and sample.value:
                counted.setdefault(sample.labels["hook_type"], {})[sample.labels["outcome"]] = sample.value
    return counted


def test_every_hook_type_counts_its_requests_under_its_own_label(
    slapd: Slapd, start_in_process: Callable[..., InProcessService]
) -> None:
    directory = directory_config(slapd.url, start_tls=True, ca_file=str(slapd.ca_file))
    config = service_config(slapd.url, directory=directory)
    config["hooks"]["password_import"] = {}
    service = start_in_process(config)

    for path, event, times in SENT.values():
        for _ in range(times):
            assert service.post(path, event).status_code == 200

    assert requests_by_hook(service) == {
        "registration": {"enriched": 1},
        "token": {"enriched": 2},
        "saml": {"enriched": 3},
        "user_import": {"enriched": 4},
        "password_import": {"verified": 5},
    }
