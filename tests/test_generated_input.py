"""Generated hostile input (hypothesis, derandomized, no example database): identifiers on every hook
type, bodies and secret headers, sent to the service in-process on the real demo slapd.

Whatever arrives: no 5xx; an answer names nobody but the person asked for (the demo directory's own
values are the oracle, read from slapd once); and no identifier, secret or password reaches a log line.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ldap3
import pytest
from hostile_support import HOOK_PATHS, InProcessService, captured_logs, event_for, in_process
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from ldap3.core.exceptions import LDAPSASLPrepError
from ldap3.protocol.sasl.sasl import sasl_prep
from oauth_support import AUDIENCE, CLIENT_ID, SCOPE, IssuerServer, SigningKey, claims, signed, with_member
from okta_spec import example
from password_import_support import PEOPLE, PolicySlapd, password_event, password_ldif, ssha
from support.config import SECRET, directory_config, service_config

from service.demo.slapd import SERVICE_BIND_DN, SERVICE_BIND_PASSWORD, Slapd
from service.directory import Directory, DirectoryConfig, UserSearch
from service.oauth import BearerVerifier, IssuerKeys, OAuthConfig, Rejection

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

PASSWORD_PATH = "/hooks/password-import"

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


#: One character that no login or email begins or ends with: every C0 and C1 control and DEL, spaces and
#: separators of every kind, invisible format characters. Python's ``str.strip()`` (and so the directory
#: query's normalisation) removes many of them (NEL, U+0085, among them), so such an address, let
#: through, finds the real person. The NEL comes first: the example hypothesis tries early.
EDGE = [
    "\x85",
    *map(chr, range(0x80, 0xA0)),
    *map(chr, range(0x00, 0x20)),
    "\x7f",
    "\u00a0",
    "\u00ad",
    "\u061c",
    "\u1680",
    "\u180e",
    *map(chr, range(0x2000, 0x200F)),
    "\u2028",
    "\u2029",
    "\u202e",
    "\u205f",
    "\u2060",
    "\u3000",
    "\ufeff",
    "\ufff9",
]


@st.composite
def address_with_an_edge(draw: st.DrawFn) -> str:
    """A real person's address with one :data:`EDGE` character at its end (or, less often, its start):
    composed explicitly, because joining random pieces almost never ends a string in a C1 control."""
    mail = draw(st.sampled_from(MAILS))
    edge = draw(st.sampled_from(EDGE))
    return edge + mail if draw(st.integers(0, 3)) == 0 else mail + edge


identifiers = st.one_of(
    crafted_identifier(),
    st.text(min_size=1, max_size=120),
    st.lists(st.sampled_from(NASTY), min_size=1, max_size=10).map("".join),
    address_with_an_edge(),
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


# -- bearer tokens: the header and the claims read as strictly as an event (issue 19, item 7) -----------

#: Claims a forger would repeat, and where the repeat goes: before the claim (a first-wins reader takes
#: the forgery) or after it (PyJWT's json.loads, last-wins, does).
CLAIMS = ["exp", "nbf", "iat", "iss", "aud", "cid", "scp", "sub", "jti", "ver"]
NOT_NUMBERS = st.one_of(
    st.integers(0, 2**40).map(str), st.booleans(), st.none(), st.text(max_size=6), st.lists(st.integers(), max_size=2)
)


@pytest.fixture(scope="module")
def bearer() -> Iterator[tuple[str, Callable[[str], Rejection | None]]]:
    """The issuer's URL, and the verifier's answer for a token (one event loop for every call)."""
    issuer = IssuerServer([TOKEN_KEY])
    config = OAuthConfig(issuer=issuer.issuer, audience=AUDIENCE, scopes=(SCOPE,), client_ids=(CLIENT_ID,))
    verifier = BearerVerifier(config, IssuerKeys(config))
    loop = asyncio.new_event_loop()
    try:
        yield issuer.issuer, lambda token: loop.run_until_complete(verifier.check(f"Bearer {token}"))
    finally:
        loop.close()
        issuer.stop()


TOKEN_KEY = SigningKey.rsa("generated-1")


@st.composite
def loose_token(draw: st.DrawFn, issuer: str) -> str:
    """A token with a good signature over JSON that is not strictly read as claims: a key twice (in the
    claims or the header), a NumericDate that is not a number, or text that is not UTF-8."""
    document = claims(issuer)
    header = {"alg": TOKEN_KEY.algorithm, "typ": "JWT", "kid": TOKEN_KEY.kid}
    kind = draw(st.sampled_from(["duplicate", "header_duplicate", "numeric_date", "encoding"]))
    if kind == "duplicate":
        name = draw(st.sampled_from(CLAIMS))
        repeat = f"{json.dumps(name)}: {json.dumps(draw(json_values))}"
        if draw(st.booleans()):
            return signed(TOKEN_KEY, with_member(document, repeat))
        return signed(TOKEN_KEY, ("{" + repeat + ", " + json.dumps(document)[1:]).encode())
    if kind == "header_duplicate":
        name = draw(st.sampled_from(sorted(header)))
        value = draw(st.sampled_from(["none", "HS256", TOKEN_KEY.algorithm, TOKEN_KEY.kid, "JWT"]))
        return signed(TOKEN_KEY, json.dumps(document).encode(), with_member(header, f'"{name}": "{value}"'))
    if kind == "numeric_date":
        document[draw(st.sampled_from(["exp", "nbf", "iat"]))] = draw(NOT_NUMBERS)
        return signed(TOKEN_KEY, json.dumps(document).encode())
    encoding = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32", "latin-1", "utf-8-sig"]))
    document["sub"] = header["note"] = "Jos\u00e9"  # not ASCII: Latin-1 differs from UTF-8
    text = json.dumps(document, ensure_ascii=False)
    if draw(st.booleans()):
        return signed(TOKEN_KEY, text.encode(encoding))
    return signed(TOKEN_KEY, text.encode(), json.dumps(header, ensure_ascii=False).encode(encoding))


def test_generated_loose_tokens_are_malformed(bearer: tuple[str, Callable[[str], Rejection | None]]) -> None:
    issuer, check = bearer
    assert check(signed(TOKEN_KEY, json.dumps(claims(issuer)).encode())) is None  # the same token, strict

    @settings(GENERATED, max_examples=300)
    @given(token=loose_token(issuer))
    def run(token: str) -> None:
        assert check(token) is Rejection.MALFORMED, token

    run()


# -- a reused eventId: only the very same event is answered from memory (issue 19, item 2) --------------

#: Claims the demo configuration's token hook patches, in the token that carries them.
TOKEN_CLAIMS = {"identity": ["department", "title"], "access": ["directory_groups", "manager"]}


#: JSON values an Okta event can carry: finite numbers of at most 32 digits (the strict reader refuses
#: the rest, which is the hostile-JSON tests' business, not this one's).
okta_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**15), 10**15)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@st.composite
def edited_token_event(draw: st.DrawFn) -> dict[str, Any]:
    """Okta's token example (its fixed eventId kept) as an admin would edit it to try things: a token
    left out, claims the token already has, another person."""
    event = example("token")
    for _ in range(draw(st.integers(1, 3))):
        edit = draw(st.sampled_from(["drop_token", "claim_present", "other_person", "whitespace"]))
        if edit == "drop_token":
            event["data"].pop(draw(st.sampled_from(sorted(TOKEN_CLAIMS))), None)
        elif edit == "claim_present":
            token = draw(st.sampled_from(sorted(TOKEN_CLAIMS)))
            if token in event["data"]:
                event["data"][token]["claims"][draw(st.sampled_from(TOKEN_CLAIMS[token]))] = draw(okta_json_values)
        elif edit == "other_person":
            event["data"]["context"]["user"]["profile"]["login"] = draw(st.sampled_from(MAILS))
        else:
            event["data"]["context"]["note"] = " " * draw(st.integers(1, 3))
    return event


def test_generated_reused_event_ids_get_their_own_answer(service: InProcessService) -> None:
    """Whatever the body, the answer under Okta's example eventId (remembered for the original) is
    the answer the same body gets under an eventId of its own."""
    fresh = iter(range(10**6))

    def commands(event: dict[str, Any]) -> Any:
        answer = service.post_json(HOOK_PATHS["token"], event)
        assert answer.status == 200, answer
        return answer.json().get("commands")

    original = example("token")

    @settings(GENERATED, max_examples=150)
    @given(event=edited_token_event())
    def run(event: dict[str, Any]) -> None:
        commands(original)  # the example itself, first: its answer is the one remembered for the eventId
        reused = commands(event)
        assert reused == commands({**event, "eventId": f"own{next(fresh)}"}), event

    run()


# -- password import: the bytes typed, and nothing else (issue 19, item 1) ----------------------------------

#: Characters that SASLprep (RFC 4013) or Unicode normalization would change or refuse: spaces of
#: other kinds, characters mapped to nothing, combining marks, right-to-left and bidi controls,
#: private use, compatibility forms, controls and NUL.
PASSWORD_ODD = [
    "\u00a0", "\u2003", "\u3000", "\u00ad", "\u200b", "\u2060", "\ufe0f", "\u180b", "\u0301", "\u0308",
    "\u05d0", "\u0627", "\u200f", "\u202e", "\ue000", "\U000f0000", "\uff21", "\ufb01", "\u2126", "\x00",
    "\x07", "\t", "\x1b", "\x7f", "\x85", "\U0001f511",
]  # fmt: skip

#: Any text Okta could send as a password: JSON strings hold no lone surrogate (the strict parser
#: refuses them), so neither does this.
typed_passwords = st.lists(
    st.sampled_from(PASSWORD_ODD) | st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=24
).map("".join)


@pytest.fixture(scope="module")
def password_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PolicySlapd, InProcessService]]:
    """A slapd of this section's own (its passwords are rewritten here) and the password import hook
    on it over StartTLS."""
    with PolicySlapd(tmp_path_factory.mktemp("generated-passwords"), password_ldif()) as ldap:
        directory = directory_config(ldap.url, start_tls=True, ca_file=str(ldap.ca_file))
        config = {
            "auth": {"header": "Authorization", "secret_env": ["OKTA_HOOK_SECRET"]},
            "directory": directory,
            "hooks": {"password_import": {}},
            "logging": {"level": "info", "format": "json"},
        }
        with in_process(config) as running:
            yield ldap, running


def test_generated_passwords_verify_as_typed_and_never_as_a_variant(
    password_service: tuple[PolicySlapd, InProcessService],
) -> None:
    """Whatever the person's password is, typing it exactly is VERIFIED, typing its NFKC or SASLprep
    form instead is UNVERIFIED, and neither is ever a directory error. About 60 binds: enough to
    cover the odd characters, few enough to stay fast."""
    ldap, service = password_service
    dn = f"uid=pia.pass,{PEOPLE}"
    admin = ldap3.Connection(
        ldap3.Server("127.0.0.1", port=ldap.port), ldap.admin_dn, ldap.admin_password, auto_bind=True
    )
    typed: list[str] = []

    def answer(password: str) -> dict[str, Any]:
        body: dict[str, Any] = service.post_json(PASSWORD_PATH, password_event("pia.pass@example.com", password)).json()
        return body["debugContext"]

    @settings(GENERATED, max_examples=30)
    @given(password=typed_passwords)
    def run(password: str) -> None:
        typed.append(password)
        assert admin.modify(dn, {"userPassword": [(ldap3.MODIFY_REPLACE, [ssha(password)])]}), admin.result
        assert answer(password)["reason"] == "ok", ascii(password)
        for variant in sorted({unicodedata.normalize("NFKC", password), _sasl_prepped(password)} - {password, ""}):
            assert answer(variant)["reason"] == "invalid_credentials", (ascii(password), ascii(variant))

    try:
        with captured_logs() as events:
            run()
    finally:
        admin.unbind()
    assert len(typed) >= 30
    assert any(character in password for password in typed for character in ("\x00", "\u00a0", "\u0301"))
    registry = service.telemetry.metrics.registry
    errors = [s for m in registry.collect() for s in m.samples if s.name == "okta_hook_ldap_errors_total"]
    assert sum(sample.value for sample in errors) == 0
    assert_logs_clean(events, [password for password in typed if len(password) >= 8])


def _sasl_prepped(password: str) -> str:
    """What ldap3 sent for a ``str`` password before issue 19 (empty when SASLprep refused it)."""
    try:
        prepared: str = sasl_prep(password)
    except LDAPSASLPrepError:
        return ""
    return prepared


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
    from framing_support import PROBE, exchange, heads
    from support.servers import RunningService

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


# -- addresses with a control or a space at either end (issue 20): every one refused, never looked up ------


def test_generated_addresses_with_a_control_or_space_at_an_end_are_refused(service: InProcessService) -> None:
    """An oracle of its own: no login or email begins or ends with an :data:`EDGE` character, so each such
    address is refused before the directory (``refused_identifier``) on every hook, whatever the checks'
    fast path does, and names nobody. Only a hand-written case (``alice.wong@example.com\\x85``) used to
    catch a trailing C1 control let through."""
    ends: set[str] = set()

    @settings(GENERATED, max_examples=300)
    @given(hook=st.sampled_from(list(HOOK_PATHS)), identifier=address_with_an_edge())
    def run(hook: str, identifier: str) -> None:
        ends.add(identifier[-1] if identifier[-1] in EDGE else identifier[0])
        answer = service.post_json(HOOK_PATHS[hook], event_for(hook, identifier))
        assert answer.status == 200, (identifier, answer)
        body = answer.json()
        assert body["debugContext"]["outcome"] == "refused_identifier", (hook, identifier, body)
        assert not [c for c in body.get("commands", []) if c.get("type") != "com.okta.action.update"], identifier

    run()
    assert "\x85" in ends and len(ends & set(map(chr, range(0x80, 0xA0)))) >= 16, sorted(ends)


# -- tokenGroups SIDs in a filter (issue 21): any bytes reach the directory exactly, one filter term each ----


def test_generated_binary_sids_reach_the_directory_as_their_exact_bytes() -> None:
    """``tokenGroups`` SIDs come from the directory, as bytes: every byte (parentheses, ``*``, ``\\``,
    NUL, non-UTF-8) is escaped once, so ldap3 sends each SID as its own equality term with exactly
    those bytes, whatever the batch holds."""
    from ldap3.operation.search import compile_filter, parse_filter

    from service.directory.groups import sid_filter

    @settings(GENERATED, max_examples=200)
    @given(sids=st.lists(st.binary(min_size=1, max_size=28), min_size=1, max_size=8, unique=True))
    def run(sids: list[bytes]) -> None:
        compiled = compile_filter(parse_filter(sid_filter(sids), None, False, False, None, False).elements[0])
        terms = [compiled] if len(sids) == 1 else list(compiled["or"])
        sent = [term["equalityMatch"]["assertionValue"].asOctets() for term in terms]
        assert sent == sids
        assert {str(term["equalityMatch"]["attributeDesc"]) for term in terms} == {"objectSid"}

    run()


# -- credential files (issue 24): whatever a swapped file holds, a whole value or the previous one ---------
# A rotated file is read by the running service: empty, whitespace, non-UTF-8 (lone surrogates written as
# UTF-8, a BOM, NULs) or cut content must never become a hook secret, a bind password or a CA bundle, and
# must never raise: the previous value stays, the refusal is reported once.


def file_contents() -> st.SearchStrategy[bytes]:
    lines = st.lists(st.sampled_from(["", "\n", "\r\n", "\r", " ", "\t", "\x00", "\ufeff", "secret", "é"]), max_size=6)
    return st.one_of(
        st.binary(max_size=80),
        st.text(max_size=40).map(lambda text: text.encode("utf-8")),
        lines.map(lambda parts: "".join(parts).encode("utf-8")),
        st.text(max_size=10).map(lambda text: (text + "\ud800").encode("utf-8", "surrogatepass")),  # CESU
    )


def test_generated_secret_file_contents_are_taken_whole_or_not_at_all(tmp_path: Path) -> None:
    from support.fakes import FakeClock
    from support.kubelet import MountedSecret

    from service.auth import AuthRefusal, SecretVerifier
    from service.secret_files import CHECK_INTERVAL_SECONDS, SecretFile, Unusable

    secret = MountedSecret(tmp_path / "secret", {"hook": "previous-value"})
    seen: set[str] = set()

    @settings(GENERATED, max_examples=400)
    @given(content=file_contents(), presented=st.text(max_size=20), shape=st.sampled_from(SHAPES))
    def run(content: bytes, presented: str, shape: str) -> None:
        secret.update({"hook": "previous-value"})
        clock = FakeClock()
        file = SecretFile(secret.path("hook"), "auth.secret_files[0]", clock=clock)
        refused: list[Unusable] = []

        class Reports:
            def accepted(self, name: str, changed: bool) -> None:
                pass

            def unusable(self, name: str, reason: Unusable) -> None:
                refused.append(reason)

        file.watch(Reports())
        verifier = SecretVerifier("Authorization", [file])
        secret.update({"hook": content})
        reshape(Path(os.path.realpath(secret.path("hook"))), shape)
        clock.advance(CHECK_INTERVAL_SECONDS)
        try:
            whole: str | None = content.decode("utf-8").rstrip("\r\n")
            reason = None if whole else Unusable.EMPTY
        except UnicodeDecodeError:
            whole, reason = None, Unusable.NOT_UTF8
        if shape != "file":
            whole, reason = None, Unusable.UNREADABLE if shape == "dangling" else Unusable.INVALID
        expected = whole if reason is None else "previous-value"
        for _ in range(2):
            assert file.read().value == expected, content
            clock.advance(CHECK_INTERVAL_SECONDS)
        assert refused == ([] if reason is None else [reason]), content  # reported once
        seen.add("taken" if reason is None else reason.value)
        verifier.check([presented])  # never raises, whatever is presented
        if reason is None and whole and "\x7f" not in whole and all(c == "\t" or c >= " " for c in whole):
            assert verifier.check([whole]) == (None, "auth.secret_files[0]")
            assert verifier.check(["previous-value"]) == (AuthRefusal.MISMATCH, None) or whole == "previous-value"

    run()
    assert seen == {"taken", "empty", "not_utf8", "invalid", "unreadable"}, seen


#: What the key's path may lead to besides a file: opening a FIFO would wait for a writer.
SHAPES = ("file", "file", "file", "file", "fifo", "directory", "dangling")


def reshape(path: Path, shape: str) -> None:
    """Put something else than a regular file at ``path`` (inside the kubelet's version directory)."""
    if shape == "file":
        return
    path.unlink()
    if shape == "fifo":
        os.mkfifo(path)
    elif shape == "directory":
        path.mkdir()
    else:
        path.symlink_to(path.parent / "nowhere")


def test_generated_cuts_of_a_ca_bundle_are_taken_only_at_a_certificate_boundary(tmp_path: Path) -> None:
    """A CA bundle cut anywhere (a half-written file) is a CA bundle only when the cut leaves whole
    certificates and no started one: a cut inside a certificate is refused, never a partial trust store."""
    from service.demo.slapd import make_ca
    from service.secret_files import ca_bundle_problem

    bundle = "".join(make_ca(tmp_path, f"CA {n}").cert_file.read_text() for n in range(2))
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    blocks = []  # (end of the BEGIN line, end of the END line) of each certificate
    position = 0
    while (start := bundle.find(begin, position)) >= 0:
        position = bundle.index(end, start) + len(end)
        blocks.append((start + len(begin), position))

    @settings(GENERATED, max_examples=300)
    @given(cut=st.integers(0, len(bundle)))
    def run(cut: int) -> None:
        text = bundle[:cut].rstrip("\r\n")
        whole = sum(1 for _, stop in blocks if stop <= cut)
        inside = any(body <= cut < stop for body, stop in blocks)
        assert (bool(text) and ca_bundle_problem(text) is None) == (whole >= 1 and not inside), cut
# -- directory data the change feed reads (issue 23): DNs, RDNs and timestamps as servers spell them -------


#: Text an RDN value can hold: anything but surrogates, the specials and the edges RFC 4514 escapes included.
RDN_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)


def _hex_escaped(value: str) -> str:
    """``value`` with every special (and each non-ASCII character) escaped as ``\\XX`` bytes: how OpenLDAP
    and AD return a DN, where an admin's LDIF had ``\\,`` and ``é``."""
    out = []
    for index, char in enumerate(value):
        edge = (char in " #" and index == 0) or (char == " " and index == len(value) - 1)
        if char in ',+"\\<>;=' or ord(char) > 0x7E or edge:
            out.append("".join(f"\\{byte:02X}" for byte in char.encode("utf-8")))
        else:
            out.append(char)
    return "".join(out)


def test_generated_rdns_read_back_and_one_entry_has_one_key_however_it_is_escaped() -> None:
    """The feed names a changed group by its member DNs' RDN values and compares DNs as ``dn_key``s: any
    value, escaped as RFC 4514 says or as hex bytes, reads back as itself, and both spellings (and the
    case, and spaces after commas) give one key. A wrong reading is a change that evicts nobody."""
    from service.directory.changes import escape_rdn_value, first_rdn
    from service.directory.protocol import dn_key

    @settings(GENERATED, max_examples=400)
    @given(value=RDN_TEXT, parent=st.sampled_from(["ou=groups,dc=example,dc=com", "OU=Groups, DC=corp, DC=com"]))
    def run(value: str, parent: str) -> None:
        plain, hexed = f"cn={escape_rdn_value(value)},{parent}", f"CN={_hex_escaped(value)},{parent}"
        assert first_rdn(plain) == [("cn", value)], plain
        assert first_rdn(hexed) == [("cn", value)], hexed
        assert dn_key(plain) == dn_key(hexed) == dn_key(dn_key(plain)), (plain, hexed)
        assert dn_key(plain).endswith(parent.lower().replace(", ", ",")), plain

    run()


def test_generated_directory_data_never_breaks_the_feeds_readers() -> None:
    """Whatever a server sends as a DN, a timestamp or a tombstone's attributes: an answer or None, never
    an exception (a poll that raises is a feed that stops following the directory)."""
    from service.directory.changes import first_rdn, stamp_seconds, tombstone_dn
    from service.directory.protocol import dn_key

    values = st.lists(st.binary(max_size=40), max_size=2)

    @settings(GENERATED, max_examples=400)
    @given(
        text=st.text(max_size=60),
        tombstone=st.fixed_dictionaries(
            {}, optional={"lastknownparent": values, "msds-lastknownrdn": values, "name": values}
        ),
    )
    def run(text: str, tombstone: dict[str, list[bytes]]) -> None:
        first_rdn(text)
        dn_key(text)
        seconds = stamp_seconds(text)
        assert seconds is None or seconds >= -62135596800
        dn = tombstone_dn(tombstone)
        assert dn is None or dn.startswith("CN=")

    run()
