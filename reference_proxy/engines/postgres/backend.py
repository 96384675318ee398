"""Backend connections to PostgreSQL: open, authenticate, run InitQuery, reset, cancel, close.

:class:`PostgresBackendFactory` is the pool's :data:`BackendFactory` for PostgreSQL.  It logs in
as the pool key's user to the key's database, sending the key's runtime parameters (the client's
``application_name``, ``TimeZone``...) in its own StartupMessage so that they hold for the whole
life of the connection; it answers SCRAM-SHA-256, MD5, cleartext or trust; it records the
server's ParameterStatus values and BackendKeyData (the real key, used to forward a client's
CancelRequest); then runs InitQuery.  ``reset()`` runs DISCARD ALL and InitQuery again.

The login comes from the proxy's credential source at each connection, so a rotated secret applies
to new connections only; connections already open are never touched.  When the database refuses the
password (28P01), the factory asks the source once for a newer one (it reads the secret again, bounded
per user) and, if it changed, logs in once more with it: a rotation's first failed login costs one
retry, not a failed client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from scramp import ScramClient, ScramException

from reference_proxy.contracts import BackendConnectFailed, BackendCredentials, InstanceAddress, PoolKey
from reference_proxy.engines import BackendFactoryBase, StreamBackendBase
from reference_proxy.engines.postgres.auth import md5_answer
from reference_proxy.protocol.postgres import (
    NEED_DATA,
    PROTOCOL_3_0,
    AuthenticationCleartextPassword,
    AuthenticationMD5Password,
    AuthenticationOk,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
    BackendKeyData,
    CancelRequest,
    DataRow,
    Decoder,
    Direction,
    ErrorResponse,
    ParameterStatus,
    PasswordMessage,
    ProtocolViolation,
    Query,
    ReadyForQuery,
    SASLInitialResponse,
    SASLResponse,
    StartupMessage,
    Terminate,
)

__all__ = ["MAX_CONNECTIONS_QUERY", "DatabaseRefusedLogin", "PasswordRefused", "PostgresBackend", "PostgresBackendFactory", "send_cancel"]

log = logging.getLogger(__name__)

READ_SIZE = 65536
MAX_CONNECTIONS_QUERY = "SHOW max_connections"
INVALID_PASSWORD = "28P01"


class DatabaseRefusedLogin(BackendConnectFailed):
    """The database answered the proxy's login with an ErrorResponse: ``sqlstate`` and
    ``server_message`` are its own, so that a session can pass on those about the client's request
    (a database that does not exist...) as PostgreSQL words them."""

    def __init__(self, error: ErrorResponse) -> None:
        super().__init__(f"Request returned an error: {error.message}")
        self.sqlstate = error.sqlstate
        self.server_message = error.message


class PasswordRefused(DatabaseRefusedLogin):
    """The database refused the proxy's login for its password (SQLSTATE 28P01)."""


class PostgresBackend(StreamBackendBase):
    """One open, authenticated backend connection (satisfies :class:`BackendConnection`).

    While lent, the client session reads and writes ``reader``/``writer`` directly (bulk relay);
    ``reset``/``close`` are only called by the pool when nobody is relaying.
    """

    def __init__(self, key: PoolKey, address: InstanceAddress, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, *, init_query: str | None, io_timeout: float) -> None:
        self.key = key
        self.address = address
        self.reader = reader
        self.writer = writer
        self.transport = writer.transport  # the relay writes here directly (no TLS to backends: it never changes)
        self.parameters: dict[str, str] = {}
        self.key_data: BackendKeyData | None = None
        self.backend_id = "?"
        self._init_query = init_query
        self._io_timeout = io_timeout
        self._usable = True
        self.abort_reason: str | None = None

    def __repr__(self) -> str:
        return f"<PostgresBackend {self.address.id} pid={self.backend_id} {self.key.user}@{self.key.database}>"

    async def _read_message(self, decoder: Decoder):
        while True:
            msg = decoder.next_event()
            if msg is not NEED_DATA:
                return msg
            data = await self.reader.read(READ_SIZE)
            if not data:
                raise ConnectionError("the database closed the connection")
            decoder.receive_data(data)

    async def simple_query(self, sql: str) -> ErrorResponse | None:
        """Run ``sql`` with the simple protocol, discarding results; the first error, if any.

        Also checks that the backend is idle afterwards (a reset must not leave a transaction open).
        """
        decoder = Decoder(Direction.BACKEND)
        self.writer.write(Query(sql).encode())
        error: ErrorResponse | None = None
        async with asyncio.timeout(self._io_timeout):
            await self.writer.drain()
            while True:
                msg = await self._read_message(decoder)
                if isinstance(msg, ErrorResponse) and error is None:
                    error = msg
                elif isinstance(msg, ParameterStatus):
                    self.parameters[msg.name] = msg.value
                elif isinstance(msg, ReadyForQuery):
                    if msg.status != "I" and error is None:
                        error = ErrorResponse.build("ERROR", "25000", f"still in a transaction after {sql!r}")
                    return error

    async def query_value(self, sql: str) -> str | None:
        """First column of the first row of ``sql`` as text (for SHOW); None on error or no rows."""
        decoder = Decoder(Direction.BACKEND)
        self.writer.write(Query(sql).encode())
        value: str | None = None
        failed = False
        async with asyncio.timeout(self._io_timeout):
            await self.writer.drain()
            while True:
                msg = await self._read_message(decoder)
                if isinstance(msg, DataRow) and value is None and msg.values and msg.values[0] is not None:
                    value = msg.values[0].decode("utf-8", errors="replace")
                elif isinstance(msg, ErrorResponse):
                    failed = True
                elif isinstance(msg, ReadyForQuery):
                    return None if failed else value

    async def run_init_query(self) -> None:
        if self._init_query:
            error = await self.simple_query(self._init_query)
            if error is not None:
                raise BackendConnectFailed(f"Request returned an error: {error.message}")

    async def reset(self) -> bool:
        """DISCARD ALL, then InitQuery again; False (close it) if anything fails."""
        if not self.is_usable():
            return False
        try:
            if await self.simple_query("DISCARD ALL") is not None:
                return False
            await self.run_init_query()
            return True
        except (OSError, ProtocolViolation, BackendConnectFailed, TimeoutError):
            self._usable = False
            return False

    async def close(self) -> None:
        self._usable = False
        with contextlib.suppress(Exception):
            if not self.writer.is_closing():
                self.writer.write(Terminate().encode())
            self.writer.close()
            async with asyncio.timeout(2):
                await self.writer.wait_closed()

    async def cancel(self) -> None:
        """Ask the server to cancel what this connection runs (a CancelRequest with its real key)."""
        if self.key_data is not None:
            await send_cancel(self.address, self.key_data.process_id, self.key_data.secret_int)


async def send_cancel(address: InstanceAddress, process_id: int, secret: int, timeout: float = 5.0) -> None:
    """Open a connection to ``address`` just to deliver a CancelRequest; errors are logged, not raised."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(address.host, address.port)
            writer.write(CancelRequest(process_id, secret).encode())
            await writer.drain()
            await reader.read(1)  # the server closes without answering
            writer.close()
    except (OSError, TimeoutError) as e:
        log.warning("could not deliver a cancel request to %s: %s", address.id, e)


class PostgresBackendFactory(BackendFactoryBase):
    """Opens backend connections for the pool; see the module docstring.

    ``credentials(user)`` maps a client user to the database login (None = unknown user);
    ``init_query()`` is the InitQuery in force when a connection opens.  On the first connection
    to each instance the factory reads the server's ``max_connections`` and, when it is a number,
    hands it to ``on_max_connections(instance_id, value)`` (the pool's cap and the router's
    weight follow from it).
    """

    max_connections_query = MAX_CONNECTIONS_QUERY

    async def __call__(self, key: PoolKey, address: InstanceAddress) -> PostgresBackend:
        creds = await self._login_for(key.user)
        if creds is None:
            raise BackendConnectFailed(self.no_credentials_text(key.user))
        try:
            return await self._open(key, address, creds)
        except PasswordRefused:
            newer = await self._login_after_refusal(key.user, creds)
            if newer is None:
                raise
        log.info("the database refused the held login for %s on %s; the credentials changed since, "
                 "logging in once more", key.user, address.id)
        return await self._open(key, address, newer)

    async def _open(self, key: PoolKey, address: InstanceAddress, creds: BackendCredentials) -> PostgresBackend:
        """Connect to ``address`` and log in as ``creds``; InitQuery and max_connections follow."""
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(address.host, address.port)
        except (OSError, TimeoutError) as e:
            raise BackendConnectFailed(f"cannot connect to instance {address.id} at "
                                       f"{address.host}:{address.port}: {e or 'timed out'}") from None
        backend = PostgresBackend(key, address, reader, writer, init_query=self._init_query(),
                                  io_timeout=self._io_timeout)
        try:
            async with asyncio.timeout(self._connect_timeout):
                await self._login(backend, creds)
            await backend.run_init_query()
            await self._learn_max_connections(address.id, backend)
        except BackendConnectFailed:
            await backend.close()
            raise
        except (OSError, ProtocolViolation, TimeoutError, ScramException) as e:
            await backend.close()
            raise BackendConnectFailed(f"login to instance {address.id} failed: "
                                       f"{e or type(e).__name__}") from None
        return backend

    async def _login(self, backend: PostgresBackend, creds: BackendCredentials) -> None:
        params = (("user", creds.user), ("database", backend.key.database)) + tuple(backend.key.variant)
        backend.writer.write(StartupMessage(PROTOCOL_3_0, params).encode())
        decoder = Decoder(Direction.BACKEND)
        scram: ScramClient | None = None
        password = creds.password or ""
        while True:
            await backend.writer.drain()
            msg = await backend._read_message(decoder)
            if isinstance(msg, ErrorResponse):
                refused = PasswordRefused if msg.sqlstate == INVALID_PASSWORD else DatabaseRefusedLogin
                raise refused(msg)
            if isinstance(msg, AuthenticationOk):
                continue
            if isinstance(msg, AuthenticationCleartextPassword):
                backend.writer.write(PasswordMessage.from_password(password).encode())
            elif isinstance(msg, AuthenticationMD5Password):
                backend.writer.write(PasswordMessage.from_password(
                    md5_answer(creds.user, password, msg.salt)).encode())
            elif isinstance(msg, AuthenticationSASL):
                if "SCRAM-SHA-256" not in msg.mechanisms:
                    raise BackendConnectFailed(f"the database offers only {msg.mechanisms} authentication")
                scram = ScramClient(["SCRAM-SHA-256"], creds.user, password)
                backend.writer.write(SASLInitialResponse("SCRAM-SHA-256",
                                                         scram.get_client_first().encode()).encode())
            elif isinstance(msg, AuthenticationSASLContinue) and scram is not None:
                scram.set_server_first(msg.data.decode())
                backend.writer.write(SASLResponse(scram.get_client_final().encode()).encode())
            elif isinstance(msg, AuthenticationSASLFinal) and scram is not None:
                scram.set_server_final(msg.data.decode())
            elif isinstance(msg, ParameterStatus):
                backend.parameters[msg.name] = msg.value
            elif isinstance(msg, BackendKeyData):
                backend.key_data = msg
                backend.backend_id = str(msg.process_id)
            elif isinstance(msg, ReadyForQuery):
                return
            elif type(msg).__name__ == "NoticeResponse":
                continue
            else:
                raise BackendConnectFailed(f"unexpected {type(msg).__name__} from the database during login")
