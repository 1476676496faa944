"""Benchmark only: run the service with metrics and the per-request log line replaced by no-ops, to
measure what instrumentation costs. Not for production."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import service.telemetry as telemetry
from service.cli import main


class _Quiet:
    def started(self, *args: object) -> None:
        return None

    def finished(self, *args: object) -> None:
        return None

    def operation(self, *args: object) -> nullcontext[None]:
        return nullcontext()

    def server_up(self, *args: object) -> None:
        pass

    def background_failed(self, *args: object) -> None:
        pass


class NoTelemetry(telemetry.Telemetry):
    def __init__(self) -> None:
        super().__init__()
        self.requests = _Quiet()  # type: ignore[assignment]
        self.directory = _Quiet()  # type: ignore[assignment]


telemetry.Telemetry = NoTelemetry  # type: ignore[misc]
sys.exit(main())
