"""The MySQL engine's backend login and probe logic, without a database: pure helpers, and the
login exchange against a scripted server on a loopback socket (MariaDB has no caching_sha2_password,
so its fast and full paths are checked here)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import reference_proxy.engines.mysql.backend as backend_module
from reference_proxy.contracts import (
    BackendConnectFailed,
    BackendCredentials,
    ClientCredential,
    InstanceAddress,
    PoolKey,
)
from reference_proxy.credentials.source import UserCredentials
from reference_proxy.engines.mysql.backend import (
    BACKEND_CAPABILITIES,
    PROGRAM_NAME,
    MySQLBackendFactory,
    MySQLConnectFailed,
    QueryResult,
    auth_answer,
    connect_and_log_in,
    negotiate_capabilities,
    rsa_encrypted_password,
    session_setup_sql,
)
from reference_proxy.engines.mysql.probe import poll_query, probe_result
from reference_proxy.protocol.mysql import (
    CACHING_SHA2_PASSWORD,
    FAST_AUTH_SUCCESS,
    NATIVE_PASSWORD,
    PERFORM_FULL_AUTHENTICATION,
    REQUEST_PUBLIC_KEY,
    AuthMoreData,
    AuthSwitchRequest,
    Capability,
    ErrPacket,
    HandshakeResponse41,
    HandshakeV10,
    OkPacket,
    PacketReader,
    caching_sha2_password_hash,
    caching_sha2_verify,
    encode_packet,
    native_password_hash,
    native_password_verify,
)

MARIADB_CAPABILITIES = 0x81FFF7FE  # what MariaDB 10.11 offers without TLS
NONCE = bytes(range(1, 21))
PASSWORD = "s3cret pässword"


# -- pure helpers ----------------------------------------------------------------------------------
def test_capabilities_keep_bit_0_and_never_offer_compression_or_local_files():
    caps = negotiate_capabilities(MARIADB_CAPABILITIES, with_database=True)
    assert caps & Capability.LONG_PASSWORD
    assert not caps & (Capability.COMPRESS | Capability.LOCAL_FILES | Capability.SSL
                       | Capability.DEPRECATE_EOF | Capability.CAN_HANDLE_EXPIRED_PASSWORDS
                       | Capability.SESSION_TRACK)
    assert caps & Capability.MULTI_STATEMENTS and caps & Capability.CONNECT_WITH_DB
    assert caps == (BACKEND_CAPABILITIES & MARIADB_CAPABILITIES) | Capability.LONG_PASSWORD
    assert not negotiate_capabilities(MARIADB_CAPABILITIES, with_database=False) & Capability.CONNECT_WITH_DB
    offered_everything = negotiate_capabilities(0xFFFFFFFF, with_database=True)
    assert offered_everything == BACKEND_CAPABILITIES


def test_capabilities_refuse_a_server_without_protocol_41():
    with pytest.raises(ValueError, match="PROTOCOL_41"):
        negotiate_capabilities(MARIADB_CAPABILITIES & ~Capability.PROTOCOL_41, with_database=True)


def test_auth_answers_follow_the_plugin():
    assert native_password_verify(auth_answer(NATIVE_PASSWORD, PASSWORD, NONCE + b"\0"), NONCE,
                                  native_password_hash(PASSWORD))
    assert caching_sha2_verify(auth_answer(CACHING_SHA2_PASSWORD, PASSWORD, NONCE), NONCE,
                               caching_sha2_password_hash(PASSWORD))
    assert auth_answer(NATIVE_PASSWORD, "", NONCE) == b""
    with pytest.raises(ValueError, match="mysql_clear_password"):
        auth_answer("mysql_clear_password", PASSWORD, NONCE)


def test_rsa_password_is_the_masked_password_under_oaep():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    sealed = rsa_encrypted_password(PASSWORD, NONCE, pem)
    masked = key.decrypt(sealed, padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()),
                                              algorithm=hashes.SHA1(), label=None))
    plain = bytes(b ^ NONCE[i % 20] for i, b in enumerate(masked))
    assert plain == PASSWORD.encode() + b"\0"
    with pytest.raises(ValueError):
        rsa_encrypted_password(PASSWORD, NONCE, b"not a key")


def test_session_setup_quotes_text_and_keeps_integers_bare():
    assert session_setup_sql(()) is None
    assert session_setup_sql((("time_zone", "+02:00"), ("wait_timeout", "100"), ("sql_mode", "it's"))) == (
        "SET SESSION time_zone = '+02:00', wait_timeout = 100, sql_mode = 'it''s'")
    with pytest.raises(ValueError, match="variable name"):
        session_setup_sql((("time_zone = 0; DROP TABLE t; --", "x"),))
    with pytest.raises(ValueError, match="backslash"):
        session_setup_sql((("sql_mode", "a\\"),))


def test_query_result_helpers():
    result = QueryResult(("Variable_name", "Value"), (("read_only", "ON"), ("x", None)))
    assert result.value() == "read_only"
    assert result.records() == [{"Variable_name": "read_only", "Value": "ON"},
                                {"Variable_name": "x", "Value": None}]
    assert QueryResult(error=ErrPacket(1146, "no table")).value() is None
    assert QueryResult().value() is None


def test_poll_query_asks_only_for_variables_the_server_has():
    assert poll_query(frozenset()) == "SELECT @@global.read_only, NULL, @@global.report_host"
    assert poll_query(frozenset({"innodb_read_only", "aurora_server_id"})) == (
        "SELECT @@global.read_only, @@global.innodb_read_only, @@global.aurora_server_id")


def test_probe_result_reads_roles_identity_and_lag():
    writer = probe_result(("0", "0", "instance-1"), None)
    assert (writer.reported_id, writer.in_recovery, writer.wal_position, writer.replay_age) == (
        "instance-1", False, None, None)
    aurora_reader = probe_result(("0", "1", "db-instance-2"), [])
    assert aurora_reader.in_recovery and aurora_reader.replay_age is None
    replica = probe_result(("1", None, "instance-2"), [{"Seconds_Behind_Master": "3"}])
    assert replica.in_recovery and replica.replay_age == 3.0
    stopped = probe_result(("ON", None, "instance-2"), [{"Seconds_Behind_Master": None}])
    assert stopped.in_recovery and stopped.replay_age is None
    assert probe_result(("0", None, ""), None).reported_id is None


# -- the login exchange against a scripted server -------------------------------------------------
class ScriptedServer:
    """Greets, reads the HandshakeResponse41, then runs ``script`` (which may read and send more)."""

    def __init__(self, script: Callable[[ScriptedServer, HandshakeResponse41], Awaitable[None]],
                 *, plugin: str = CACHING_SHA2_PASSWORD, greeting_error: ErrPacket | None = None) -> None:
        self.script = script
        self.plugin = plugin
        self.greeting_error = greeting_error
        self.response: HandshakeResponse41 | None = None
        self.seq = 0
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._packets = PacketReader(what="client")

    def send(self, payload: bytes) -> None:
        data, self.seq = encode_packet(payload, self.seq)
        assert self.writer is not None
        self.writer.write(data)

    async def read(self) -> bytes:
        assert self.reader is not None
        self._packets.expected_sequence = self.seq
        while True:
            packet = self._packets.next_packet()
            if not isinstance(packet, tuple):
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("client left")
                self._packets.receive_data(data)
                continue
            self.seq = (packet.sequence_id + 1) & 0xFF
            return packet.payload

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        try:
            if self.greeting_error is not None:
                self.send(self.greeting_error.encode())
                return
            self.send(HandshakeV10("8.0.36", 7, NONCE, MARIADB_CAPABILITIES | Capability.LONG_PASSWORD,
                                   auth_plugin_name=self.plugin).encode())
            self.response = HandshakeResponse41.decode(await self.read())
            await self.script(self, self.response)
            await writer.drain()
            await reader.read(65536)  # until the client quits
        except ConnectionError:
            pass
        finally:
            writer.close()


async def login_against(server: ScriptedServer) -> None:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        backend = await connect_and_log_in(PoolKey("fake", "app", "appdb"), InstanceAddress("fake", "127.0.0.1", port),
                                        BackendCredentials("app", PASSWORD), connect_timeout=5.0, io_timeout=5.0)
        await backend.close()
    finally:
        listener.close()
        await listener.wait_closed()


def test_caching_sha2_fast_path_and_what_the_response_carries():
    async def script(server: ScriptedServer, response: HandshakeResponse41) -> None:
        assert caching_sha2_verify(response.auth_response, NONCE, caching_sha2_password_hash(PASSWORD))
        server.send(AuthMoreData(FAST_AUTH_SUCCESS).encode())
        server.send(OkPacket().encode())

    server = ScriptedServer(script)
    asyncio.run(login_against(server))
    response = server.response
    assert response is not None and response.username == "app" and response.database == "appdb"
    assert response.auth_plugin_name == CACHING_SHA2_PASSWORD
    assert response.attribute("program_name") == PROGRAM_NAME
    assert not response.capabilities & (Capability.COMPRESS | Capability.LOCAL_FILES)


def test_caching_sha2_full_path_goes_through_the_rsa_key():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    received: list[bytes] = []

    async def script(server: ScriptedServer, response: HandshakeResponse41) -> None:
        server.send(AuthMoreData(PERFORM_FULL_AUTHENTICATION).encode())
        assert await server.read() == REQUEST_PUBLIC_KEY
        server.send(AuthMoreData(pem).encode())
        masked = key.decrypt(await server.read(), padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()),
                                                               algorithm=hashes.SHA1(), label=None))
        received.append(bytes(b ^ NONCE[i % 20] for i, b in enumerate(masked)))
        server.send(OkPacket().encode())

    asyncio.run(login_against(ScriptedServer(script)))
    assert received == [PASSWORD.encode() + b"\0"]


def test_full_path_without_a_usable_key_says_tls_or_rsa_is_needed():
    async def script(server: ScriptedServer, response: HandshakeResponse41) -> None:
        server.send(AuthMoreData(PERFORM_FULL_AUTHENTICATION).encode())
        await server.read()
        server.send(AuthMoreData(b"no key here").encode())

    with pytest.raises(MySQLConnectFailed, match="TLS or the server's RSA public key"):
        asyncio.run(login_against(ScriptedServer(script)))


def test_auth_switch_to_native_is_answered_with_the_new_nonce():
    switched_nonce = bytes(range(101, 121))

    async def script(server: ScriptedServer, response: HandshakeResponse41) -> None:
        server.send(AuthSwitchRequest(NATIVE_PASSWORD, switched_nonce + b"\0").encode())
        answer = await server.read()
        assert native_password_verify(answer, switched_nonce, native_password_hash(PASSWORD))
        server.send(OkPacket().encode())

    asyncio.run(login_against(ScriptedServer(script)))


def test_a_switch_to_clear_text_is_refused():
    async def script(server: ScriptedServer, response: HandshakeResponse41) -> None:
        server.send(AuthSwitchRequest("mysql_clear_password", b"").encode())

    with pytest.raises(MySQLConnectFailed, match="mysql_clear_password"):
        asyncio.run(login_against(ScriptedServer(script, plugin=NATIVE_PASSWORD)))


def test_an_error_instead_of_the_greeting_keeps_the_server_code():
    error = ErrPacket(1040, "Too many connections", "08004")
    with pytest.raises(MySQLConnectFailed) as refused:
        asyncio.run(login_against(ScriptedServer(lambda s, r: asyncio.sleep(0), greeting_error=error)))
    assert (refused.value.error_code, refused.value.sqlstate) == (1040, "08004")
    assert refused.value.server_message == "Too many connections"
    assert isinstance(refused.value, BackendConnectFailed)


# -- the factory and the credential source --------------------------------------------------------

class RotatingSource:
    """A credential source whose secret for "app" moves to ``after`` once a failure makes it look."""

    def __init__(self, before: BackendCredentials, after: BackendCredentials) -> None:
        self.held, self.after = before, after
        self.failures: list[BackendCredentials] = []

    def _answer(self, user: str) -> UserCredentials | None:
        return UserCredentials(ClientCredential(user, "", NATIVE_PASSWORD), self.held) if user == "app" else None

    async def lookup(self, user: str) -> UserCredentials | None:
        return self._answer(user)

    async def backend_login_failed(self, user: str, tried: BackendCredentials) -> UserCredentials | None:
        self.failures.append(tried)
        self.held = self.after
        return self._answer(user)


class SetUpBackend:
    async def run_session_setup(self) -> None:
        pass


def factory_against(monkeypatch, source: RotatingSource, accepts: set[str], code: int = 1045):
    """A factory whose logins the "database" accepts for the passwords in ``accepts`` only."""
    tried: list[str] = []

    async def fake_connect(key, address, credentials, **kwargs):
        tried.append(credentials.password)
        if credentials.password not in accepts:
            raise MySQLConnectFailed("refused", code, "28000")
        return SetUpBackend()

    monkeypatch.setattr(backend_module, "connect_and_log_in", fake_connect)
    return MySQLBackendFactory(lambda user: None, credential_source=source), tried


KEY = PoolKey("instance-1", "app", "db")
ADDRESS = InstanceAddress("instance-1", "127.0.0.1", 1)


def test_a_refused_backend_login_is_retried_once_with_the_rotated_secret(monkeypatch):
    source = RotatingSource(BackendCredentials("app", "old"), BackendCredentials("app", "new"))
    factory, tried = factory_against(monkeypatch, source, {"new"})
    assert isinstance(asyncio.run(factory(KEY, ADDRESS)), SetUpBackend)
    assert tried == ["old", "new"] and source.failures == [BackendCredentials("app", "old")]


def test_no_retry_when_the_secret_did_not_change_or_the_error_is_not_a_login_refusal(monkeypatch):
    same = RotatingSource(BackendCredentials("app", "old"), BackendCredentials("app", "old"))
    factory, tried = factory_against(monkeypatch, same, set())
    with pytest.raises(MySQLConnectFailed) as info:
        asyncio.run(factory(KEY, ADDRESS))
    assert info.value.error_code == 1045 and tried == ["old"]
    busy = RotatingSource(BackendCredentials("app", "old"), BackendCredentials("app", "new"))
    factory, tried = factory_against(monkeypatch, busy, {"new"}, code=1040)
    with pytest.raises(MySQLConnectFailed):
        asyncio.run(factory(KEY, ADDRESS))
    assert tried == ["old"] and busy.failures == []


def test_a_user_without_credentials_gets_rds_text_without_a_connection(monkeypatch):
    source = RotatingSource(BackendCredentials("app", "old"), BackendCredentials("app", "new"))
    factory, tried = factory_against(monkeypatch, source, {"old"})
    with pytest.raises(MySQLConnectFailed, match="no credentials for the role ghost") as info:
        asyncio.run(factory(PoolKey("instance-1", "ghost", "db"), ADDRESS))
    assert (info.value.error_code, tried) == (1045, [])
