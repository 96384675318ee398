"""Backend connections to MySQL-protocol servers (MariaDB, MySQL, Aurora MySQL): open, log in, run
InitQuery, reset, close.

:class:`MySQLBackendFactory` is the pool's :data:`BackendFactory` for the MySQL engine.  It logs in
as the pool key's user to the key's schema with the capability set the proxy relays
(:data:`BACKEND_CAPABILITIES`), answers ``mysql_native_password`` and ``caching_sha2_password``
(fast path, or the full path through the server's RSA public key: the proxy does not speak TLS to
its databases, so the password never travels in clear), runs InitQuery, then applies the key's
tracked variables so that the session starts as the pool partition promises.  Session tracking is
not asked for (see :data:`BACKEND_CAPABILITIES`), so replies relay to clients byte for byte.  ``reset()`` sends
COM_RESET_CONNECTION, selects the key's schema again (the reset keeps the one chosen with USE) and
replays InitQuery and the tracked variables (the reset sets session variables back to global), all
pipelined in one write, so a reset costs one round trip.

The same connection serves the engine's own needs on the harness side of the proxy: reading
``@@max_connections`` for the pool cap, and the topology probe (:mod:`.probe`), through the small
text-protocol helper :meth:`MySQLBackend.query`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from reference_proxy.contracts import BackendConnectFailed, BackendCredentials, InstanceAddress, PoolKey
from reference_proxy.engines import BackendFactoryBase, StreamBackendBase, open_tappable_connection
from reference_proxy.protocol.mysql import (
    CACHING_SHA2_PASSWORD,
    NATIVE_PASSWORD,
    REQUEST_PUBLIC_KEY,
    AuthMoreData,
    AuthSwitchRequest,
    Capability,
    ColumnDefinition41,
    ComInitDb,
    ComQuery,
    ComQuit,
    ComResetConnection,
    ErrPacket,
    HandshakeResponse41,
    HandshakeV10,
    OkPacket,
    Packet,
    PacketReader,
    PacketRole,
    ProtocolViolation,
    ResponseReader,
    ResponseTracker,
    ServerStatus,
    TextRow,
    caching_sha2_scramble,
    decode_auth_reply,
    decode_greeting,
    encode_packet,
    encode_text,
    native_password_scramble,
    next_sequence_id,
    text,
)

__all__ = [
    "BACKEND_CAPABILITIES",
    "MAX_CONNECTIONS_QUERY",
    "PROGRAM_NAME",
    "UTF8MB4_GENERAL_CI",
    "MySQLBackend",
    "MySQLBackendFactory",
    "MySQLConnectFailed",
    "QueryResult",
    "Reply",
    "auth_answer",
    "connect_and_log_in",
    "negotiate_capabilities",
    "rsa_encrypted_password",
    "session_setup_sql",
]

log = logging.getLogger(__name__)

ER_ACCESS_DENIED = 1045
"""The server refused the login's user or password: a rotated secret may hold a newer one."""
ER_NO_SUCH_THREAD = 1094
"""``Unknown thread id``: the thread a KILL named had ended already."""

READ_SIZE = 65536
MAX_CONNECTIONS_QUERY = "SELECT @@max_connections"
PROGRAM_NAME = "reference-proxy"
"""Sent as the ``program_name`` connect attribute, so the server's process list names the proxy."""

UTF8MB4_GENERAL_CI = 45
"""The handshake character set: MariaDB's utf8mb4 default collation, which every MySQL-protocol
server knows.  COM_RESET_CONNECTION returns a session to it, so it is the pool's baseline."""

CR_CONN_HOST_ERROR = 2003
"""Client-side code (as MySQL's client library numbers it): the server could not be reached."""
CR_SERVER_LOST = 2013
"""Client-side code: the server went away or broke the protocol during the login."""

# Why each bit toward the backend is set or not.  The proxy relays clients' bytes to backends it
# logged in itself, so every bit here is a property of every pooled session; bits that would make
# one client's session behave differently from another's stay off.
BACKEND_CAPABILITIES = (
    # Bit 0 (MariaDB's CLIENT_MYSQL): set, so MariaDB sends no extended metadata, no cached column
    # counts and no progress packets, which stock MySQL clients would not understand.
    Capability.LONG_PASSWORD
    # Full column flags in column definitions, which clients expect.
    | Capability.LONG_FLAG
    # Log in straight into the pool key's schema.
    | Capability.CONNECT_WITH_DB
    # The 4.1 protocol: SQLSTATE in ERR, status flags in OK and EOF.
    | Capability.PROTOCOL_41
    # Status flags say whether a transaction is open: the release rule depends on them.
    | Capability.TRANSACTIONS
    # 4.1 auth responses (length-prefixed scrambles).
    | Capability.SECURE_CONNECTION
    # Clients may send several statements in one COM_QUERY (so may InitQuery); the reply tracker
    # follows MORE_RESULTS_EXISTS.
    | Capability.MULTI_STATEMENTS
    # CALL of a procedure that returns result sets needs both (error 1312 otherwise).
    | Capability.MULTI_RESULTS
    | Capability.PS_MULTI_RESULTS
    # Named auth plugins, auth switch and auth-more-data.
    | Capability.PLUGIN_AUTH
    | Capability.PLUGIN_AUTH_LENENC_CLIENT_DATA
    # program_name, so the server's process list tells proxy connections apart.
    | Capability.CONNECT_ATTRS
)
# Left off on purpose:
# * COMPRESS: changes the framing of the whole stream; the relay works on plain packets.
# * LOCAL_FILES: a LOCAL INFILE request would make the server read a file from the proxy's host.
# * SSL: backends are reached without TLS, like the PostgreSQL engine's.
# * SESSION_TRACK: no client is offered it, and with it the server appends session-state reports
#   to OK packets (flag 0x4000), which would then have to be stripped from every relayed OK.  Left
#   off, OKs pass through unchanged; the session learns schema changes from COM_INIT_DB and USE
#   themselves, and the pin classifier reads tracked SETs from the statement text.
# * DEPRECATE_EOF: no client tested asks for it, so leaving it off lets most result sets pass
#   unchanged; the session translates for a client that does.
# * FOUND_ROWS, IGNORE_SPACE, INTERACTIVE, NO_SCHEMA, ODBC: per-client semantics (affected-row
#   counts, parsing, idle timeout) that would differ between clients sharing a backend.
# * CAN_HANDLE_EXPIRED_PASSWORDS: an expired database password must fail the login, not give the
#   pool a connection that can only run SET PASSWORD.
# * OPTIONAL_RESULTSET_METADATA, ZSTD_COMPRESSION, QUERY_ATTRIBUTES, MULTI_FACTOR_AUTHENTICATION:
#   change packet layouts the codec does not relay.
# * SSL_VERIFY_SERVER_CERT, REMEMBER_OPTIONS: client-library options, never sent on the wire.

REQUIRED_CAPABILITIES = Capability.PROTOCOL_41 | Capability.SECURE_CONNECTION | Capability.PLUGIN_AUTH
"""A server that lacks one of these predates MySQL 5.5 and is not served."""

_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INTEGER = re.compile(r"^-?[0-9]+$")


class MySQLConnectFailed(BackendConnectFailed):
    """A backend login failed; ``error_code`` and ``sqlstate`` are the server's when it answered
    with an ERR (1045 bad password, 1040 too many connections...), otherwise the client-side codes
    2003 (unreachable) or 2013 (lost during the login), so a session can pass them on."""

    def __init__(self, message: str, error_code: int, sqlstate: str = "HY000",
                 server_message: str | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.sqlstate = sqlstate
        self.server_message = server_message if server_message is not None else message


def _refused(address: InstanceAddress, err: ErrPacket) -> MySQLConnectFailed:
    return MySQLConnectFailed(f"instance {address.id} refused the login: ERROR {err.error_code} "
                              f"({err.sqlstate}): {err.message}", err.error_code, err.sqlstate or "HY000",
                              err.message)


def negotiate_capabilities(server_capabilities: int, *, with_database: bool) -> int:
    """The capabilities to answer a greeting with: :data:`BACKEND_CAPABILITIES` as far as the
    server offers them, always with bit 0 (ours to set: it refuses MariaDB's extensions).
    Raises ValueError when the server lacks what the proxy cannot do without."""
    missing = REQUIRED_CAPABILITIES & ~server_capabilities
    if missing:
        raise ValueError(f"the server does not offer {Capability(missing)!r}")
    caps = (BACKEND_CAPABILITIES & server_capabilities) | Capability.LONG_PASSWORD
    if not with_database:
        caps &= ~Capability.CONNECT_WITH_DB
    return int(caps)


def auth_answer(plugin: str, password: str, nonce: bytes) -> bytes:
    """The first answer to ``plugin``'s challenge.  Raises ValueError for a plugin the proxy does not
    speak (clear-text passwords are refused: backends are reached without TLS)."""
    if plugin == NATIVE_PASSWORD:
        return native_password_scramble(password, nonce)
    if plugin == CACHING_SHA2_PASSWORD:
        return caching_sha2_scramble(password, nonce)
    raise ValueError(f"the database asks for the auth plugin {plugin!r}; the proxy logs in to its "
                     f"databases with {NATIVE_PASSWORD} or {CACHING_SHA2_PASSWORD} only")


def rsa_encrypted_password(password: str, nonce: bytes, public_key_pem: bytes) -> bytes:
    """caching_sha2_password's full authentication without TLS: the NUL-terminated password, XORed
    with the nonce (repeated), encrypted with the server's RSA key (OAEP, SHA-1 as the server uses).
    Raises ValueError when the key is not PEM, TypeError when it is not an RSA key."""
    key = serialization.load_pem_public_key(public_key_pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise TypeError("the server's public key is not an RSA key")
    nonce = nonce[:20]
    if not nonce:
        raise ValueError("no nonce to mask the password with")
    secret = encode_text(password) + b"\0"
    masked = bytes(b ^ nonce[i % len(nonce)] for i, b in enumerate(secret))
    return key.encrypt(masked, padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()),
                                            algorithm=hashes.SHA1(), label=None))


def _sql_value(value: str) -> str:
    if _INTEGER.match(value):
        return value
    if "\\" in value:
        # The meaning of a backslash depends on sql_mode (NO_BACKSLASH_ESCAPES); refuse, not guess.
        raise ValueError(f"cannot restore a session variable value containing a backslash: {value!r}")
    return "'" + value.replace("'", "''") + "'"


def session_setup_sql(variant: tuple[tuple[str, str], ...]) -> str | None:
    """One statement restoring a pool key's tracked variables (``SET SESSION a = 1, b = 'x'``), or
    None when there are none.  Values are the text the server reported; integers stay unquoted
    (numeric variables refuse strings), everything else is a string literal.  Raises ValueError
    for a name that is not a plain identifier or a value that cannot be quoted safely."""
    if not variant:
        return None
    parts = []
    for name, value in variant:
        if not _VARIABLE_NAME.match(name):
            raise ValueError(f"not a session variable name: {name!r}")
        parts.append(f"{name} = {_sql_value(value)}")
    return "SET SESSION " + ", ".join(parts)


@dataclass(frozen=True)
class QueryResult:
    """The reply to one COM_QUERY, read as text: the first result set's column names and rows, and
    the status the reply ended with (None when it carried none, as after an ERR)."""

    columns: tuple[str, ...] = ()
    rows: tuple[tuple[str | None, ...], ...] = ()
    status_flags: int | None = None
    affected_rows: int = 0
    error: ErrPacket | None = None

    def value(self) -> str | None:
        """First column of the first row; None on error or no rows."""
        if self.error is not None or not self.rows or not self.rows[0]:
            return None
        return self.rows[0][0]

    def records(self) -> list[dict[str, str | None]]:
        """The rows as column-name dictionaries (for SHOW statements with many columns)."""
        return [dict(zip(self.columns, row, strict=False)) for row in self.rows]


OwnCommand = ComQuery | ComInitDb | ComResetConnection
"""The commands the proxy sends on its own behalf (never the relayed ones)."""


@dataclass(frozen=True)
class Reply:
    """One command's whole reply: the tracker that followed it and each packet with its role."""

    tracker: ResponseTracker
    packets: list[tuple[bytes, PacketRole]]


class MySQLBackend(StreamBackendBase):
    """One open, logged-in backend connection (satisfies :class:`BackendConnection`).

    While lent, the client session reads and writes ``reader``/``writer`` directly; ``reset``,
    ``query`` and ``close`` are called only when nobody relays.  ``capabilities`` is the set agreed
    with the server, which the session relays clients' packets under; ``status_flags`` the last
    status the proxy itself saw.
    """

    def __init__(self, key: PoolKey, address: InstanceAddress, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, *, init_query: str | None = None,
                 io_timeout: float = 30.0) -> None:
        self.key = key
        self.address = address
        self.reader = reader
        self.writer = writer
        self.transport = writer.transport
        self.backend_id = "?"
        self.greeting: HandshakeV10 | None = None
        self.capabilities = 0
        self.status_flags = int(ServerStatus.AUTOCOMMIT)
        self.auth_plugin = NATIVE_PASSWORD
        self.abort_reason: str | None = None
        self._init_query = init_query
        self._io_timeout = io_timeout
        self._usable = True
        self.cancel_login: Callable[[], Awaitable[BackendCredentials | None]] | None = None
        """The login :meth:`cancel` connects with (the factory's, current when it is called)."""

    def __repr__(self) -> str:
        return (f"<MySQLBackend {self.address.id} thread={self.backend_id} "
                f"{self.key.user}@{self.key.database}>")

    @property
    def server_version(self) -> str:
        return self.greeting.server_version if self.greeting is not None else ""

    @property
    def is_mariadb(self) -> bool:
        return "MariaDB" in self.server_version


    # -- packets ---------------------------------------------------------------------------------
    def _send(self, payload: bytes, sequence_id: int) -> int:
        data, following = encode_packet(payload, sequence_id)
        self.writer.write(data)
        return following

    async def _next_packet(self, packets: PacketReader) -> Packet:
        while True:
            packet = packets.next_packet()
            if isinstance(packet, Packet):
                return packet
            data = await self.reader.read(READ_SIZE)
            if not data:
                raise ConnectionError("the database closed the connection")
            packets.receive_data(data)

    async def _exchange(self, *commands: OwnCommand) -> list[Reply]:
        """Send ``commands`` in one write and read their replies in order (a server answers
        pipelined commands one after the other, each reply starting at sequence 1).  Any failure
        leaves the connection's state unknown, so it is marked unusable before the error goes up."""
        replies: list[Reply] = []
        try:
            payloads = [command.encode(self.capabilities) for command in commands]
            for payload in payloads:
                self._send(payload, 0)
            leftover = b""
            async with asyncio.timeout(self._io_timeout):
                await self.writer.drain()
                for payload in payloads:
                    reply = ResponseReader(payload[0], self.capabilities)
                    reply.receive_data(leftover)
                    packets: list[tuple[bytes, PacketRole]] = []
                    while not reply.done:
                        item = reply.next_packet()
                        if not isinstance(item, tuple):
                            data = await self.reader.read(READ_SIZE)
                            if not data:
                                raise ConnectionError("the database closed the connection")
                            reply.receive_data(data)
                            continue
                        packet, role = item
                        if reply.tracker.awaiting_client:
                            raise ProtocolViolation(f"the database asked for client input ({role.value}) "
                                                    f"in reply to command {payload[0]:#04x}")
                        packets.append((packet.payload, role))
                    leftover = reply.take_buffered()
                    if reply.status_flags is not None:
                        self.status_flags = reply.status_flags
                    replies.append(Reply(reply.tracker, packets))
            if leftover:
                raise ProtocolViolation("the database sent bytes after a complete reply")
        except BaseException:
            self._usable = False
            raise
        return replies

    # -- login -----------------------------------------------------------------------------------
    async def login(self, user: str, password: str, database: str, *,
                    program_name: str = PROGRAM_NAME) -> None:
        """Read the greeting and authenticate; see the module docstring.  Raises MySQLConnectFailed
        for a refusal, and OSError, TimeoutError or ProtocolViolation for a broken exchange."""
        packets = PacketReader(what="server", expected_sequence=0)
        first = await self._next_packet(packets)
        greeting = decode_greeting(first.payload)
        if isinstance(greeting, ErrPacket):
            raise _refused(self.address, greeting)
        self.greeting = greeting
        self.backend_id = str(greeting.connection_id)
        try:
            caps = negotiate_capabilities(greeting.capabilities, with_database=bool(database))
        except ValueError as e:
            raise MySQLConnectFailed(f"instance {self.address.id} cannot be served: {e}",
                                     CR_SERVER_LOST) from None
        plugin = greeting.auth_plugin_name or NATIVE_PASSWORD
        if plugin not in (NATIVE_PASSWORD, CACHING_SHA2_PASSWORD):
            plugin = NATIVE_PASSWORD  # answer natively; the server switches if the account needs more
        self.auth_plugin = plugin
        nonce = greeting.auth_plugin_data
        attributes = (("_client_name", PROGRAM_NAME), ("program_name", program_name))
        response = HandshakeResponse41(
            caps, user, auth_answer(plugin, password, nonce), database or None, plugin,
            attributes if caps & Capability.CONNECT_ATTRS else (), character_set=UTF8MB4_GENERAL_CI)
        packets.expected_sequence = self._send(response.encode(), next_sequence_id(first.sequence_id))
        self.capabilities = caps
        asked_for_key = False
        while True:
            await self.writer.drain()
            packet = await self._next_packet(packets)
            reply = decode_auth_reply(packet.payload, caps)
            following = next_sequence_id(packet.sequence_id)
            if isinstance(reply, OkPacket):
                self.status_flags = reply.status_flags
                return
            if isinstance(reply, ErrPacket):
                raise _refused(self.address, reply)
            if isinstance(reply, AuthSwitchRequest):
                try:
                    answer = auth_answer(reply.plugin_name, password, reply.nonce)
                except ValueError as e:
                    raise MySQLConnectFailed(f"instance {self.address.id}: {e}", CR_SERVER_LOST) from None
                self.auth_plugin, nonce, asked_for_key = reply.plugin_name, reply.nonce, False
                packets.expected_sequence = self._send(answer, following)
                continue
            answer = self._more_data(reply, password, nonce, asked_for_key)
            if answer is not None:
                asked_for_key = answer == REQUEST_PUBLIC_KEY
                packets.expected_sequence = self._send(answer, following)

    def _more_data(self, more: AuthMoreData, password: str, nonce: bytes, asked_for_key: bool) -> bytes | None:
        """The answer to an AuthMoreData step (None: wait for the next packet)."""
        if self.auth_plugin != CACHING_SHA2_PASSWORD:
            raise ProtocolViolation(f"unexpected auth-more-data during {self.auth_plugin} authentication")
        if more.is_fast_auth_success:
            return None
        if more.is_perform_full_authentication:
            # Full authentication proves the password itself: over TLS it would go in clear; the
            # proxy reaches databases without TLS, so it asks for the server's RSA key instead.
            return REQUEST_PUBLIC_KEY
        if not asked_for_key:
            raise ProtocolViolation("unexpected auth-more-data during caching_sha2_password authentication")
        try:
            return rsa_encrypted_password(password, nonce, more.data)
        except (ValueError, TypeError) as e:
            raise MySQLConnectFailed(
                f"instance {self.address.id} wants caching_sha2_password full authentication, which needs "
                f"TLS or the server's RSA public key; the proxy reaches databases without TLS and could "
                f"not use the key the server sent ({e})", CR_SERVER_LOST) from None

    # -- session set-up and reset -------------------------------------------------------------------
    async def query(self, sql: str) -> QueryResult:
        """Run ``sql`` with the text protocol and read the reply as text (see :class:`QueryResult`).
        Raises OSError, TimeoutError or ProtocolViolation, after which the connection is unusable."""
        (reply,) = await self._exchange(ComQuery.from_sql(sql))
        tracker, packets = reply.tracker, reply.packets
        columns: list[str] = []
        rows: list[tuple[str | None, ...]] = []
        result_sets = affected = 0
        for payload, role in packets:
            if role is PacketRole.COLUMN_COUNT:
                result_sets += 1
            elif result_sets > 1:
                continue
            elif role is PacketRole.COLUMN_DEFINITION:
                columns.append(ColumnDefinition41.decode(payload, self.capabilities).name)
            elif role is PacketRole.ROW:
                row = TextRow.decode(payload, len(columns)).values
                rows.append(tuple(None if v is None else text(v) for v in row))
            elif role is PacketRole.OK and not result_sets:
                affected = OkPacket.decode(payload, self.capabilities).affected_rows
        return QueryResult(tuple(columns), tuple(rows), tracker.status_flags, affected, tracker.error)

    async def query_value(self, sql: str) -> str | None:
        """First column of the first row of ``sql``; None on an error or no rows."""
        return (await self.query(sql)).value()

    def _setup_statements(self) -> list[tuple[str, str]]:
        """(what, SQL) for InitQuery, then the pool key's tracked variables (the client's settings
        come later in its own story, so they win).  Raises MySQLConnectFailed for a variant that
        cannot be written as SQL."""
        try:
            variables = session_setup_sql(self.key.variant)
        except ValueError as e:
            raise MySQLConnectFailed(f"cannot prepare a session for {self.key}: {e}", CR_SERVER_LOST) from None
        return [(what, sql) for what, sql in (("InitQuery", self._init_query), ("tracked variables", variables))
                if sql]

    def _check_setup(self, statements: list[tuple[str, str]], replies: list[Reply]) -> None:
        for (what, _), reply in zip(statements, replies, strict=True):
            error = reply.tracker.error
            if error is not None:
                raise MySQLConnectFailed(f"{what} failed on instance {self.address.id}: {error.message}",
                                         error.error_code, error.sqlstate or "HY000", error.message)
        if self.status_flags & ServerStatus.IN_TRANS:
            raise MySQLConnectFailed(f"still in a transaction after the session set-up on {self.address.id}",
                                     CR_SERVER_LOST)

    async def run_session_setup(self) -> None:
        """InitQuery, then the pool key's tracked variables, in one round trip.  Raises
        MySQLConnectFailed when either fails."""
        statements = self._setup_statements()
        if statements:
            replies = await self._exchange(*(ComQuery.from_sql(sql) for _, sql in statements))
            self._check_setup(statements, replies)

    async def reset(self) -> bool:
        """COM_RESET_CONNECTION, the key's schema again, then InitQuery and tracked variables, all
        in one round trip; False (close it) if anything fails.  When the reset itself fails the
        commands after it ran on an unreset session, which is closed anyway."""
        if not self.is_usable():
            return False
        try:
            statements = self._setup_statements()
            commands: list[OwnCommand] = [ComResetConnection()]
            if self.key.database:
                commands.append(ComInitDb(self.key.database))
            commands += [ComQuery.from_sql(sql) for _, sql in statements]
            replies = await self._exchange(*commands)
            own = len(commands) - len(statements)
            for command, reply in zip(commands[:own], replies[:own], strict=True):
                if reply.tracker.error is not None:
                    log.info("%r: %s failed: %s", self, type(command).__name__, reply.tracker.error.message)
                    return False
            self._check_setup(statements, replies[own:])
            return True
        except (OSError, ProtocolViolation, BackendConnectFailed, TimeoutError):
            self._usable = False
            return False

    async def close(self) -> None:
        """COM_QUIT, then close the socket; never raises."""
        self._usable = False
        with contextlib.suppress(Exception):
            if not self.writer.is_closing():
                self._send(ComQuit().encode(), 0)
            self.writer.close()
            async with asyncio.timeout(2):
                await self.writer.wait_closed()

    async def cancel(self, timeout: float = 5.0) -> None:
        """Stop the statement this connection runs, if any.  MySQL has no out-of-band cancel: the
        proxy sends ``KILL QUERY <this thread>`` on a short connection of its own to the same
        instance, as the same user (a user may kill its own threads).  Best effort, as a
        PostgreSQL CancelRequest is: failures are logged, not raised."""
        if self.cancel_login is None or not self.backend_id.isdigit():
            return
        try:
            credentials = await self.cancel_login()
            if credentials is None:
                return
            killer = await connect_and_log_in(PoolKey(self.address.id, self.key.user, ""), self.address, credentials,
                                              connect_timeout=timeout, io_timeout=timeout)
            try:
                result = await killer.query(f"KILL QUERY {int(self.backend_id)}")
            finally:
                await killer.close()
            if result.error is not None and result.error.error_code != ER_NO_SUCH_THREAD:
                log.warning("could not stop the statement of thread %s on %s: ERROR %s: %s", self.backend_id,
                            self.address.id, result.error.error_code, result.error.message)
        except (BackendConnectFailed, OSError, TimeoutError, ProtocolViolation) as e:
            log.warning("could not stop the statement of thread %s on %s: %s", self.backend_id, self.address.id, e)


async def connect_and_log_in(key: PoolKey, address: InstanceAddress, credentials: BackendCredentials, *,
                          init_query: str | None = None, connect_timeout: float = 10.0,
                          io_timeout: float = 30.0, program_name: str = PROGRAM_NAME) -> MySQLBackend:
    """Connect to ``address`` and log in as ``credentials`` into ``key.database``; InitQuery and the
    key's tracked variables are not run yet (:meth:`MySQLBackend.run_session_setup`).  Raises
    MySQLConnectFailed, with the server's code when it refused."""
    try:
        async with asyncio.timeout(connect_timeout):
            reader, writer = await open_tappable_connection(address.host, address.port)
    except (OSError, TimeoutError) as e:
        raise MySQLConnectFailed(f"cannot connect to instance {address.id} at {address.host}:{address.port}: "
                                 f"{e or 'timed out'}", CR_CONN_HOST_ERROR) from None
    backend = MySQLBackend(key, address, reader, writer, init_query=init_query, io_timeout=io_timeout)
    try:
        async with asyncio.timeout(connect_timeout):
            await backend.login(credentials.user, credentials.password or "", key.database,
                                program_name=program_name)
    except BackendConnectFailed:
        await backend.close()
        raise
    except (OSError, ProtocolViolation, TimeoutError) as e:
        await backend.close()
        raise MySQLConnectFailed(f"login to instance {address.id} failed: {e or type(e).__name__}",
                                 CR_SERVER_LOST) from None
    return backend


class MySQLBackendFactory(BackendFactoryBase):
    """Opens backend connections for the pool; see the module docstring.

    The database login for a client user comes from the credential source when there is one (its
    secret read first when due), else from ``credentials(user)`` (None = unknown user).  When the
    server refuses it with 1045, the source reads the user's secret again (bounded per user) and,
    if it now holds another login (a rotation finished since), the connection is tried once more
    with it; connections already open are never touched by a change of secret.
    ``init_query()`` is the InitQuery in force when a connection opens.  On the first connection
    to each instance the factory reads ``@@max_connections`` and hands it to
    ``on_max_connections(instance_id, value)`` (the pool's cap and the router's weight follow).
    """

    max_connections_query = MAX_CONNECTIONS_QUERY

    async def __call__(self, key: PoolKey, address: InstanceAddress) -> MySQLBackend:
        creds = await self._login_for(key.user)
        if creds is None:
            raise MySQLConnectFailed(self.no_credentials_text(key.user), ER_ACCESS_DENIED, "28000")
        try:
            backend = await self._connect(key, address, creds)
        except MySQLConnectFailed as e:
            if e.error_code != ER_ACCESS_DENIED:
                raise
            newer = await self._login_after_refusal(key.user, creds)
            if newer is None:
                raise
            log.info("the database refused the held login for %s on %s; the credentials changed since, "
                     "logging in once more", key.user, address.id)
            backend = await self._connect(key, address, newer)
        backend.cancel_login = functools.partial(self._login_for, key.user)
        return await self._set_up(backend, address)

    async def _connect(self, key: PoolKey, address: InstanceAddress, creds: BackendCredentials) -> MySQLBackend:
        return await connect_and_log_in(key, address, creds, init_query=self._init_query(),
                                        connect_timeout=self._connect_timeout, io_timeout=self._io_timeout)

    async def _set_up(self, backend: MySQLBackend, address: InstanceAddress) -> MySQLBackend:
        """InitQuery and the key's tracked variables, then (once per instance) max_connections."""
        try:
            await backend.run_session_setup()
            await self._learn_max_connections(address.id, backend)
        except BackendConnectFailed:
            await backend.close()
            raise
        except (OSError, ProtocolViolation, TimeoutError) as e:
            await backend.close()
            raise MySQLConnectFailed(f"setting up a session on instance {address.id} failed: "
                                     f"{e or type(e).__name__}", CR_SERVER_LOST) from None
        return backend
