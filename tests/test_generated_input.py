"""Generated hostile input (hypothesis, derandomized, no example database): identifiers on every hook
type, bodies and secret headers, sent to the service in-process on the real demo slapd.

Whatever arrives: no 5xx; an answer names nobody but the person asked for (the demo directory's own
values are the oracle, read from slapd once); and no identifier, secret or password reaches a log line.
"""

from __future__ import annotations

import json
import tempfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SECRET, service_config
from hostile_support import HOOK_PATHS, InProcessService, captured_logs, event_for, in_process
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from okta_spec import example

from service.demo.slapd import SERVICE_BIND_DN, SERVICE_BIND_PASSWORD, Slapd
from service.directory import Directory, DirectoryConfig, UserSearch

# hypothesis caches Unicode tables and literals in a home directory (./.hypothesis by default): not here
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "okta-ldap-hook-hypothesis")

#: Reproducible (same examples every run), nothing written to the repository, no per-example deadline
#: (the machine is shared and loaded: correctness is asserted here, not speed).
GENERATED = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

#: The demo directory's people, by the mail their entry holds (Mixed.Case is stored in mixed case).
MAILS = [
    "carol.chen@example.com",
    "rosario.jones@example.com",
    "alice.wong@example.com",
    "paren(test)*star@example.com",
    "john.smith@example.com",
    "administrator1@clouditude.net",
    "sally.admin@example.net",
    "user@example.com",
    "Mixed.Case@Example.COM",
    "jose.muller@example.com",
    "zoe.angstrom@example.com",
    "orphan.report@example.com",
    "plain.user@example.com",
]
#: Attributes that tell one person from another in an answer (department is shared by many).
IDENTIFYING = ("employeeNumber", "title")


@pytest.fixture(scope="module")
def people(slapd: Slapd) -> dict[str, set[str]]:
    """Each person's identifying values, read from slapd itself: lower-cased mail -> values."""
    search = UserSearch("ou=people,dc=example,dc=com", filter="(objectClass=inetOrgPerson)")
    config = DirectoryConfig(urls=(slapd.url,), user_search=search, bind_dn=SERVICE_BIND_DN, bind_password_env="X")
    directory = Directory(config, SERVICE_BIND_PASSWORD)
    try:
        found = {}
        for mail in MAILS:
            entry = directory.lookup(mail, frozenset(IDENTIFYING), {})
            assert entry is not None, mail
            found[mail.lower()] = {value for name in IDENTIFYING for value in entry.values(name)}
        return found
    finally:
        directory.close()


@pytest.fixture(scope="module")
def service(slapd: Slapd) -> Iterator[InProcessService]:
    with in_process(service_config(slapd.url)) as running:
        yield running


# -- generators -----------------------------------------------------------------------------------------

#: Characters that have hurt identifier handling somewhere: controls, invisible format characters,
#: spaces of every kind, LDAP filter and DN metacharacters, look-alikes NFKC folds, lone surrogates.
NASTY = [
    *map(chr, range(0x00, 0x20)),
    "\x7f",
    "\x85",
    "\x9f",
    "\u00a0",
    "\u00ad",
    "\u200b",
    "\u200d",
    "\u2028",
    "\u202e",
    "\u3000",
    "\ufeff",
    "\ufffd",
    "\ud800",
    "\udfff",
    "\uff41",
    "\u212a",  # Kelvin sign: folds to K
    "\ufb01",  # fi ligature
    " ",
    "*",
    "(",
    ")",
    "\\",
    "\\00",
    "\\2a",
    "=",
    ",",
    "+",
    "@",
    "%00",
    "\U0001f600",
]

nasty_text = st.lists(st.sampled_from(NASTY) | st.text(max_size=3), min_size=1, max_size=4).map("".join)


@st.composite
def crafted_identifier(draw: st.DrawFn) -> str:
    """A real person's address with something hostile before, inside or after it, or re-cased."""
    mail = draw(st.sampled_from(MAILS))
    junk = draw(nasty_text)
    where = draw(st.sampled_from(["suffix", "prefix", "inside", "case", "long", "exact"]))
    if where == "suffix":
        return mail + junk
    if where == "prefix":
        return junk + mail
    if where == "inside":
        cut = draw(st.integers(0, len(mail)))
        return mail[:cut] + junk + mail[cut:]
    if where == "case":
        return "".join(c.upper() if draw(st.booleans()) else c.lower() for c in mail)
    if where == "long":
        return "x" * draw(st.integers(80, 300)) + mail
    return mail


identifiers = st.one_of(
    crafted_identifier(),
    st.text(min_size=1, max_size=120),
    st.lists(st.sampled_from(NASTY), min_size=1, max_size=10).map("".join),
)

_EXAMPLE = json.dumps(example("registration"))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@st.composite
def hostile_body(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "mutated", "nested", "number", "value", "duplicate", "encoding"]))
    if kind == "bytes":
        return draw(st.binary(max_size=512))
    if kind == "mutated":  # Okta's example with bytes flipped, inserted or cut
        data = bytearray(_EXAMPLE.encode())
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(data)))
            op = draw(st.sampled_from(["insert", "delete", "replace"]))
            piece = draw(st.binary(min_size=1, max_size=4))
            if op == "insert":
                data[at:at] = piece
            elif op == "delete":
                del data[at : at + len(piece)]
            else:
                data[at : at + len(piece)] = piece
        return bytes(data)
    if kind == "nested":
        depth = draw(st.integers(1, 60_000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        middle = "1" if opener != "[" else ""
        return (opener * depth + middle + closer * depth).encode()
    if kind == "number":
        literal = draw(
            st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
            | st.integers(1, 6000).map(lambda n: "9" * n)
            | st.from_regex(r"-?[0-9]{1,40}(\.[0-9]{1,40})?([eE][-+]?[0-9]{1,5})?", fullmatch=True)
        )
        return (_EXAMPLE[:-1] + ', "eventTypeVersion": ' + literal + "}").encode()
    if kind == "value":  # arbitrary JSON in place of the fields the service reads
        event = example("registration")
        field = draw(st.sampled_from(["data", "userProfile", "email", "eventId", "requestType", "eventType"]))
        value = draw(json_values)
        if field in ("data", "eventId", "requestType", "eventType"):
            event[field] = value
        elif field == "userProfile":
            event["data"]["userProfile"] = value
        else:
            event["data"]["userProfile"]["email"] = value
        return json.dumps(event).encode()
    if kind == "duplicate":
        other = draw(st.sampled_from(MAILS))
        return _EXAMPLE.replace('"email": ', f'"email": "{other}", "email": ', 1).encode()
    encoding = draw(st.sampled_from(["utf-16", "utf-32", "latin-1", "utf-8-sig", "utf-16-le"]))
    return _EXAMPLE.replace("Rosario", "Ros\u00e1rio").encode(encoding)


secret_values = st.one_of(
    st.binary(max_size=64),
    st.binary(min_size=4000, max_size=6000),
    st.builds(lambda a, b: a + SECRET.encode() + b, st.binary(max_size=3), st.binary(max_size=3)),
    st.sampled_from([SECRET.encode(), SECRET.upper().encode(), SECRET[:-1].encode(), b"Basic " + SECRET.encode()]),
)


# -- the oracle -------------------------------------------------------------------------------------------


def answer_values(body: dict[str, Any]) -> list[str]:
    """Every string an answer hands to Okta in its commands."""
    found: list[str] = []
    pending: list[Any] = [body.get("commands", [])]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return found


def assert_names_only(body: dict[str, Any], identifier: str, people: dict[str, set[str]]) -> None:
    """The answer enriches only the person the identifier is (exactly, up to case: LDAP mail matching
    is case-insensitive, and so are Okta logins), and carries no one else's values."""
    asked = identifier.lower() if identifier.lower() in people else None
    enrichment = [c for c in body.get("commands", []) if c.get("type") != "com.okta.action.update"]
    if asked is None:
        assert not enrichment, (identifier, body)
        return
    values = set(answer_values(body))
    for mail, theirs in people.items():
        if mail != asked:
            assert not (values & (theirs - people[asked])), (identifier, mail, body)


def assert_logs_clean(events: list[dict[str, Any]], secrets: list[str]) -> None:
    dumped = json.dumps(events, default=str)
    for secret in [SECRET, SERVICE_BIND_PASSWORD, *secrets]:
        assert secret not in dumped, secret
    for mail in MAILS:
        assert mail.lower() not in dumped.lower()
    for event in events:
        assert event.get("status", 200) < 500, event
        assert event.get("log_level") not in ("error", "critical", "exception"), event


# -- the tests ----------------------------------------------------------------------------------------------


def test_generated_identifiers_on_every_hook(service: InProcessService, people: dict[str, set[str]]) -> None:
    sent: list[str] = []

    @settings(GENERATED, max_examples=600)
    @given(hook=st.sampled_from(list(HOOK_PATHS)), identifier=identifiers)
    def run(hook: str, identifier: str) -> None:
        sent.append(identifier)
        answer = service.post_json(HOOK_PATHS[hook], event_for(hook, identifier))
        assert answer.status < 500, (identifier, answer)
        if any("\ud800" <= c <= "\udfff" for c in identifier):
            assert answer.status == 400  # not valid Unicode: the body is refused as a whole
            return
        assert answer.status == 200, (identifier, answer)
        assert_names_only(answer.json(), identifier, people)

    with captured_logs() as events:
        run()
    assert len(sent) >= 600
    # identifiers long enough not to occur by chance in a log line (timestamps, ids, field names)
    distinctive = [i for i in sent if len(i) >= 12 and unicodedata.normalize("NFC", i).isprintable()]
    assert_logs_clean(events, distinctive)
    assert any(i != i.strip() or "\x00" in i for i in sent)  # the generator did reach the nasty cases


def test_generated_bodies(service: InProcessService, people: dict[str, set[str]]) -> None:
    statuses: dict[int, int] = {}

    @settings(GENERATED, max_examples=400)
    @given(body=hostile_body())
    def run(body: bytes) -> None:
        answer = service.post("/hooks/registration", body)
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
        assert answer.status in (200, 400), (body[:200], answer)
        document = answer.json()
        if answer.status == 400:
            assert set(document) == {"message"} and len(answer.body) < 100
        else:
            profile = json.loads(body)["data"]["userProfile"]
            # what the demo configuration looks up: the email, else the login (strings only)
            identifier = next(v for v in (profile.get("email"), profile.get("login")) if isinstance(v, str) and v)
            assert_names_only(document, identifier, people)

    with captured_logs() as events:
        run()
    assert sum(statuses.values()) >= 400
    assert statuses.get(400, 0) > 100  # most generated bodies are unreadable, as intended
    assert_logs_clean(events, [])


trace_headers = st.lists(
    st.tuples(st.sampled_from([b"traceparent", b"tracestate", b"baggage"]), st.binary(max_size=64)), max_size=2
)


def test_generated_secret_headers(service: InProcessService, caplog: pytest.LogCaptureFixture) -> None:
    """The secret header, and the trace headers read before authentication."""
    presented: list[bytes] = []
    body = _EXAMPLE.encode()

    @settings(GENERATED, max_examples=200)
    @given(values=st.lists(secret_values, min_size=0, max_size=3), trace=trace_headers)
    def run(values: list[bytes], trace: list[tuple[bytes, bytes]]) -> None:
        presented.extend(values)
        presented.extend(value for _, value in trace)
        headers = [(b"authorization", value) for value in values] + trace
        answer = service.post("/hooks/registration", body, secret=None, headers=headers)
        if values == [SECRET.encode()]:
            assert answer.status == 200
        else:
            assert answer.status == 401, (values, answer)
            assert answer.body == b""

    with captured_logs() as events:
        run()
    assert len(presented) >= 200
    dumped = json.dumps(events, default=str) + caplog.text  # OpenTelemetry logs through the stdlib
    for value in presented:
        text = value.decode(errors="surrogateescape")
        if len(text) >= 6:
            assert text not in dumped
    assert "\\udc" not in dumped
    reasons = {event.get("reason") for event in events if event.get("status") == 401}
    assert reasons == {"missing", "mismatch", "malformed"}


# -- HTTP framing (issue 19, item 3) ------------------------------------------------------------------------------
# Generated request heads bent the ways that let a request be smuggled (tests/framing_support.py: a
# space or another byte before the colon, control bytes, obs-fold, repeated or conflicting framing
# fields, bent framing values, no or two Hosts, empty names), each carrying a complete hook request with
# the right secret as its body. The generator knows which heads it bent: the check must refuse exactly
# those, and the real process must answer a bent one once (400, closed) and never the request inside.


def test_generated_heads_the_check_refuses_exactly_the_bent_ones() -> None:
    from framing_support import heads

    from service.http_framing import check_request_head

    seen = {"bent": 0, "straight": 0}

    @settings(GENERATED, max_examples=3000)
    @given(head=heads())
    def run(head: Any) -> None:
        refusal = check_request_head(b"\r\n".join(head.lines))
        assert (refusal is not None) == head.malformed, (head.bends, head.lines, refusal)
        seen["bent" if head.malformed else "straight"] += 1

    run()
    assert seen["bent"] > 1000 and seen["straight"] > 300, seen


def test_generated_heads_against_the_real_process(slapd: Slapd, start_service: Any) -> None:
    from conftest import RunningService
    from framing_support import PROBE, exchange, heads

    running: RunningService = start_service(service_config(slapd.url))
    sent = {"bent": 0, "straight": 0}

    @settings(GENERATED, max_examples=80)
    @given(head=heads())
    def run(head: Any) -> None:
        answered = exchange(running.hook_port, head.request() + PROBE)
        assert answered.closed, (head.bends, answered.raw)
        if head.malformed:  # one answer, and the connection closed: nothing after the head was read
            assert answered.statuses == [400], (head.bends, head.lines, answered.raw)
            assert answered.responses[0].header("connection") == "close"
        else:  # the smuggled request was the body (not Okta's JSON: a 400), then the probe
            assert answered.statuses == [400, 404], (head.lines, answered.raw)
        sent["bent" if head.malformed else "straight"] += 1

    run()
    assert sent["bent"] >= 40 and sent["straight"] >= 10, sent
    log = running.log()
    assert "Traceback" not in log and '"status": 500' not in log and SECRET not in log
