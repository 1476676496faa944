"""The several-directory rows of bench/benchmark.py: their directories' data, their configurations, and a
relay that puts a network's latency in front of a loopback slapd.

Issue 22 promises that an answer's directory time is about the slowest directory's, not the sum, for the
lookups that do not depend on each other. The rows measure it against the one-directory row:

- two account directories, no routing: the generated users split in two slapds (each person in exactly
  one), both asked for every login, in parallel;
- the account directory + HR joined by attribute: HR is searched for the account entry's
  ``employeeNumber``, so only once that entry has arrived (sequential by necessity);
- the account directory + HR joined by identifier: HR is searched for Okta's identifier (its ``mail``),
  beside the account directory (in parallel).

On loopback a directory answers in about a millisecond, so parallel and sequential hardly differ there;
each row also runs with a fixed delay added in front of every directory (:class:`LatencyRelay`), where
the difference is the delay itself.
"""

from __future__ import annotations

import asyncio
import copy
import socket
import threading
import time
from typing import Any

from service.demo.directory_data import DEPARTMENTS, base_entries, generate_users, ldif_entry, user_mail
from service.demo.hr_data import (
    HR_PEOPLE_DN,
    HR_SERVICE_BIND_DN,
    HR_SERVICE_BIND_PASSWORD,
    HR_SERVICE_PASSWORD_HASH,
    HR_SUFFIX,
)
from service.demo.slapd import DEFAULT_SUFFIX

__all__ = [
    "HR_DEPARTMENTS",
    "HR_ENV",
    "LatencyRelay",
    "account_and_hr",
    "generated_hr",
    "hr_department",
    "split_users",
    "two_account_directories",
]

#: HR's department names differ from the account directory's (``Engineering`` there), so that a probe of
#: one answer tells which directory a value came from.
HR_DEPARTMENTS = tuple(f"HR {department}" for department in DEPARTMENTS)
EMPLOYEE_NUMBER_BASE = 100_000  # generate_users: user i has employeeNumber 100000 + i
#: The environment the HR directory's bind password is read from (its service account has its own).
HR_ENV = {"HR_BIND_PASSWORD": HR_SERVICE_BIND_PASSWORD}


def hr_department(user: int) -> str:
    """The HR department of generated user ``user`` (what a joined answer's ``department`` must be)."""
    return HR_DEPARTMENTS[user % len(HR_DEPARTMENTS)]


def generated_hr(count: int) -> str:
    """LDIF of an HR directory (suffix dc=hr,dc=example,dc=com, HR's own service password) with one record
    per generated user: the user's ``employeeNumber`` (the join by attribute) and ``mail`` (the join by
    identifier), an HR department, title, cost centre and division."""
    parts = [
        base_entries(
            HR_SUFFIX,
            service_password=HR_SERVICE_BIND_PASSWORD,
            service_password_hash=HR_SERVICE_PASSWORD_HASH,
        )
    ]
    for i in range(count):
        number = str(EMPLOYEE_NUMBER_BASE + i)
        parts.append(
            ldif_entry(
                f"uid=e{number},{HR_PEOPLE_DN}",
                [
                    ("objectClass", "inetOrgPerson"),
                    ("uid", f"e{number}"),
                    ("cn", f"Employee {number}"),
                    ("sn", number),
                    ("mail", user_mail(i)),
                    ("employeeNumber", number),
                    ("departmentNumber", hr_department(i)),
                    ("title", "Staff" if i % 3 else "Senior Staff"),
                    ("businessCategory", f"CC-{1000 + i % 50}"),
                    ("ou", "Technology" if i % 2 else "Operations"),
                ],
            )
        )
    return "".join(parts)


def split_users(count: int) -> tuple[str, str]:
    """The generated users in two directories, each person in exactly one: users 0 .. count/2 - 1 with the
    groups (``generate_users(count // 2)``, every group member is among them), and the others with no group.

    Both directories have the suffix dc=example,dc=com and the same service account. The second half's
    managers are in the first directory, so their manager DN reads "no such entry" in their own: the same
    two round trips as a resolved manager, and an answer without ``managerEmail``."""
    first = generate_users(count // 2)
    half = count // 2
    kept = [base_entries(DEFAULT_SUFFIX)]
    for record in generate_users(count).split("\n\n"):
        if record.startswith("dn: uid=user") and int(record[len("dn: uid=user") :].split(",", 1)[0]) >= half:
            kept.append(record.strip("\n") + "\n\n")
    return first, "".join(kept)


def _account(directory: dict[str, Any], url: str) -> dict[str, Any]:
    """The one-directory section as an account directory of ``directories:``, asked for every login."""
    account = copy.deepcopy(directory)
    account["urls"] = [url]
    account["user_search"]["domains"] = []  # ask it for every login
    return account


def two_account_directories(config: dict[str, Any], first_url: str, second_url: str) -> dict[str, Any]:
    """``config`` (the one-directory form) with its directory replaced by two account directories holding
    the same kind of people, no routing: both asked for every login, in parallel. The rules are unchanged
    (from the directory that holds the person)."""
    directory = config["directory"]
    return {
        **{key: value for key, value in config.items() if key != "directory"},
        "directories": {"north": _account(directory, first_url), "south": _account(directory, second_url)},
    }


def account_and_hr(config: dict[str, Any], account_url: str, hr_url: str, *, by_identifier: bool) -> dict[str, Any]:
    """``config`` with HR beside its directory: department, title and cost centre from HR, the rest
    (employee number, manager's mail, groups) from the account directory. HR is joined by the account
    entry's ``employeeNumber`` (asked once that entry arrived) or, ``by_identifier``, by Okta's identifier
    compared with HR's ``mail`` (asked beside the account directory)."""
    directory = config["directory"]
    hr = copy.deepcopy(directory)
    hr.update(
        urls=[hr_url],
        bind_dn=HR_SERVICE_BIND_DN,
        bind_password_env="HR_BIND_PASSWORD",
        user_search={
            "base_dn": HR_PEOPLE_DN,
            "scope": "subtree",
            "filter": "(objectClass=inetOrgPerson)",
            "match_attribute": "mail" if by_identifier else "employeeNumber",
        },
        join={"identifier": True} if by_identifier else {"attribute": "employeeNumber"},
    )
    hooks = copy.deepcopy(config["hooks"])
    profile = hooks["registration"]["profile"]
    profile.update(
        department={"attribute": "departmentNumber", "directory": "hr"},
        title={"attribute": "title", "directory": "hr"},
        costCenter={"attribute": "businessCategory", "directory": "hr"},
    )
    hooks["registration"]["on_missing_directory"] = "continue"
    return {
        **{key: value for key, value in config.items() if key not in ("directory", "hooks")},
        "directories": {"accounts": _account(directory, account_url), "hr": hr},
        "hooks": hooks,
    }


class LatencyRelay:
    """A TCP relay on loopback in front of ``127.0.0.1:upstream`` that holds every chunk the client sends
    for ``delay`` seconds before forwarding it (answers pass at once): each LDAP request-response round
    trip takes ``delay`` longer, as over a network with that round-trip time. Chunks keep their order and
    are not serialised behind each other: a chunk is sent at its arrival time + delay.

    Runs its own event loop in a daemon thread of the benchmark process (which only waits on wrk), so
    the service under test is unchanged."""

    def __init__(self, upstream: int, delay: float) -> None:
        self._upstream = upstream
        self._delay = delay
        self._loop = asyncio.new_event_loop()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.url = f"ldap://127.0.0.1:{self.port}"
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def serve() -> asyncio.Server:
            return await asyncio.start_server(self._connection, sock=self._listener)

        self._server = self._loop.run_until_complete(serve())
        self._ready.set()
        self._loop.run_forever()

    async def _connection(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self._upstream)
        except OSError:
            client_writer.close()
            return
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        # asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and an accepted socket of
        # socket.create_server has proto 0: without it, slapd's search result entry and its "done"
        # (two writes) were held by Nagle behind the client's delayed ACK, 40 ms in one answer of ten.
        client_writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        async def receive() -> None:  # from the client: stamped with the time it may leave
            while data := await client_reader.read(65536):
                queue.put_nowait((time.monotonic() + self._delay, data))
            queue.put_nowait((0.0, b""))

        async def forward() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                if (wait := due - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                server_writer.write(data)
                await server_writer.drain()
            server_writer.close()

        async def answer() -> None:
            while data := await server_reader.read(65536):
                client_writer.write(data)
                await client_writer.drain()
            client_writer.close()

        tasks = [asyncio.ensure_future(coroutine) for coroutine in (receive(), forward(), answer())]
        try:
            await asyncio.gather(*tasks)
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # a connection reset, or the relay closing: this connection ends here
        finally:
            for task in tasks:
                task.cancel()
            client_writer.close()
            server_writer.close()

    def close(self) -> None:
        """Stop listening and end the connections still open (the service's pooled ones)."""

        async def shut() -> None:
            self._server.close()
            others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
