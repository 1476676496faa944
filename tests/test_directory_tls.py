"""TLS to the directory as the running service applies it from its configuration (``ldaps://`` URLs,
``start_tls``, ``ca_file``), and a server that refuses StartTLS: the hook answers with its fallback and
says ``tls``, it never goes on in clear text."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from okta_spec import example
from support.answers import unchanged
from support.config import directory_config, service_config

from service.demo.slapd import Slapd, make_ca


def tls_config(url: str, **directory: object) -> dict:
    return service_config(url, directory=directory_config(url, **directory))


def enriched(body: dict) -> bool:
    return body["debugContext"]["outcome"] == "enriched"


@pytest.mark.parametrize("mode", ["ldaps", "start_tls"])
def test_service_enriches_over_tls_with_the_configured_ca(slapd: Slapd, start_in_process, mode: str) -> None:
    if mode == "ldaps":
        config = tls_config(slapd.ldaps_url, ca_file=str(slapd.ca_file))
    else:
        config = tls_config(slapd.url, ca_file=str(slapd.ca_file), start_tls=True)
    service = start_in_process(config)

    body = service.post("registration", example("registration")).json()

    assert enriched(body), body
    assert "okta_hook_ldap_errors_total{" not in service.metrics().replace("} 0.0", "")


@pytest.mark.parametrize("mode", ["ldaps", "start_tls"])
def test_service_refuses_a_certificate_from_another_ca(
    slapd: Slapd, start_in_process, tmp_path: Path, mode: str
) -> None:
    other = make_ca(tmp_path / "other-ca", "some other CA")
    url = slapd.ldaps_url if mode == "ldaps" else slapd.url
    service = start_in_process(tls_config(url, ca_file=str(other.cert_file), start_tls=mode == "start_tls"))

    diagnostics = unchanged(service.post("token", example("token")).json())

    assert (diagnostics["outcome"], diagnostics.get("error")) in {
        ("fallback_ldap_error", "tls"),
        ("fallback_ldap_error", "connect"),  # the health check already put the server in its cooldown
    }
    assert service.metric('okta_hook_ldap_errors_total{directory="default",error_type="tls",operation="connect"}') >= 1
    assert service.metric(f'okta_hook_ldap_up{{directory="default",server="{url.split("://")[1]}"}}') == 0


class StartTlsRefusingServer:
    """An LDAP server without TLS: it answers the StartTLS extended request with ``protocolError``
    (what a directory without a certificate does) and records the operations that follow it."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"ldap://127.0.0.1:{self._socket.getsockname()[1]}"
        self.start_tls_requests = 0
        self.later_operations: list[int] = []  # BER tags of the protocol operations after the refusal
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            threading.Thread(target=self._talk, args=(connection,), daemon=True).start()

    def _talk(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(5)
            try:
                request = connection.recv(4096)
                if b"1.3.6.1.4.1.1466.20037" not in request:  # the StartTLS OID
                    self.later_operations.append(_operation(request))
                    return
                self.start_tls_requests += 1
                connection.sendall(_extended_response(_message_id(request), result_code=2))
                if later := connection.recv(4096):
                    self.later_operations.append(_operation(later))
            except OSError:
                return

    def close(self) -> None:
        self._socket.close()


def _message_id(message: bytes) -> int:
    """The messageID of a BER LDAPMessage (SEQUENCE { INTEGER id, protocolOp })."""
    index = 2 + (message[1] & 0x7F if message[1] & 0x80 else 0)
    assert message[index] == 0x02
    length = message[index + 1]
    return int.from_bytes(message[index + 2 : index + 2 + length], "big")


def _operation(message: bytes) -> int:
    """The tag of the protocolOp: 0x60 bindRequest, 0x63 searchRequest, 0x42 unbindRequest..."""
    index = 2 + (message[1] & 0x7F if message[1] & 0x80 else 0)
    return message[index + 2 + message[index + 1]]


UNBIND = 0x42


def _extended_response(message_id: int, result_code: int) -> bytes:
    diagnostic = b"unsupported extended operation"
    result = bytes([0x0A, 0x01, result_code, 0x04, 0x00, 0x04, len(diagnostic)]) + diagnostic
    operation = bytes([0x78, len(result)]) + result  # [APPLICATION 24] ExtendedResponse
    identifier = message_id.to_bytes(max(1, (message_id.bit_length() + 8) // 8), "big")
    body = bytes([0x02, len(identifier)]) + identifier + operation
    return bytes([0x30, len(body)]) + body


@pytest.fixture
def refusing_server() -> Iterator[StartTlsRefusingServer]:
    server = StartTlsRefusingServer()
    yield server
    server.close()


def test_start_tls_refused_by_the_server_is_a_tls_failure_not_clear_text(
    refusing_server: StartTlsRefusingServer, slapd: Slapd, start_in_process
) -> None:
    config = tls_config(refusing_server.url, start_tls=True, ca_file=str(slapd.ca_file))
    service = start_in_process(config)

    diagnostics = unchanged(service.post("registration", example("registration")).json())

    assert diagnostics["outcome"] == "fallback_ldap_error"
    assert diagnostics["error"] in ("tls", "connect")  # "connect": in the cooldown the health check began
    assert refusing_server.start_tls_requests >= 1
    # nothing but the farewell in clear text: no bind (the password), no search
    assert set(refusing_server.later_operations) <= {UNBIND}, refusing_server.later_operations
    assert service.metric('okta_hook_ldap_errors_total{directory="default",error_type="tls",operation="connect"}') >= 1
