"""Preflight: every endpoint of a target answers, speaks the engine, and is served by the right role.

A certification that starts against an endpoint it cannot use wastes minutes and then reads like a
proxy failure: an unreachable DSN or a wrong password used to run every suite and report a storm of
refused connections as a broken guarantee.  So before any suite runs, each endpoint is opened with
the engine's own driver (a short timeout) and asked who serves it and whether that instance takes
writes (:meth:`~harness.clients.dialects.base.Dialect.identity_sql`).  What can go wrong becomes one
line naming the endpoint and the problem:

* nothing listens, or the host is unknown or silent (``unreachable``);
* the login is refused (a wrong user, password or database);
* the endpoint speaks the other engine's protocol (a PostgreSQL port given with ``--engine mysql``):
  told by how the server opens a connection, since a MySQL server greets first and a PostgreSQL
  server answers an SSL request with one byte;
* the writer endpoint only ever reaches read-only instances (it points at a reader), even with a
  statement a pooler routes as a write (``Dialect.writer_check_sql``): no write could succeed, so
  the run cannot be carried out.  Reads alone do not decide it: a pooler that balances reads over
  the replicas (pgpool-II) may serve every read from a reader through a writer endpoint.

Misrouting that a proxy may do on its own is a warning, not a refusal: a writer endpoint that
reaches a reader on some connections, or a reader endpoint served by the writer, is what the
routing guarantees judge, and the run goes on to judge it (the warning names the endpoint so a
user who gave the wrong DSN sees it at once).  A reader endpoint with the writer endpoint's very
address is refused: that is a mistake in the command, not a proxy's behaviour.

No message carries a password: the driver's own error texts are scrubbed of the endpoint's.
"""

from __future__ import annotations

import dataclasses
import socket
import struct
from typing import Any

from harness.clients.address import Address
from harness.clients.client import SYNC_DRIVERS
from harness.clients.deadline import SocketDeadline
from harness.clients.dialects import dialect_for
from harness.clients.outcomes import Stage
from harness.clients.plans import ClientError, as_text, role_of
from harness.targets.base import Endpoint, Target

DEFAULT_TIMEOUT_S = 5.0
TRIES = 3
"""Connections per endpoint: a proxy may balance connections, so one answer is not its habit."""

AUTH_CODES = {"28P01", "28000", "3D000", "1045", "1044", "1049", "1698"}
"""Refused logins: PostgreSQL bad password / no such role or no access / no such database; MySQL
access denied (1045, 1044, 1698) and unknown database (1049)."""

UNREACHABLE_CODES = {"connect-failed", "2002", "2003", "2005", "08001", "08006"}

_PG_SSL_REQUEST = struct.pack("!ii", 8, 80877103)
_ENGINE_NAMES = {"postgres": "PostgreSQL", "mysql": "MySQL"}


class PreflightFailed(ClientError):
    """An endpoint cannot be used; the message is one line naming it and the problem."""


@dataclasses.dataclass(frozen=True)
class EndpointAnswer:
    """What one endpoint said on each preflight connection: (instance, role) pairs."""

    endpoint: Endpoint
    answers: tuple[tuple[str | None, str | None], ...]

    @property
    def roles(self) -> set[str | None]:
        return {role for _, role in self.answers}

    @property
    def instances(self) -> list[str]:
        return sorted({str(i) for i, _ in self.answers if i is not None})


def where(endpoint: Endpoint) -> str:
    return f"{endpoint.role} endpoint {endpoint.host}:{endpoint.port}"


def sniff_protocol(host: str, port: int, timeout: float) -> str | None:
    """``mysql``, ``postgres`` or None: which protocol the server at ``host:port`` speaks.

    A MySQL-protocol server sends its greeting as soon as the connection opens (a handshake packet
    of protocol 10, or an error packet); a PostgreSQL server sends nothing until asked, and answers
    an SSL request with ``S`` or ``N``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(min(timeout, 1.0))
            try:
                first = sock.recv(5)
            except TimeoutError:
                first = b""
            if len(first) >= 5 and first[4] in (10, 0xFF):
                return "mysql"
            if first:
                return None
            sock.settimeout(timeout)
            sock.sendall(_PG_SSL_REQUEST)
            reply = sock.recv(1)
            return "postgres" if reply in (b"S", b"N") else None
    except OSError:
        return None


def _problem_line(target: Target, endpoint: Endpoint, exc: BaseException, timeout: float) -> str:
    """One line for a failed connection, scrubbed of the endpoint's password."""
    dialect = dialect_for(target.engine)
    error = dialect.classify(exc, Stage.CONNECT)
    text = " ".join((error.text or type(exc).__name__).split())
    password = target.credentials_for(endpoint).password
    if password:
        text = text.replace(password, "***")
    code = error.code or ""
    user = target.credentials_for(endpoint).user
    if code in AUTH_CODES or "password authentication failed" in text or "Access denied" in text:
        return f"{where(endpoint)} refused the login of user {user!r}: {text}"
    refused = "refused" in text.lower() or "could not translate host name" in text
    other = None if refused else sniff_protocol(endpoint.host, endpoint.port, timeout)
    if other is not None and other != target.engine:
        return (f"{where(endpoint)} speaks the {_ENGINE_NAMES[other]} protocol, not {_ENGINE_NAMES[target.engine]} "
                f"(--engine {target.engine}): is it the right port, or the right --engine?")
    if refused or code in UNREACHABLE_CODES or "timeout" in text.lower() or "timed out" in text.lower():
        return f"{where(endpoint)} is unreachable: {text}"
    return f"{where(endpoint)} could not be used: {text}"


def _rows(target: Target, endpoint: Endpoint, sql: str, timeout: float) -> list[Any]:
    """The rows of ``sql`` on one new connection to ``endpoint``; raises :class:`PreflightFailed`."""
    address = Address.of(target, endpoint)
    driver = SYNC_DRIVERS[target.engine]
    connection = driver(address, connect_timeout=timeout, **driver.io_timeout_options(timeout))
    deadline = SocketDeadline(timeout)
    try:
        connection.open()
        deadline.arm(connection.fileno)
        return list(connection.execute(sql))
    except connection.errors as e:
        raise PreflightFailed(_problem_line(target, endpoint, e, timeout)) from None
    finally:
        deadline.disarm()
        connection.close()


def ask(target: Target, endpoint: Endpoint, timeout: float) -> tuple[str | None, str | None]:
    """(instance id, role) from one new connection to ``endpoint``; raises :class:`PreflightFailed`."""
    address = Address.of(target, endpoint)
    rows = _rows(target, endpoint, dialect_for(target.engine).identity_sql(address.identity_query), timeout)
    if not rows:
        raise PreflightFailed(f"{where(endpoint)} answered the identity query with no row")
    instance, _backend, writable = rows[0]
    return (None if instance is None else str(as_text(instance))), role_of(writable)


def writes_reach_a_writer(target: Target, endpoint: Endpoint, timeout: float, tries: int) -> bool:
    """Whether a statement routed as a write (``Dialect.writer_check_sql``) reaches a writable
    instance on any of ``tries`` connections: a pooler that balances reads over the replicas
    (pgpool-II) serves reads from readers through an endpoint that writes go through fine."""
    sql = dialect_for(target.engine).writer_check_sql
    for _ in range(tries):
        rows = _rows(target, endpoint, sql, timeout)
        if rows and role_of(rows[0][0]) == "writer":
            return True
    return False


def check_endpoints(target: Target, *, timeout: float = DEFAULT_TIMEOUT_S, tries: int = TRIES) -> list[str]:
    """Check every endpoint of ``target``; returns warnings, raises :class:`PreflightFailed`."""
    writer = target.writer_endpoint
    for reader in target.reader_endpoints:
        if (reader.host, reader.port) == (writer.host, writer.port):
            raise PreflightFailed(f"{where(reader)} is the writer endpoint's address: give a reader "
                                  f"endpoint's DSN, or leave --reader-dsn out")
    warnings: list[str] = []
    for endpoint in [writer, *target.reader_endpoints]:
        answer = EndpointAnswer(endpoint, tuple(ask(target, endpoint, timeout) for _ in range(tries)))
        if endpoint is writer and answer.roles == {"reader"} and writes_reach_a_writer(target, writer, timeout, tries):
            warnings.append(f"{where(writer)} served every read from a read-only instance ({', '.join(answer.instances)}) "
                            f"but routes writes to a writer: ROUTE-WRITER-ENDPOINT will judge it")
            continue
        warnings += _role_findings(answer)
    return warnings


def _role_findings(answer: EndpointAnswer) -> list[str]:
    """Warnings about the roles an endpoint reached; raises when the writer endpoint never reached a writer."""
    endpoint, roles = answer.endpoint, answer.roles
    served = ", ".join(answer.instances) or "an unnamed instance"
    if endpoint.role == "writer" and roles == {"reader"}:
        raise PreflightFailed(f"{where(endpoint)} reached only read-only instances ({served}) in "
                              f"{len(answer.answers)} connections: it points at a reader, so no write can succeed")
    if endpoint.role == "writer" and "reader" in roles:
        return [(f"{where(endpoint)} reached a read-only instance on some connections ({served}): "
                f"ROUTE-WRITER-ENDPOINT will judge it")]
    if endpoint.role == "reader" and "writer" in roles:
        return [(f"{where(endpoint)} was served by a writable instance ({served}): if the DSN is meant to "
                f"reach a reader, check it; ROUTE-READER-ONLY will judge it")]
    return []


def preflight_lines(target: Target, **options: Any) -> tuple[str | None, list[str]]:
    """(the problem or None, warnings): :func:`check_endpoints` for callers that print lines."""
    try:
        return None, check_endpoints(target, **options)
    except PreflightFailed as e:
        return str(e), []
