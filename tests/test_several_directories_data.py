"""The directories of the several-directory tests and demo, as the servers hold them: the HR slapd
(``hr_slapd``, joined by employeeNumber), the emea slapd (``emea_slapd``, a second account directory), and
how their people line up with the demo directory (``slapd``) and the AD domain (service/demo/ad_data.py).
Read with ldap3 as each directory's service account, not through the service."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import pytest
from ldap3 import SAFE_SYNC, Connection, Server, Tls
from ldap3.core.exceptions import LDAPInvalidCredentialsResult, LDAPSocketOpenError
from ldap3.utils.conv import escape_filter_chars
from support.ldap_reads import entries, service_connection

from service.demo import ad_data
from service.demo.emea_data import EMEA_GROUPS_DN, EMEA_PEOPLE, EMEA_PEOPLE_DN, SHARED_MAIL
from service.demo.hr_data import ABSENT_NUMBERS, DUPLICATE_NUMBER, HR_PEOPLE_DN, JOINED
from service.demo.run import several_document, several_passwords
from service.demo.slapd import DEMO_USER_PASSWORD, SERVICE_BIND_PASSWORD, Slapd

DEMO_PEOPLE_DN = "ou=people,dc=example,dc=com"
HR_ATTRIBUTES = ["mail", "employeeNumber", "employeeType", "departmentNumber", "title", "businessCategory", "ou",
                 "manager"]  # fmt: skip
ACCOUNT_ATTRIBUTES = ["uid", "mail", "employeeNumber", "departmentNumber", "title", "manager", "memberOf"]
JOINED_BY_UID = {record.uid: record for record in JOINED.values()}


@pytest.fixture(scope="module")
def hr(hr_slapd: Slapd) -> Iterator[Connection]:
    connection = service_connection(hr_slapd)
    yield connection
    connection.unbind()


@pytest.fixture(scope="module")
def emea(emea_slapd: Slapd) -> Iterator[Connection]:
    connection = service_connection(emea_slapd)
    yield connection
    connection.unbind()


@pytest.fixture(scope="module")
def accounts(slapd: Slapd) -> Iterator[Connection]:
    connection = service_connection(slapd)
    yield connection
    connection.unbind()


def by_number(connection: Connection, number: str, base: str = HR_PEOPLE_DN) -> list[dict[str, Any]]:
    attributes = HR_ATTRIBUTES if base == HR_PEOPLE_DN else ACCOUNT_ATTRIBUTES
    return entries(connection, base, f"(employeeNumber={escape_filter_chars(number)})", attributes)


def by_mail(connection: Connection, base: str, mail: str) -> list[dict[str, Any]]:
    return entries(connection, base, f"(mail={escape_filter_chars(mail)})", ACCOUNT_ATTRIBUTES)


def mail_of(connection: Connection, dn: str) -> str:
    _, _, response, _ = connection.search(dn, "(objectClass=*)", "BASE", attributes=["mail"])
    [entry] = response
    mails: list[str] = entry["attributes"]["mail"]
    return mails[0]


def numbers_in(connection: Connection, base: str) -> dict[str, str]:
    """employeeNumber -> mail of every person under ``base`` who has one."""
    found = entries(connection, base, "(employeeNumber=*)", ["employeeNumber", "mail"])
    return {entry["attributes"]["employeeNumber"][0]: entry["attributes"]["mail"][0] for entry in found}


# ------------------------------------------------------------------------------------------------- HR


def test_hr_finds_the_sample_person_by_number_with_hr_values_and_a_manager_inside_hr(hr: Connection) -> None:
    [entry] = by_number(hr, "1002")
    attributes = entry["attributes"]
    assert entry["dn"] == "uid=rosario.jones,ou=people,dc=hr,dc=example,dc=com"
    assert attributes["departmentNumber"] == ["Platform Engineering"]  # demo.ldif: Engineering
    assert attributes["title"] == ["Staff Software Engineer"]
    assert attributes["businessCategory"] == ["CC-1100"]
    assert attributes["ou"] == ["Technology"]
    assert attributes["employeeType"] == ["Employee"]
    assert attributes["manager"] == ["uid=carol.chen,ou=people,dc=hr,dc=example,dc=com"]
    assert mail_of(hr, attributes["manager"][0]) == "carol.chen@example.com"


def test_every_joined_number_finds_one_record_whose_manager_has_a_mail(hr: Connection) -> None:
    assert sorted(JOINED) == ["1001", "1002", "1004", "1010", "1011", "1012", "1020", "1030", "1031", "1040",
                              "1041", "1042", "1050", "2001", "4001", "4002", "4004"]  # fmt: skip
    for number, record in JOINED.items():
        [entry] = by_number(hr, number)
        attributes = entry["attributes"]
        assert attributes["mail"] == [record.mail]
        assert attributes["departmentNumber"] == [record.department]
        assert attributes["title"] == [record.title]
        assert attributes["businessCategory"] == [record.cost_centre]
        managers = attributes.get("manager", [])
        if record.manager is None:
            assert managers == [], number
        else:
            [manager] = managers
            assert mail_of(hr, manager) == JOINED_BY_UID[record.manager].mail


def test_non_ascii_hr_values_arrive_decoded(hr: Connection) -> None:
    [zoe] = by_number(hr, "1031")
    assert zoe["attributes"]["title"] == ["Ingénieure principale"]
    assert zoe["attributes"]["departmentNumber"] == ["Forschung Zürich"]
    assert mail_of(hr, zoe["attributes"]["manager"][0]) == "jose.muller@example.com"


def test_the_duplicate_number_finds_two_different_people(hr: Connection) -> None:
    found = by_number(hr, DUPLICATE_NUMBER)
    assert sorted(entry["dn"] for entry in found) == [
        "uid=alan.wu,ou=people,dc=hr,dc=example,dc=com",
        "uid=alice.wong,ou=people,dc=hr,dc=example,dc=com",
    ]
    assert {entry["attributes"]["title"][0] for entry in found} == {"Software Engineer II", "Facilities Coordinator"}


def test_hr_people_have_no_password_to_bind_with(hr_slapd: Slapd) -> None:
    """Password import never verifies in HR: nobody there can bind, with the demo password or any."""
    tls = Tls(ca_certs_file=str(hr_slapd.ca_file), validate=ssl.CERT_REQUIRED)
    server = Server(hr_slapd.ldaps_url, use_ssl=True, tls=tls, get_info="NO_INFO")
    connection = Connection(server, "uid=rosario.jones,ou=people,dc=hr,dc=example,dc=com", DEMO_USER_PASSWORD,
                            client_strategy=SAFE_SYNC)  # fmt: skip
    status, result, _, _ = connection.bind()
    assert not status and result["description"] == "invalidCredentials"


# --------------------------------------------------------------------- joining the account directories


def test_demo_people_with_a_number_are_in_hr_but_mixed_case_and_1003_is_there_twice(
    accounts: Connection, hr: Connection
) -> None:
    demo_numbers = numbers_in(accounts, DEMO_PEOPLE_DN)
    assert sorted(demo_numbers) == [
        "1001",
        "1002",
        "1003",
        "1004",
        "1010",
        "1011",
        "1012",
        "1020",
        "1021",
        "1030",
        "1031",
        "1040",
        "1041",
        "1042",
    ]  # everybody in demo.ldif but plain.user
    counts = {number: len(by_number(hr, number)) for number in demo_numbers}
    assert {number for number, count in counts.items() if count != 1} == {"1003", "1021"}
    assert counts["1003"] == 2 and counts["1021"] == 0
    for number, mail in demo_numbers.items():
        if counts[number] == 1:
            assert JOINED[number].mail == mail.lower(), number  # the same human


def test_account_directories_and_hr_disagree_on_every_joined_department_and_title(
    accounts: Connection, emea: Connection
) -> None:
    """So that an answer shows which directory each value came from."""
    compared = 0
    for connection, base in ((accounts, DEMO_PEOPLE_DN), (emea, EMEA_PEOPLE_DN)):
        for entry in entries(connection, base, "(employeeNumber=*)", ACCOUNT_ATTRIBUTES):
            number = entry["attributes"]["employeeNumber"][0]
            if number in JOINED:
                compared += 1
                assert entry["attributes"]["departmentNumber"] != [JOINED[number].department], number
                assert entry["attributes"]["title"] != [JOINED[number].title], number
    for person in ad_data.PEOPLE:
        if person.employee_id in JOINED:
            compared += 1
            assert person.department != JOINED[person.employee_id].department, person.sam
            assert person.title != JOINED[person.employee_id].title, person.sam
    assert compared == 12 + 4 + 6  # demo.ldif, emea (John Smith too), AD


def test_ad_people_join_hr_by_employee_id(hr: Connection) -> None:
    ids = {person.sam: person.employee_id for person in ad_data.PEOPLE if person.employee_id}
    assert ids == {"carol.chen": "1001", "rosario.jones": "1002", "administrator1": "1011", "user": "1020",
                   "sally.admin": "1012", "alice.wong": "1003", "ada": "2001", "jean.dupont": "3001"}  # fmt: skip
    mails = {person.sam: person.mail for person in ad_data.PEOPLE}
    for sam, number in ids.items():
        found = by_number(hr, number)
        if number == DUPLICATE_NUMBER:
            assert len(found) == 2
        elif number in ABSENT_NUMBERS:
            assert found == [], sam
        else:
            [entry] = found
            assert entry["attributes"]["mail"] == [mails[sam]]


def test_each_absent_number_is_held_by_an_account_directory_and_not_by_hr(
    accounts: Connection, emea: Connection, hr: Connection
) -> None:
    assert ABSENT_NUMBERS == ("1021", "3001", "4003")
    for number in ABSENT_NUMBERS:
        assert by_number(hr, number) == []
    [mixed] = by_number(accounts, "1021", DEMO_PEOPLE_DN)
    assert mixed["attributes"]["uid"] == ["mixed.case"]
    [sofia] = by_number(emea, "4003", EMEA_PEOPLE_DN)
    assert sofia["attributes"]["mail"] == ["sofia.rossi@emea.example.com"]
    assert [p.sam for p in ad_data.PEOPLE if p.employee_id == "3001"] == ["jean.dupont"]


# ----------------------------------------------------------------------------------------------- emea


def test_emea_people_found_by_mail_with_groups_and_a_manager(emea: Connection) -> None:
    [pierre] = by_mail(emea, EMEA_PEOPLE_DN, "pierre.martin@emea.example.com")
    attributes = pierre["attributes"]
    assert pierre["dn"] == "uid=pierre.martin,ou=people,dc=emea,dc=example,dc=com"
    assert attributes["departmentNumber"] == ["Sales EMEA"]
    assert attributes["employeeNumber"] == ["4002"]
    assert attributes["manager"] == ["uid=ingrid.larsen,ou=people,dc=emea,dc=example,dc=com"]
    assert set(attributes["memberOf"]) == {f"cn=emea-staff,{EMEA_GROUPS_DN}", f"cn=emea-sales,{EMEA_GROUPS_DN}"}
    [lukas] = by_mail(emea, EMEA_PEOPLE_DN, "lukas.weiss@emea.example.com")
    assert lukas["attributes"]["departmentNumber"] == ["Vertrieb DACH"]


def test_emea_and_demo_share_exactly_one_person_with_different_values(accounts: Connection, emea: Connection) -> None:
    emea_mails = set(numbers_in(emea, EMEA_PEOPLE_DN).values())
    assert len(emea_mails) == len(EMEA_PEOPLE) == 5
    demo = entries(accounts, DEMO_PEOPLE_DN, "(mail=*)", ["mail"])
    demo_mails = {entry["attributes"]["mail"][0].lower() for entry in demo}
    assert emea_mails & demo_mails == {SHARED_MAIL}
    assert {mail for mail in emea_mails if not mail.endswith("@emea.example.com")} == {SHARED_MAIL}
    [in_demo] = by_mail(accounts, DEMO_PEOPLE_DN, SHARED_MAIL)
    [in_emea] = by_mail(emea, EMEA_PEOPLE_DN, SHARED_MAIL)
    assert in_demo["attributes"]["departmentNumber"] == ["Operations"]
    assert in_emea["attributes"]["departmentNumber"] == ["Operations EMEA"]
    assert in_emea["attributes"]["memberOf"] == [f"cn=emea-staff,{EMEA_GROUPS_DN}"]


def test_nobody_of_emea_example_com_is_in_the_demo_directory(accounts: Connection) -> None:
    assert entries(accounts, DEMO_PEOPLE_DN, "(mail=*@emea.example.com)", ["mail"]) == []


# ------------------------------------------------------------------------------- secrets of their own


@pytest.mark.parametrize("name", ["hr_slapd", "emea_slapd"])
def test_each_directory_refuses_the_demo_directorys_password(name: str, request: pytest.FixtureRequest) -> None:
    server: Slapd = request.getfixturevalue(name)
    assert server.service_bind_password != SERVICE_BIND_PASSWORD
    with pytest.raises(LDAPInvalidCredentialsResult):
        service_connection(server, password=SERVICE_BIND_PASSWORD)


def test_each_directory_has_its_own_ca(slapd: Slapd, hr_slapd: Slapd, emea_slapd: Slapd) -> None:
    assert len({slapd.ca_file.read_bytes(), hr_slapd.ca_file.read_bytes(), emea_slapd.ca_file.read_bytes()}) == 3
    with pytest.raises(LDAPSocketOpenError):
        service_connection(hr_slapd, ca_file=slapd.ca_file)
    with pytest.raises(LDAPSocketOpenError):
        service_connection(emea_slapd, ca_file=hr_slapd.ca_file)


# ------------------------------------------------------------------- several-config.yaml against the data


def test_several_config_binds_and_finds_people_in_each_directory_as_it_says(
    slapd: Slapd, emea_slapd: Slapd, hr_slapd: Slapd
) -> None:
    """The demo's configuration (several-config.yaml, pointed at the three slapds) against the seeded data,
    read as its keys say: each directory's bind DN with the password from its env variable, its user search,
    its domains, and HR's join. (Parsing it is the service's business: test_demo.py.)"""
    servers = {"accounts": slapd, "emea": emea_slapd, "hr": hr_slapd}
    document = several_document(servers)
    environ = several_passwords(servers)
    directories = document["directories"]
    assert sorted(directories) == ["accounts", "emea", "hr"]
    assert len(set(environ.values())) == 3  # a password of its own for each
    logins = {"accounts": "rosario.jones@example.com", "emea": "ingrid.larsen@emea.example.com"}
    homes: dict[str, dict[str, Any]] = {}
    for name, server in servers.items():
        directory = directories[name]
        assert directory["urls"] == [server.url] and directory["ca_file"] == str(server.ca_file)
        connection = service_connection(server, ldaps=False, password=environ[directory["bind_password_env"]])
        assert directory["bind_dn"] == server.service_bind_dn
        search = directory["user_search"]
        if name in logins:
            login = logins[name]
            assert "join" not in directory and login.rpartition("@")[2] in search["domains"]
            other = directories["emea" if name == "accounts" else "accounts"]
            assert not set(search["domains"]) & set(other["user_search"]["domains"])  # exclusive routes
            value = login
        else:
            assert directory["join"] == {"attribute": "employeeNumber"}
            value = homes["accounts"]["attributes"][directory["join"]["attribute"]][0]
        filter_ = f"(&{search['filter']}({search['match_attribute']}={escape_filter_chars(value)}))"
        [homes[name]] = entries(connection, search["base_dn"], filter_, ACCOUNT_ATTRIBUTES)
        connection.unbind()
    assert homes["hr"]["dn"] == "uid=rosario.jones,ou=people,dc=hr,dc=example,dc=com"
    assert homes["emea"]["attributes"]["employeeNumber"] == ["4001"]
