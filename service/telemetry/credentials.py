"""Watching the credential files (:mod:`service.secret_files`) and who accepted each hook call: metrics
labelled by configuration keys and fixed vocabularies, log lines naming the key; never a value or a path."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import structlog

from service.secret_files import SecretFile, Unusable
from service.telemetry.metrics import Metrics

log = structlog.get_logger("okta_ldap_hook")

RELOAD_RESULTS = ("changed", *(reason.value for reason in Unusable))


class CredentialFileTelemetry:
    """Implements :class:`service.secret_files.FileObserver`."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def watch(self, files: Iterable[SecretFile]) -> None:
        """Report every file's changes from now on, its series declared at zero."""
        for file in files:
            for result in RELOAD_RESULTS:
                self._metrics.credential_file_reloads.labels(file.name, result)
            self._metrics.credential_file_unusable.labels(file.name).set(0)
            file.watch(self)

    def accepted(self, name: str, changed: bool) -> None:
        self._metrics.credential_file_unusable.labels(name).set(0)
        if changed:
            self._metrics.credential_file_reloads.labels(name, "changed").inc()
            log.info("credential_file_changed", file=name)
        else:
            log.info("credential_file_usable_again", file=name)

    def unusable(self, name: str, reason: Unusable) -> None:
        self._metrics.credential_file_reloads.labels(name, reason.value).inc()
        self._metrics.credential_file_unusable.labels(name).set(1)
        log.warning("credential_file_refused", file=name, reason=reason.value, kept="the previous value")


def accepted_counter(metrics: Metrics, sources: Iterable[str]) -> Callable[[str], None]:
    """What the authenticator calls with the source of each accepted hook call: the series of every
    configured source declared at zero and resolved once (this runs on every call)."""
    children = {source: metrics.auth_accepted.labels(source) for source in sources}

    def accepted(source: str) -> None:
        children[source].inc()

    return accepted
