"""What a test asks of the service, however it runs (a real process or in-process): hook calls with
the hook secret, and the metrics it exports."""

from __future__ import annotations

from typing import Any

import httpx


class HookClient:
    """Mixed into ``support.servers.RunningService`` and ``in_process.InProcessService``."""

    hook_url: str
    ops_url: str
    client: httpx.Client
    #: The secret a call carries unless it says otherwise.
    default_secret: str

    def post(
        self,
        hook: str,
        body: dict[str, Any] | bytes,
        secret: str | None = "default",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """POST ``body`` to ``/hooks/<hook>`` with the default secret, another one, or none (``None``)."""
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if secret == "default":
            secret = self.default_secret
        if secret is not None:
            all_headers["Authorization"] = secret
        content = body if isinstance(body, bytes) else None
        json_body = None if isinstance(body, bytes) else body
        return self.client.post(f"{self.hook_url}/hooks/{hook}", content=content, json=json_body, headers=all_headers)

    def metrics(self) -> str:
        return self.client.get(self.ops_url + "/metrics").text

    def metric(self, series: str) -> float:
        """The value of one exported series, e.g. ``okta_hook_requests_total{hook_type="token",...}``."""
        for line in self.metrics().splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
        raise AssertionError(f"{series} not exported")
