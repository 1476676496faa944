"""The directory's change feed (service/directory/changes.py).

Against real slapd servers: what a poll reports (an attribute changed, a person removed from a group, a
group taken out of another, a person added, a rename, two changes in one second), the service answering
from memory for an hour and still showing each change within ``poll_seconds`` + 1 s, a failover between
two slapd servers starting the feed over, the feed down bringing the short fresh time back.

On recorded answers (the AD side against a real Samba AD DC: tests/test_change_feed_ad.py): AD's USN
window, tombstones, ranged members, another DC behind the same name; the newest modifyTimestamp found
in the server's own time whatever this host's clock says; an answer cut by a size limit."""

from __future__ import annotations

import asyncio
import calendar
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import ldap3
import pytest
from groups_support import ADA, ADA_MAILS, GROUPS, groups_ldif
from in_process import InProcessService
from support.answers import token_answer
from support.config import directory_config, service_config
from support.directories import service_pool

from service.demo.slapd import SERVICE_BIND_DN, SERVICE_BIND_PASSWORD, Slapd
from service.directory import ChangeFeed, DirectoryConfig, DirectoryError, GroupSearch, NullObserver, UserSearch
from service.directory import changes as feed_module
from service.directory.changes import ChangeFeed as Feed
from service.directory.changes import FeedBehind, Item, Scope, first_rdn, tombstone_dn
from service.directory.config import DirectoryConfig as Config
from service.directory.protocol import Changes, dn_key

POLL = 1.0
#: What the feed reads of a change, for the reader tests: groups by cn and member, people by mail.
READING = feed_module._Reading("cn", "member", "mail", str.lower)
RND = f"cn=R&D\\2C Europe,{GROUPS}"
ENGINEERING = f"cn=App-Engineering,{GROUPS}"
ALL_STAFF = f"cn=app-All Staff,{GROUPS}"
BYSTANDERS = f"cn=Bystanders,{GROUPS}"
BYSTANDER = "uid=bystander,ou=people,dc=example,dc=com"
#: app-All Staff without App-Engineering (a groupOfNames needs a member: the bystander stands in).
WITHOUT_ENGINEERING = {"member": [(ldap3.MODIFY_REPLACE, [BYSTANDER])]}


def admin(slapd: Slapd) -> ldap3.Connection:
    return ldap3.Connection(
        ldap3.Server(slapd.url, get_info=ldap3.NONE), slapd.admin_dn, slapd.admin_password, auto_bind=True
    )


def modify(slapd: Slapd, dn: str, changes: dict[str, Any]) -> None:
    connection = admin(slapd)
    try:
        assert connection.modify(dn, changes), connection.result
    finally:
        connection.unbind()


# -- the feed itself, on a slapd of its own -------------------------------------------------------------


@pytest.fixture
def own_slapd(tmp_path: Path) -> Iterator[Slapd]:
    with Slapd(tmp_path / "ldap", groups_ldif()) as server:
        yield server


def feed_config(*urls: str, **feed: Any) -> Config:
    return DirectoryConfig(
        urls=urls,
        user_search=UserSearch("ou=people,dc=example,dc=com", filter="(objectClass=inetOrgPerson)"),
        bind_dn=SERVICE_BIND_DN,
        bind_password_env="X",
        groups=GroupSearch(GROUPS),
        connect_timeout_seconds=0.5,
        server_cooldown_seconds=0.2,
        change_feed=ChangeFeed(**{"poll_seconds": POLL, "overlap_seconds": 5, **feed}),
    )


class Polling:
    """One :class:`ChangeFeed` on its own pool, polled by hand from one event loop."""

    def __init__(self, config: Config) -> None:
        self.pool = service_pool(config, SERVICE_BIND_PASSWORD)
        self.feed = Feed(config, self.pool, NullObserver())
        self.loop = asyncio.new_event_loop()

    def poll(self) -> Changes:
        return self.loop.run_until_complete(self.feed.poll())

    def close(self) -> None:
        self.feed.close()
        self.pool.close()
        self.loop.close()


@pytest.fixture
def polling(own_slapd: Slapd) -> Iterator[Polling]:
    polling = Polling(feed_config(own_slapd.url))
    yield polling
    polling.close()


def settle(polling: Polling) -> None:
    """The first poll starts the feed over; the next ones report what the overlap window still holds
    (the directory was just loaded): poll until a poll reports nothing."""
    assert polling.poll().resync
    for _ in range(10):
        if not polling.poll().entries:
            return
    raise AssertionError("the feed keeps reporting changes nobody made")


def test_a_poll_reports_a_changed_attribute_once(own_slapd: Slapd, polling: Polling) -> None:
    settle(polling)
    modify(own_slapd, ADA, {"departmentNumber": [(ldap3.MODIFY_REPLACE, ["Cartography"])]})
    changes = polling.poll()
    assert changes.entries == {dn_key(ADA)} and not changes.resync and not changes.deleted
    assert changes.identifiers == {mail.lower() for mail in ADA_MAILS}  # what lookups compare: her mails
    assert polling.poll() == Changes()  # seen already, though still inside the overlap window


def test_a_group_change_reports_the_group_its_name_and_its_members(own_slapd: Slapd, polling: Polling) -> None:
    settle(polling)
    modify(own_slapd, RND, {"member": [(ldap3.MODIFY_ADD, [BYSTANDER])]})
    changes = polling.poll()
    assert changes.entries == {dn_key(RND)}
    assert "r&d, europe" in changes.names  # who lists the group by name
    assert changes.members == {dn_key(ADA), BYSTANDER}  # who may be new in it
    modify(own_slapd, ALL_STAFF, WITHOUT_ENGINEERING)
    changes = polling.poll()
    assert changes.entries == {dn_key(ALL_STAFF)} and "app-all staff" in changes.names
    modify(own_slapd, ALL_STAFF, {"member": [(ldap3.MODIFY_ADD, [ENGINEERING])]})
    # a group put into another: its name (its RDN) is who now is in the other too
    assert {"app-all staff", "app-engineering"} <= polling.poll().names


def test_two_changes_in_one_second_are_both_reported(own_slapd: Slapd, polling: Polling) -> None:
    settle(polling)
    reported = []
    for department in ("One", "Two", "Three"):
        modify(own_slapd, ADA, {"departmentNumber": [(ldap3.MODIFY_REPLACE, [department])]})
        reported.append(polling.poll().entries)
    # modifyTimestamp has whole seconds: the three changes share one (or two) of them; entryCSN tells them apart
    assert reported == [{dn_key(ADA)}] * 3


def test_a_renamed_entry_is_reported_under_its_new_dn(own_slapd: Slapd, polling: Polling) -> None:
    settle(polling)
    connection = admin(own_slapd)
    assert connection.modify_dn(BYSTANDERS, "cn=Onlookers"), connection.result
    connection.unbind()
    changes = polling.poll()
    assert dn_key(f"cn=Onlookers,{GROUPS}") in changes.entries and "onlookers" in changes.names


def test_entries_asked_about_and_gone_are_reported_deleted(own_slapd: Slapd, polling: Polling) -> None:
    """OpenLDAP keeps no trace of a deletion: the feed asks whether the entries served on its word still
    exist (by entryDN, whatever the spelling the cache holds), and reports those gone."""
    settle(polling)
    connection = admin(own_slapd)
    assert connection.delete(BYSTANDER), connection.result
    connection.unbind()
    asked = [BYSTANDER.upper(), ADA.replace(",", ", "), rf"cn=R&D\, Europe,{GROUPS}"]
    changes = loop_poll(polling, asked)
    assert changes.deleted == {BYSTANDER} and BYSTANDER in changes.entries


def loop_poll(polling: Polling, unconfirmed: list[str]) -> Changes:
    return polling.loop.run_until_complete(polling.feed.poll(unconfirmed))


def test_the_feed_starts_over_on_another_server(tmp_path: Path, own_slapd: Slapd) -> None:
    with Slapd(tmp_path / "second", groups_ldif()) as second:
        polling = Polling(feed_config(own_slapd.url, second.url))
        try:
            settle(polling)
            own_slapd.stop()
            with pytest.raises(DirectoryError):  # the feed's connection is gone with the server
                polling.poll()
            changes = polling.poll()
            assert changes.resync  # USNs belong to one DC, replicas lag: what changed meanwhile is unknown
            modify(second, ADA, {"departmentNumber": [(ldap3.MODIFY_REPLACE, ["Second"])]})
            seen: set[str] = set()
            for _ in range(5):
                seen |= polling.poll().entries
            assert dn_key(ADA) in seen
        finally:
            polling.close()
            own_slapd.start()


def test_a_poll_slower_than_the_feed_may_lag_is_given_up(hanging_directory: Any) -> None:
    """A directory that accepts and never answers: the poll is given up after two poll intervals
    (``behind``), not waited out to the operation timeout; the caches then fall back at once."""
    polling = Polling(feed_config(hanging_directory.url, poll_seconds=0.1))
    try:
        started = time.monotonic()
        with pytest.raises(FeedBehind):
            polling.poll()
        assert time.monotonic() - started < 0.9  # 0.2 s; the operation timeout is 1 s
        again = time.monotonic()
        with pytest.raises(FeedBehind):  # at once: no second poll queued behind the stuck one
            polling.poll()
        assert time.monotonic() - again < 0.1  # not the 0.2 s of a poll waited for
    finally:
        polling.close()


# -- recorded answers: no server needed ---------------------------------------------------------------


class Recorded:
    """A :class:`~service.directory.changes.Search` answering from a function of the request, recording
    each request."""

    def __init__(self, answer: Callable[..., tuple[list[Item], bool]]) -> None:
        self.answer = answer
        self.requests: list[tuple[str, str, tuple[str, ...], dict[str, Any]]] = []

    def __call__(
        self,
        base: str,
        query: str,
        attributes: Sequence[str],
        *,
        scope: Scope = "subtree",
        size_limit: int = 0,
        show_deleted: bool = False,
    ) -> tuple[list[Item], bool]:
        options = {"scope": scope, "size_limit": size_limit, "show_deleted": show_deleted}
        self.requests.append((base, query, tuple(attributes), options))
        return self.answer(base, query, attributes, **options)


def stamp(seconds: int) -> bytes:
    return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(seconds)).encode()


@pytest.mark.parametrize("offset_days", [-3650, -1, 0, 1, 3650], ids=lambda d: f"server clock {d:+} days")
def test_the_newest_timestamp_is_the_servers_own_whatever_this_hosts_clock_says(offset_days: int) -> None:
    """The feed's first position is the newest modifyTimestamp the server holds, found with size-limited
    searches: a server whose clock is ten years off ours is followed as well as one that agrees."""
    now = int(time.time())
    newest = now + offset_days * 86400
    stamps = [newest - 86400 * 30, newest - 5, newest]

    def answer(base: str, query: str, attributes: Sequence[str], **options: Any) -> tuple[list[Item], bool]:
        assert options["size_limit"] == 1 and query.startswith("(modifyTimestamp>=") and query.endswith("Z)")
        floor = calendar.timegm(time.strptime(query[len("(modifyTimestamp>=") : -2], "%Y%m%d%H%M%S"))
        hits = [s for s in stamps if s >= floor]
        return [(f"uid=u{s}", {"modifytimestamp": [stamp(s)]}) for s in hits[:1]], len(hits) > 1

    search = Recorded(answer)
    assert feed_module._newest(search, ["dc=example,dc=com"], now) == newest
    assert len(search.requests) <= 2 * 40  # a few dozen small searches, whatever the distance


def test_a_quiet_directorys_window_moves_on_with_the_time_elapsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing changing, each poll still asks from the server's time when the last poll started
    (the newest timestamp seen, carried forward by the time elapsed): the last change leaves the window
    after overlap_seconds instead of being read again at every poll for ever (a group of 50,000 members
    would be)."""
    now = [5000.0]
    monkeypatch.setattr(feed_module.time, "monotonic", lambda: now[0])
    newest = 1_700_000_000

    def answer(base: str, query: str, attributes: Sequence[str], **options: Any) -> tuple[list[Item], bool]:
        if options["scope"] == "base":
            return [("", {"namingcontexts": [b"dc=example,dc=com"]})], False
        floor = calendar.timegm(time.strptime(query[len("(modifyTimestamp>=") : -2], "%Y%m%d%H%M%S"))
        hit = [(f"cn=everybody,{GROUPS}", {"modifytimestamp": [stamp(newest)], "entrycsn": [b"x"]})]
        return (hit if newest >= floor else []), False

    config = feed_config("ldap://127.0.0.1:1")
    assert config.change_feed is not None
    reader = feed_module._Timestamps(config, config.change_feed, READING)
    search = Recorded(answer)
    position = reader.start(search, "a:389")
    floors, returned = [], []
    for _ in range(4):
        now[0] += 2.0
        changes, position, _ = reader.poll(search, position)
        floors.append(search.requests[-1][1])
        returned.append(changes.entries)
    assert [calendar.timegm(time.strptime(f[18:-2], "%Y%m%d%H%M%S")) - newest for f in floors] == [-5, -3, -1, 1]
    assert returned == [frozenset()] * 4  # seen at the start, then out of the window


def test_an_empty_directory_has_no_newest_timestamp() -> None:
    search = Recorded(lambda *args, **options: ([], False))
    assert feed_module._newest(search, ["dc=example,dc=com"], int(time.time())) is None


def test_an_answer_cut_by_a_size_limit_evicts_what_it_holds_and_starts_over() -> None:
    config = feed_config("ldap://127.0.0.1:1")
    answers = {"cut": True}

    def answer(base: str, query: str, attributes: Sequence[str], **options: Any) -> tuple[list[Item], bool]:
        if options["scope"] == "base":
            return [("", {"namingcontexts": [b"dc=example,dc=com"]})], False
        if options["size_limit"] == 1:
            return [("uid=a", {"modifytimestamp": [stamp(1_700_000_000)]})], False
        if answers["cut"]:
            return [(ADA, {"modifytimestamp": [stamp(1_700_000_000)]})], True
        return [], False

    feed = Feed(config, service_pool(config, ""), NullObserver())
    search = Recorded(answer)
    first, feed._position = feed._read(search, "a:389")
    assert first.resync
    changes, feed._position = feed._read(search, "a:389")
    assert changes.resync and changes.entries == {dn_key(ADA)}
    answers["cut"] = False
    changes, _ = feed._read(search, "a:389")
    assert changes == Changes()


def test_a_server_that_cannot_filter_on_entry_dn_is_never_told_everyone_is_gone() -> None:
    """Asking whether entries still exist needs ``(entryDN=...)``; a directory that does not know it
    answers nobody, which must not read as "everybody was deleted"."""
    config = feed_config("ldap://127.0.0.1:1")
    assert config.change_feed is not None
    reader = feed_module._Timestamps(config, config.change_feed, READING)

    def answer(base: str, query: str, attributes: Sequence[str], **options: Any) -> tuple[list[Item], bool]:
        if options["scope"] == "base" and base == "":
            return [("", {"namingcontexts": [b"dc=example,dc=com"]})], False
        if "entryDN" in query:
            return [], False  # an attribute the server does not know: no entry matches
        return [("uid=a", {"modifytimestamp": [stamp(1_700_000_000)]})], False

    search = Recorded(answer)
    position = reader.start(search, "a:389")
    assert not position.entry_dn
    assert reader.missing(search, position, [ADA, BYSTANDER]) == frozenset()


# -- Active Directory, on recorded answers ---------------------------------------------------------------

AD_BASE = "DC=corp,DC=example,DC=com"
DC1 = b"CN=NTDS Settings,CN=DC1,CN=Servers,CN=Site,CN=Sites,CN=Configuration,DC=corp,DC=example,DC=com"
DC2 = DC1.replace(b"DC1", b"DC2")


def ad_config() -> Config:
    return DirectoryConfig(
        urls=("ldaps://dc.corp.example.com",),
        user_search=UserSearch(f"OU=People,{AD_BASE}", match_attribute="sAMAccountName"),
        bind_dn=SERVICE_BIND_DN,
        bind_password_env="X",
        dialect="active_directory",
        groups=GroupSearch(AD_BASE, filter="(objectClass=group)", name_attribute="sAMAccountName"),
        change_feed=ChangeFeed(poll_seconds=10),
    )


class RecordedDc:
    """What a DC answered: its root DSE (``highestCommittedUSN``, ``dsServiceName``) and, by USN, the
    entries that changed (with tombstones, under the show-deleted control)."""

    def __init__(self) -> None:
        self.highest = 5000
        self.dsa = DC1
        self.changed: list[tuple[int, Item]] = []
        self.ranges: dict[str, list[bytes]] = {}
        self.search = Recorded(self.answer)

    def answer(self, base: str, query: str, attributes: Sequence[str], **options: Any) -> tuple[list[Item], bool]:
        if base == "":
            root = {"highestcommittedusn": [str(self.highest).encode()], "dsservicename": [self.dsa]}
            return [
                ("", {**root, "namingcontexts": [AD_BASE.encode(), b"CN=Configuration," + AD_BASE.encode()]})
            ], False
        if options["scope"] == "base":  # the next range of a group's members
            (wanted,) = attributes
            start = int(wanted.split("=")[1].split("-")[0])
            values = self.ranges[base][start:]
            return [(base, {f"member;range={start}-*": values})], False
        assert options["show_deleted"] and base == AD_BASE
        low, high = (int(part.split("=")[1].rstrip(")")) for part in query[2:-1].split(")("))
        return [item for usn, item in self.changed if low <= usn <= high], False


def ad_feed(dc: RecordedDc) -> tuple[Feed, Callable[[], Changes]]:
    config = ad_config()
    feed = Feed(config, service_pool(config, ""), NullObserver())

    def poll() -> Changes:
        changes, feed._position = feed._read(dc.search, "dc.corp.example.com:636")
        return changes

    return feed, poll


def test_ad_polls_the_usn_window_up_to_the_highest_committed_usn() -> None:
    dc = RecordedDc()
    _, poll = ad_feed(dc)
    assert poll().resync  # starts at the DC's highestCommittedUSN, nothing read
    user = f"CN=Doe\\, Jane,OU=People,{AD_BASE}"
    dc.changed.append((5003, (user, {"usnchanged": [b"5003"], "samaccountname": [b"jdoe"]})))
    dc.highest = 5004
    changes = poll()
    assert changes.entries == {dn_key(user)} and not changes.resync
    assert dc.search.requests[-1][1] == "(&(uSNChanged>=5001)(uSNChanged<=5004))"
    assert dc.search.requests[-1][3]["show_deleted"] and dc.search.requests[-1][0] == AD_BASE
    assert poll() == Changes()  # nothing committed since: no search at all
    assert dc.search.requests[-1][0] == ""


def test_ad_tombstones_are_deletions_under_the_dn_they_had() -> None:
    dc = RecordedDc()
    _, poll = ad_feed(dc)
    poll()
    tombstone = {
        "isdeleted": [b"TRUE"],
        "lastknownparent": [f"OU=People,{AD_BASE}".encode()],
        "msds-lastknownrdn": [b"Doe, Jane"],
        "name": [b"Doe, Jane\nDEL:7c2f0b1e-0000-0000-0000-000000000000"],
        "samaccountname": [b"jdoe"],
    }
    dc.changed.append((5002, (f"CN=Doe\\, Jane\\0ADEL:7c2f...,CN=Deleted Objects,{AD_BASE}", tombstone)))
    group_tombstone = {
        **tombstone,
        "msds-lastknownrdn": [],
        "name": [b"App-Finance\nDEL:guid"],
        "samaccountname": [b"App-Finance"],
    }
    dc.changed.append((5003, (f"CN=App-Finance\\0ADEL:guid,CN=Deleted Objects,{AD_BASE}", group_tombstone)))
    dc.highest = 5003
    changes = poll()
    jane = dn_key(f"CN=Doe\\, Jane,OU=People,{AD_BASE}")
    finance = dn_key(f"CN=App-Finance,OU=People,{AD_BASE}")
    assert changes.deleted == changes.entries == {jane, finance}
    assert {"jdoe", "app-finance"} <= changes.names  # a deleted group: whoever listed it


def test_ad_an_account_disabled_and_moved_is_evicted_by_its_login() -> None:
    """The usual off-boarding: disabled and moved to another OU. The cache holds the old DN; the login
    (sAMAccountName, the match attribute) is the same, and is what evicts."""
    dc = RecordedDc()
    _, poll = ad_feed(dc)
    poll()
    moved = f"CN=Jane Doe,OU=Disabled,{AD_BASE}"
    dc.changed.append((5001, (moved, {"useraccountcontrol": [b"514"], "samaccountname": [b"JDoe"]})))
    dc.highest = 5001
    changes = poll()
    assert changes.entries == {dn_key(moved)} and changes.identifiers == {"jdoe"}


def test_ad_a_disabled_account_is_a_change() -> None:
    """userAccountControl's ACCOUNTDISABLE bit is written on the user: uSNChanged moves, the entry is
    evicted, and the next lookup (which leaves disabled accounts out) finds nobody."""
    dc = RecordedDc()
    _, poll = ad_feed(dc)
    poll()
    user = f"CN=Jane Doe,OU=People,{AD_BASE}"
    dc.changed.append((5001, (user, {"usnchanged": [b"5001"], "useraccountcontrol": [b"514"]})))
    dc.highest = 5001
    assert poll().entries == {dn_key(user)}


def test_ad_a_big_groups_members_are_read_range_by_range() -> None:
    dc = RecordedDc()
    _, poll = ad_feed(dc)
    poll()
    group = f"CN=All Staff,OU=Groups,{AD_BASE}"
    members = [f"CN=Person {n},OU=People,{AD_BASE}".encode() for n in range(3200)]
    dc.ranges[group] = members
    dc.changed.append((5001, (group, {"samaccountname": [b"All Staff"], "member;range=0-1499": members[:1500]})))
    dc.highest = 5001
    changes = poll()
    assert len(changes.members) == 3200 and dn_key(members[-1].decode()) in changes.members
    assert [request[2] for request in dc.search.requests if request[0] == group] == [("member;range=1500-*",)]


def test_ad_another_dc_behind_the_same_name_starts_the_feed_over() -> None:
    dc = RecordedDc()
    _, poll = ad_feed(dc)
    poll()
    dc.dsa, dc.highest = DC2, 900_000  # another DC: its USNs have nothing to do with the first one's
    changes = poll()
    assert changes.resync and changes.entries == frozenset()
    dc.changed.append((900_001, (f"CN=X,{AD_BASE}", {})))
    dc.highest = 900_001
    assert poll().entries == {dn_key(f"CN=X,{AD_BASE}")}


def test_tombstones_without_a_parent_name_nobody() -> None:
    assert tombstone_dn({"isdeleted": [b"TRUE"], "name": [b"x\nDEL:guid"]}) is None
    assert tombstone_dn({"lastknownparent": [b"OU=P,DC=x"], "name": [b"A+B\nDEL:g"]}) == "CN=A\\+B,OU=P,DC=x"


@pytest.mark.parametrize(
    ("dn", "rdn"),
    [
        ("cn=R&D\\2C Europe,ou=groups,dc=x", [("cn", "R&D, Europe")]),
        ("CN=Doe\\, Jane,OU=People", [("cn", "Doe, Jane")]),
        ("cn=\\C3\\89quipe Paris,ou=g", [("cn", "Équipe Paris")]),
        ("cn=a+uid=b,ou=x", [("cn", "a"), ("uid", "b")]),
        ("cn=solo", [("cn", "solo")]),
        ("no equals sign", None),
        ("cn=dangling\\", None),
    ],
)
def test_first_rdn_reads_escaped_and_multi_valued_rdns(dn: str, rdn: list[tuple[str, str]] | None) -> None:
    assert first_rdn(dn) == rdn


# -- the service: answers from memory for an hour, changes within a poll -------------------------------

TOKEN = {
    "subject": "login",
    "cache": {"fresh_seconds": 1, "feed_fresh_seconds": 3600, "refresh_ahead_seconds": 0, "stale_seconds": 3600},
    "id_token": {"department": "departmentNumber", "groups_direct": {"source": "groups"}},
    "access_token": {"roles": {"source": "groups", "nested": True}},
}


def service_on(start: Callable[..., InProcessService], *urls: str) -> InProcessService:
    directory = directory_config(
        urls[0],
        urls=list(urls),
        groups={"base_dn": GROUPS, "filter": "(objectClass=groupOfNames)"},
        change_feed={"poll_seconds": POLL, "overlap_seconds": 5},
    )
    return start(service_config(urls[0], hooks={"token": TOKEN}, directory=directory))


def claims(service: InProcessService, login: str = ADA_MAILS[1]) -> dict[str, Any]:
    return token_answer(service, "feed", login=login)


def until_current(service: InProcessService, current: float = 1.0, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while service.metric('okta_hook_change_feed_current{directory="default"}') != current:
        assert time.monotonic() < deadline, f"okta_hook_change_feed_current never became {current}"
        time.sleep(0.05)


def lag_of(
    service: InProcessService,
    change: Callable[[], object],
    shows: Callable[[dict[str, Any]], bool],
    login: str = ADA_MAILS[1],
) -> float:
    """Seconds from ``change`` in the directory until a token shows it."""
    made = time.monotonic()
    change()
    while not shows(claims(service, login)):
        assert time.monotonic() - made < 10 * POLL, "the change never reached a token"
        time.sleep(0.05)
    return time.monotonic() - made


@pytest.fixture(scope="module")
def lags() -> Iterator[dict[str, float]]:
    """The lag measured for each kind of change, printed at the end (``-s``) for the issue's note."""
    measured: dict[str, float] = {}
    yield measured
    print("\nchange feed lag, poll_seconds=1:", {kind: round(lag, 2) for kind, lag in measured.items()})


def test_changes_reach_tokens_within_a_poll_while_entries_live_an_hour(
    own_slapd: Slapd, start_in_process: Callable[..., InProcessService], lags: dict[str, float]
) -> None:
    service = service_on(start_in_process, own_slapd.url)
    until_current(service)
    first = claims(service)
    assert first["cache"] == "miss" and first["department"] == "Research"
    assert first["groups_direct"] == ["Cycle A", "R&D, Europe"] and "app-All Staff" in first["roles"]
    time.sleep(1.5)  # past fresh_seconds: only the feed keeps the entry
    searches = service.metric('okta_hook_ldap_operation_duration_seconds_count{directory="default",operation="search"}')
    assert claims(service)["cache"] == "hit"

    lags["attribute"] = lag_of(
        service,
        lambda: modify(own_slapd, ADA, {"departmentNumber": [(ldap3.MODIFY_REPLACE, ["Cartography"])]}),
        lambda seen: seen.get("department") == "Cartography",
    )
    lags["removed from a group"] = lag_of(
        service,
        lambda: modify(own_slapd, f"cn=Cycle A,{GROUPS}", {"member": [(ldap3.MODIFY_DELETE, [ADA])]}),
        lambda seen: "Cycle A" not in seen["groups_direct"],
    )
    lags["a change up a nested chain"] = lag_of(
        service,
        lambda: modify(own_slapd, ALL_STAFF, WITHOUT_ENGINEERING),
        lambda seen: "app-All Staff" not in seen["roles"],
    )
    lags["added to a group"] = lag_of(
        service,
        lambda: modify(own_slapd, BYSTANDERS, {"member": [(ldap3.MODIFY_ADD, [ADA])]}),
        lambda seen: "Bystanders" in seen["groups_direct"],
    )
    lags["a group put into one of hers"] = lag_of(
        service,
        lambda: modify(own_slapd, ALL_STAFF, {"member": [(ldap3.MODIFY_ADD, [ENGINEERING])]}),
        lambda seen: "app-All Staff" in seen["roles"],
    )
    for kind, lag in lags.items():
        assert lag <= POLL + 1, (kind, lag)
    # one re-read per change (its user search), not one per request
    assert (
        service.metric('okta_hook_ldap_operation_duration_seconds_count{directory="default",operation="search"}')
        - searches
        == 5
    )
    for cause in ("entry", "group", "member"):
        assert (
            service.metric(f'okta_hook_cache_evictions_total{{cause="{cause}",directory="default",hook_type="token"}}')
            >= 1
        ), cause


def test_the_feed_down_brings_the_short_fresh_time_back(
    own_slapd: Slapd, start_in_process: Callable[..., InProcessService]
) -> None:
    service = service_on(start_in_process, own_slapd.url)
    until_current(service)
    assert claims(service)["cache"] == "miss"
    time.sleep(1.5)
    assert claims(service)["cache"] == "hit"
    own_slapd.stop()
    try:
        until_current(service, 0.0)
        # past fresh_seconds and no longer vouched for: the directory is asked (and, down, the entry is
        # served stale), where a current feed would have answered from memory
        answer = claims(service)
        assert answer["cache"] == "stale" and answer["outcome"] == "enriched_stale"
    finally:
        own_slapd.start()
    until_current(service)
    assert claims(service)["cache"] == "hit"  # same server, same position: what was read still counts
    assert service.metric('okta_hook_change_feed_polls_total{directory="default",result="ok"}') >= 1


def test_a_deleted_person_goes_within_the_short_fresh_time(
    own_slapd: Slapd, start_in_process: Callable[..., InProcessService], lags: dict[str, float]
) -> None:
    """No tombstone on OpenLDAP, and a person in no group (no group change to see): the entry served on
    the feed's word is asked about once per fresh_seconds, and goes at the next poll."""
    solo = "uid=solo,ou=people,dc=example,dc=com"
    connection = admin(own_slapd)
    person = {"objectClass": ["inetOrgPerson"], "uid": "solo", "cn": "Solo", "sn": "Solo", "mail": "solo@example.com"}
    assert connection.add(solo, attributes={**person, "departmentNumber": "Research"}), connection.result
    service = service_on(start_in_process, own_slapd.url)
    until_current(service)
    assert claims(service, "solo@example.com")["department"] == "Research"
    time.sleep(1.5)
    assert claims(service, "solo@example.com")["cache"] == "hit"
    lags["deleted (OpenLDAP, no group)"] = lag_of(
        service,
        lambda: connection.delete(solo),
        lambda seen: seen["outcome"] == "no_match",
        login="solo@example.com",
    )
    connection.unbind()
    assert lags["deleted (OpenLDAP, no group)"] <= 1 + POLL + 1  # fresh_seconds, then a poll
    assert service.metric('okta_hook_cache_evictions_total{cause="deleted",directory="default",hook_type="token"}') == 1


def test_a_new_person_shows_within_a_poll_not_after_the_negative_time(
    own_slapd: Slapd, start_in_process: Callable[..., InProcessService], lags: dict[str, float]
) -> None:
    """Asked about before they exist, a person is remembered as nobody (negative_seconds: 60 here); their
    creation reaches the next token within a poll."""
    service = service_on(start_in_process, own_slapd.url)
    until_current(service)
    assert claims(service, "nova@example.com")["outcome"] == "no_match"
    assert claims(service, "nova@example.com")["cache"] == "negative_hit"
    connection = admin(own_slapd)
    nova = {"objectClass": ["inetOrgPerson"], "uid": "nova", "cn": "Nova", "sn": "Nova", "mail": "Nova@example.com"}
    lags["a new person"] = lag_of(
        service,
        lambda: connection.add("uid=nova,ou=people,dc=example,dc=com", attributes={**nova, "departmentNumber": "New"}),
        lambda seen: seen.get("department") == "New",
        login="nova@example.com",
    )
    connection.unbind()
    assert lags["a new person"] <= POLL + 1


def test_a_failover_starts_the_feed_over_on_the_other_server(
    tmp_path: Path, own_slapd: Slapd, start_in_process: Callable[..., InProcessService], lags: dict[str, float]
) -> None:
    with Slapd(tmp_path / "second", groups_ldif()) as second:
        modify(second, ADA, {"departmentNumber": [(ldap3.MODIFY_REPLACE, ["On the second server"])]})
        service = service_on(start_in_process, own_slapd.url, second.url)
        until_current(service)
        assert claims(service)["department"] == "Research"
        time.sleep(1.5)
        assert claims(service)["cache"] == "hit"
        resyncs = service.metric('okta_hook_change_feed_polls_total{directory="default",result="resync"}')
        own_slapd.stop()
        try:
            deadline = time.monotonic() + 10
            while service.metric('okta_hook_change_feed_polls_total{directory="default",result="resync"}') == resyncs:
                assert time.monotonic() < deadline, "the feed did not start over on the second server"
                time.sleep(0.05)
            until_current(service)
            # read from the first server, before the feed started over: no longer vouched for
            answer = claims(service)
            assert answer["cache"] == "miss" and answer["department"] == "On the second server"
            lags["after a failover"] = lag_of(
                service,
                lambda: modify(second, ADA, {"departmentNumber": [(ldap3.MODIFY_REPLACE, ["Failed over"])]}),
                lambda seen: seen.get("department") == "Failed over",
            )
            assert lags["after a failover"] <= POLL + 1
        finally:
            own_slapd.start()
