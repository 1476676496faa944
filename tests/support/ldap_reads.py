"""Reading a test slapd with ldap3 as a client other than the service would: to check what the test data
holds, independently of the code under test."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from ldap3 import SAFE_SYNC, SUBTREE, Connection, Server, Tls

from service.demo.slapd import Slapd


def service_connection(
    server: Slapd, *, ldaps: bool = True, password: str | None = None, ca_file: Path | None = None
) -> Connection:
    """Bound as ``server``'s service account (its own password unless ``password``), over ldaps:// (or
    ldap:// and StartTLS) checked against ``server``'s own CA (or ``ca_file``). Raises ldap3's exceptions
    when the bind or the TLS check fails."""
    tls = Tls(ca_certs_file=str(ca_file or server.ca_file), validate=ssl.CERT_REQUIRED)
    url = server.ldaps_url if ldaps else server.url
    ldap_server = Server(url, use_ssl=ldaps, tls=tls, connect_timeout=5, get_info="NO_INFO")
    connection = Connection(
        ldap_server,
        server.service_bind_dn,
        server.service_bind_password if password is None else password,
        client_strategy=SAFE_SYNC,
        receive_timeout=5,
        raise_exceptions=True,
    )
    connection.open()
    if not ldaps:
        connection.start_tls()
    connection.bind()
    return connection


def entries(connection: Connection, base: str, ldap_filter: str, attributes: list[str]) -> list[dict[str, Any]]:
    """``[{"dn": ..., "attributes": {...}}]`` of a subtree search (raises when the search fails)."""
    _, _, response, _ = connection.search(base, ldap_filter, SUBTREE, attributes=attributes)
    return [
        {"dn": entry["dn"], "attributes": entry["attributes"]}
        for entry in response
        if entry["type"] == "searchResEntry"
    ]
