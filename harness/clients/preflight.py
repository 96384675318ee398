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

The instances given directly (``--direct-writer-dsn`` / ``--direct-reader-dsn``) are tried the same
way, with the same one-line errors, and must be instances, not endpoints of a proxy or a cluster:
a direct DSN that answers as several instances balances (refused), two direct DSNs that reach one
instance cannot both be it (refused), a direct DSN at a proxy endpoint's address is refused, and
so is a set of direct DSNs none of which takes writes, or that misses the writer the writer endpoint
reaches (they are then another cluster's, or a proxy's in front of it).  A direct writer DSN whose
instance is read-only now is a warning: roles are asked live, and a failover may have moved them.

No message carries a password: the driver's own error texts are scrubbed of the endpoint's.
"""

from __future__ import annotations

import dataclasses
import socket
import struct
from typing import Any

from harness.clients.address import Address
from harness.clients.client import SYNC_DRIVERS, identify, query_once
from harness.clients.dialects import dialect_for
from harness.clients.outcomes import Stage
from harness.clients.plans import ClientError, role_of
from harness.targets.base import DIRECT_PREFIX, Endpoint, Target

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
    if endpoint.name.startswith(DIRECT_PREFIX):
        return f"--direct-{endpoint.role}-dsn {endpoint.host}:{endpoint.port}"
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
    try:
        return query_once(Address.of(target, endpoint), sql, timeout=timeout)
    except SYNC_DRIVERS[target.engine].errors as e:
        raise PreflightFailed(_problem_line(target, endpoint, e, timeout)) from None


def ask(target: Target, endpoint: Endpoint, timeout: float) -> tuple[str | None, str | None]:
    """(instance id, role) from one new connection to ``endpoint``; raises :class:`PreflightFailed`."""
    try:
        return identify(Address.of(target, endpoint), timeout=timeout)
    except SYNC_DRIVERS[target.engine].errors as e:
        raise PreflightFailed(_problem_line(target, endpoint, e, timeout)) from None
    except ClientError:
        raise PreflightFailed(f"{where(endpoint)} answered the identity query with no row") from None


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
    warnings: list[str] = []
    for reader in target.reader_endpoints:
        # A mistake, or one port for the whole cluster (pgpool-II): either way the routing guarantees
        # judge what it does with reads, so it is said, not refused.
        if (reader.host, reader.port) == (writer.host, writer.port):
            warnings.append(f"{where(reader)} is the writer endpoint's address too: ROUTE-READER-ONLY will "
                            f"judge whether its reads stay off the writer")
    answers = []
    for endpoint in [writer, *target.reader_endpoints]:
        answer = EndpointAnswer(endpoint, tuple(ask(target, endpoint, timeout) for _ in range(tries)))
        if endpoint is writer and answer.roles == {"reader"} and writes_reach_a_writer(target, writer, timeout, tries):
            warnings.append(f"{where(writer)} served every read from a read-only instance ({', '.join(answer.instances)}) "
                            f"but routes writes to a writer: ROUTE-WRITER-ENDPOINT will judge it")
            continue
        warnings += _role_findings(answer)
        answers.append(answer)
    if target.direct_endpoints:
        warnings += check_direct(target, answers, timeout=timeout, tries=tries)
    return warnings


def check_direct(target: Target, proxied: list[EndpointAnswer], *, timeout: float = DEFAULT_TIMEOUT_S,
                 tries: int = TRIES) -> list[str]:
    """Check the instances given directly against each other and against what the proxy's endpoints
    reached (``proxied``); returns warnings, raises :class:`PreflightFailed`."""
    proxy_addresses = {(e.host, e.port): e for e in [target.writer_endpoint, *target.reader_endpoints]}
    seen_addresses: dict[tuple[str, int], Endpoint] = {}
    by_instance: dict[str, Endpoint] = {}
    roles: dict[str, str | None] = {}
    warnings: list[str] = []
    for endpoint in target.direct_endpoints:
        address = (endpoint.host, endpoint.port)
        if address in proxy_addresses:
            raise PreflightFailed(f"{where(endpoint)} is the {where(proxy_addresses[address])}'s address: a direct "
                                  f"DSN must reach an instance itself, bypassing the proxy")
        if address in seen_addresses:
            raise PreflightFailed(f"{where(endpoint)} is given twice (also as {where(seen_addresses[address])})")
        seen_addresses[address] = endpoint
        answer = EndpointAnswer(endpoint, tuple(ask(target, endpoint, timeout) for _ in range(tries)))
        if not answer.instances:
            raise PreflightFailed(f"{where(endpoint)} names no instance: its identity query "
                                  f"{target.identity_query!r} gave NULL")
        if len(answer.instances) > 1:
            raise PreflightFailed(f"{where(endpoint)} answered as {len(answer.instances)} instances "
                                  f"({', '.join(answer.instances)}) in {tries} connections: it balances, so it "
                                  f"is a proxy or cluster endpoint, not an instance")
        instance = answer.instances[0]
        if instance in by_instance:
            raise PreflightFailed(f"{where(endpoint)} and {where(by_instance[instance])} both reach instance "
                                  f"{instance}: one of them is not that instance's own endpoint (a proxy?)")
        by_instance[instance] = endpoint
        roles[instance] = next(iter(answer.roles))
        if endpoint.role == "writer" and roles[instance] != "writer":
            warnings.append(f"{where(endpoint)} reaches {instance}, which is read-only now (after a failover?); "
                            f"who is writer is asked of every instance, so the run goes on")
    if "writer" not in roles.values():
        raise PreflightFailed(f"none of the direct DSNs reaches a writable instance "
                              f"({', '.join(f'{i}: {r}' for i, r in roles.items())}): give the writer's")
    for answer in proxied:
        missing = sorted({i for i, _ in answer.answers if i is not None and i not in by_instance})
        if not missing:
            continue
        if answer.endpoint.role == "writer" and "writer" in {r for i, r in answer.answers if i in missing}:
            raise PreflightFailed(f"{where(answer.endpoint)} is served by {', '.join(missing)}, which no direct "
                                  f"DSN reaches: the direct DSNs must be the instances behind the proxy")
        warnings.append(f"{where(answer.endpoint)} reached {', '.join(missing)}, which no direct DSN reaches: "
                        f"backend counts and roles do not cover it (give it with --direct-reader-dsn)")
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
