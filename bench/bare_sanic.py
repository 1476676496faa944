"""Benchmark only: the HTTP ceiling. A bare Sanic app, one process, configured like the service (no
access log), answering every POST with a fixed JSON body and doing nothing else.

    python bench/bare_sanic.py PORT
"""

from __future__ import annotations

import sys

from sanic import Request, Sanic, json
from sanic.response import HTTPResponse

app = Sanic("bare", configure_logging=False)
app.config.update({"ACCESS_LOG": False, "MOTD": False, "KEEP_ALIVE_TIMEOUT": 75})
ANSWER = {"commands": [{"type": "com.okta.user.profile.update", "value": {"title": "Engineer"}}]}


@app.post("/hooks/registration")
async def registration(request: Request) -> HTTPResponse:
    return json(ANSWER)


@app.get("/readyz")
async def ready(request: Request) -> HTTPResponse:
    return json({})


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), single_process=True, access_log=False, motd=False)
