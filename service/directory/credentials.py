"""Checking a person's password: one simple bind as their DN, on a connection of its own.

The bind never uses a pooled service connection (a pooled connection re-bound as a user would serve
the next lookup with that user's rights), is never retried (each failed try counts towards the
account's lockout), and its connection is closed right after. The password is handed to ldap3 and to
nothing else: no message, log field, span attribute or exception here ever holds it.

Why a bind was refused is read from what the server says, in a fixed vocabulary
(:class:`PasswordRejection`): Active Directory's "data NNN" code in the diagnostic message, or the password
policy response control (OpenLDAP's ppolicy overlay, draft-behera-ldap-password-policy), which says
``accountLocked`` or ``passwordExpired`` when the bind asked for it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from service.directory.config import DirectoryConfig
from service.directory.connections import ConnectionPool, Server, new_connection, open_session, run_bind
from service.directory.errors import DirectoryError, StageReporter
from service.directory.protocol import PasswordRejection

#: Request control of the password policy draft: the server answers it with the account's state.
PPOLICY_OID = "1.3.6.1.4.1.42.2.27.8.5.1"

_INVALID_CREDENTIALS = 49
#: Results that refuse the person, not the directory: invalidCredentials, inappropriateAuthentication,
#: insufficientAccessRights, unwillingToPerform (a disabled account on some servers).
_REFUSED = frozenset({_INVALID_CREDENTIALS, 48, 50, 53})


#: Active Directory's sub-codes of invalidCredentials (the ``data 52e`` in "AcceptSecurityContext
#: error, data 52e, v4563"). 525 (no such user) cannot happen after the search found the entry, and is
#: reported as a wrong password like any unknown code.
AD_DATA_CODES: Mapping[str, PasswordRejection] = {
    "52e": PasswordRejection.INVALID_CREDENTIALS,
    "530": PasswordRejection.NOT_PERMITTED_NOW,
    "531": PasswordRejection.WORKSTATION,
    "532": PasswordRejection.PASSWORD_EXPIRED,
    "533": PasswordRejection.ACCOUNT_DISABLED,
    "701": PasswordRejection.ACCOUNT_EXPIRED,
    "773": PasswordRejection.MUST_CHANGE_PASSWORD,
    "775": PasswordRejection.LOCKED,
}
_AD_DATA = re.compile(r"\bdata ([0-9a-fA-F]{3,4})\b")

#: ppolicy's ``error`` enumeration (draft-behera, PasswordPolicyResponseValue).
_PPOLICY_ERRORS: Mapping[int, PasswordRejection] = {
    0: PasswordRejection.PASSWORD_EXPIRED,
    1: PasswordRejection.LOCKED,
    2: PasswordRejection.MUST_CHANGE_PASSWORD,
}


def rejection_reason(result: Mapping[str, Any]) -> PasswordRejection:
    """Why a bind refused with ``result`` (ldap3's result dict) was refused; the message and control
    are read, never kept or repeated."""
    message = result.get("message")
    if isinstance(message, str):
        found = _AD_DATA.search(message)
        if found is not None:
            return AD_DATA_CODES.get(found.group(1).lower(), PasswordRejection.INVALID_CREDENTIALS)
    controls = result.get("controls")
    control = controls.get(PPOLICY_OID) if isinstance(controls, dict) else None
    value = control.get("value") if isinstance(control, dict) else None
    if isinstance(value, bytes):
        error = ppolicy_error(value)
        if error is not None and error in _PPOLICY_ERRORS:
            return _PPOLICY_ERRORS[error]
    return PasswordRejection.INVALID_CREDENTIALS


def ppolicy_error(value: bytes) -> int | None:
    """The ``error`` field of a PasswordPolicyResponseValue (BER: ``SEQUENCE { warning [0] OPTIONAL,
    error [1] ENUMERATED OPTIONAL }``), or None. A small reader, because ldap3 does not decode it and
    only the one enumerated value matters; anything malformed is None."""
    if len(value) < 2 or value[0] != 0x30:
        return None
    position, end = _length(value, 1)
    if position is None or end > len(value):
        return None
    while position < end:
        tag = value[position]
        start, stop = _length(value, position + 1)
        if start is None or stop > end:
            return None
        if tag == 0x81 and stop - start == 1:  # [1] primitive: the error
            return value[start]
        position = stop
    return None


def _length(value: bytes, position: int) -> tuple[int | None, int]:
    """BER definite length at ``position``: (first content byte, end of content)."""
    if position >= len(value):
        return None, 0
    first = value[position]
    if first < 0x80:
        return position + 1, position + 1 + first
    count = first & 0x7F
    if count == 0 or count > 2 or position + 1 + count > len(value):
        return None, 0
    length = int.from_bytes(value[position + 1 : position + 1 + count], "big")
    start = position + 1 + count
    return start, start + length


class CredentialChecker:
    """Binds as a person on a fresh connection per check, with the directory's servers, failover and
    TLS settings. Runs in a worker thread (ldap3 is blocking)."""

    def __init__(self, config: DirectoryConfig, pool: ConnectionPool) -> None:
        self._config = config
        self._pool = pool

    def check(self, dn: str, password: str, on_stage: StageReporter) -> PasswordRejection | None:
        """None when ``password`` is the password of the entry at ``dn``, else why it was refused.

        The bind carries exactly the UTF-8 bytes of ``password``: nothing normalizes or refuses it on
        the way (see :func:`new_connection`), so the right password is never refused (nor counted
        towards a lockout) for a no-break space or a combining accent, no look-alike is accepted in its
        place, and a NUL or a control character is the directory's to judge, not a client error.

        A server that cannot be reached or fails TLS is skipped for the next one (no password was
        sent to it); once a server has answered the bind, its answer is final, right or wrong.
        Raises :class:`DirectoryError` when no server answered."""
        if not password:  # an LDAP simple bind with a DN and no password is an anonymous bind
            return PasswordRejection.INVALID_CREDENTIALS
        secret = password.encode("utf-8")
        now = time.monotonic()
        candidates = [server for server in self._pool.servers if server.available(now)]
        if not candidates:
            raise DirectoryError("connect", "every directory server is in its failure cooldown")
        last: DirectoryError | None = None
        for server in candidates:
            try:
                return self._bind_on(server, dn, secret, on_stage)
            except _NotSent as not_sent:
                server.mark_down(self._config.server_cooldown_seconds)
                last = not_sent.error
        assert last is not None
        raise last

    def _bind_on(self, server: Server, dn: str, secret: bytes, on_stage: StageReporter) -> PasswordRejection | None:
        conn = new_connection(server, self._config, dn, secret)
        try:
            on_stage("connect")
            try:
                with self._pool.operation("user_connect", server):
                    open_session(conn, self._config)
            except DirectoryError as error:
                raise _NotSent(error) from None
            on_stage("user_bind")
            with self._pool.operation("user_bind", server):
                ok, result = run_bind(conn, controls=[(PPOLICY_OID, False, None)])
                if ok:
                    return None
                code = result.get("result")
                if code in _REFUSED:
                    return rejection_reason(result)
                raise DirectoryError("server_error", f"bind refused with LDAP result code {code}")
        finally:
            conn.password = None
            with suppress(Exception):
                conn.unbind()


class _NotSent(Exception):
    """The connection failed before the bind: the password never left, another server may be tried."""

    def __init__(self, error: DirectoryError) -> None:
        super().__init__(str(error))
        self.error = error
