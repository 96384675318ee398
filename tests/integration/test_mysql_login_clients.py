"""The MySQL login logic against real clients: PyMySQL and the ``mariadb`` command-line client (libmariadb)
log in to a tiny asyncio server built on it.

The server reads the login packets straight from the socket, one exact packet at a time, and hands
the socket to asyncio's TLS (``connect_accepted_socket``) only when the login says so.  That way the
client's TLS handshake, which it sends right after its SSLRequest without waiting, is still in the
kernel's buffer when TLS starts, instead of in a stream reader's.  After the login the server answers
COM_PING and COM_QUERY with OK and closes on COM_QUIT: enough for PyMySQL to connect and ping.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Self

import pymysql
import pytest

from reference_proxy.contracts import ClientCredential
from reference_proxy.engines.mysql.auth import Sha2FastPathCache
from reference_proxy.engines.mysql.login import Authenticated, ClientLogin, Refused, SendToClient, StartTls
from reference_proxy.protocol.mysql import (
    CACHING_SHA2_PASSWORD,
    NATIVE_PASSWORD,
    OkPacket,
    ServerStatus,
    encode_packet,
)
from reference_proxy.tls import server_context

pytestmark = [pytest.mark.integration]

USERS = {
    "app": ClientCredential("app", "app-secret", NATIVE_PASSWORD),
    "sha2": ClientCredential("sha2", "sha2-secret", CACHING_SHA2_PASSWORD),
}
COM_QUIT, COM_QUERY, COM_PING = 0x01, 0x03, 0x0E


class LoginServer:
    """Serves logins on a loopback port from a background event loop; records each outcome."""

    def __init__(self, *, require_tls: bool = False) -> None:
        self.tls_context = server_context()
        self.require_tls = require_tls
        self.sha2_cache = Sha2FastPathCache()
        self.outcomes: list[Authenticated | Refused] = []
        self.commands: list[int] = []
        self._loop = asyncio.new_event_loop()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._connections = 0
        self._tasks: set[asyncio.Task] = set()

    def __enter__(self) -> Self:
        self._thread.start()
        self._accepting = asyncio.run_coroutine_threadsafe(self._accept(), self._loop)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._listener.close()
        self._loop.close()

    def wait_for_command(self, command: int, timeout: float = 5.0) -> bool:
        """Whether a session receives ``command`` within ``timeout`` (the client does not wait for it)."""
        deadline = time.monotonic() + timeout
        while command not in self.commands:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    async def _shutdown(self) -> None:
        """Stop accepting and end every session while the loop still runs, so TLS can close."""
        self._accepting.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            sock, (host, _) = await loop.sock_accept(self._listener)
            self._connections += 1
            task = loop.create_task(self._serve(sock, host, self._connections))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, sock: socket.socket, host: str, connection_id: int) -> None:
        loop = asyncio.get_running_loop()
        login = ClientLogin(client_host=host, connection_id=connection_id,
                            sha2_cache=self.sha2_cache, tls_available=True, require_tls=self.require_tls)
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None

        async def send(data: bytes) -> None:
            if writer is None:
                await loop.sock_sendall(sock, data)
            else:
                writer.write(data)
                await writer.drain()

        async def read_exactly(n: int) -> bytes:
            if reader is not None:
                return await reader.readexactly(n)
            data = b""
            while len(data) < n:
                chunk = await loop.sock_recv(sock, n - len(data))
                if not chunk:
                    raise asyncio.IncompleteReadError(data, n)
                data += chunk
            return data

        async def read_packet() -> bytes:
            header = await read_exactly(4)
            return header + await read_exactly(int.from_bytes(header[:3], "little"))

        async def streams(tls: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            stream_reader = asyncio.StreamReader()
            protocol = asyncio.StreamReaderProtocol(stream_reader)
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, sock, ssl=self.tls_context if tls else None)
            return stream_reader, asyncio.StreamWriter(transport, protocol, stream_reader, loop)

        try:
            await send(login.greeting().data)
            outcome = None
            while outcome is None:
                for event in login.answer_lookups(login.receive_data(await read_packet()), USERS.get):
                    if isinstance(event, SendToClient):
                        await send(event.data)
                    elif isinstance(event, StartTls):
                        assert event.early_data == b""
                        reader, writer = await streams(tls=True)
                        login.tls_started()
                    else:
                        outcome = event
            self.outcomes.append(outcome)
            if isinstance(outcome, Refused):
                return
            if reader is None:
                reader, writer = await streams(tls=False)
            assert login.take_buffered() == b""
            while True:
                command = (await read_packet())[4]
                self.commands.append(command)
                if command == COM_QUIT:
                    return
                ok = OkPacket(status_flags=ServerStatus.AUTOCOMMIT).encode(outcome.capabilities)
                await send(encode_packet(ok, 1)[0])
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if writer is not None:
                writer.close()
            else:
                sock.close()


def client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def connect(server: LoginServer, user: str, password: str, *, tls: bool, **kwargs) -> pymysql.Connection:
    options = {"ssl": client_tls()} if tls else {"ssl_disabled": True}
    return pymysql.connect(host="127.0.0.1", port=server.port, user=user, password=password,
                           connect_timeout=10, **options, **kwargs)


@pytest.fixture
def server() -> Iterator[LoginServer]:
    with LoginServer() as s:
        yield s


def test_native_login_over_plaintext_then_ping(server):
    with connect(server, "app", "app-secret", tls=False, database="shop") as conn:
        conn.ping(reconnect=False)
    [done] = server.outcomes
    assert isinstance(done, Authenticated)
    assert (done.user, done.database, done.tls, done.auth_plugin) == ("app", "shop", False, NATIVE_PASSWORD)
    assert ("_client_name", "pymysql") in done.attributes
    assert COM_PING in server.commands
    assert server.wait_for_command(COM_QUIT)


def test_native_login_over_tls(server):
    with connect(server, "app", "app-secret", tls=True) as conn:
        conn.ping(reconnect=False)
    [done] = server.outcomes
    assert isinstance(done, Authenticated) and done.tls


def test_bad_password_is_1045(server):
    with pytest.raises(pymysql.err.OperationalError) as caught:
        connect(server, "app", "wrong", tls=False)
    code, message = caught.value.args
    assert code == 1045
    assert message == "Access denied for user 'app'@'127.0.0.1' (using password: YES)"


def test_caching_sha2_needs_tls_first_then_takes_the_fast_path(server):
    with pytest.raises(pymysql.err.OperationalError) as caught:
        connect(server, "sha2", "sha2-secret", tls=False)
    assert caught.value.args[0] == 1045 and "TLS" in caught.value.args[1]
    with connect(server, "sha2", "sha2-secret", tls=True) as conn:
        conn.ping(reconnect=False)
    with connect(server, "sha2", "sha2-secret", tls=False) as conn:
        conn.ping(reconnect=False)
    assert [type(o) for o in server.outcomes] == [Refused, Authenticated, Authenticated]
    assert [o.tls for o in server.outcomes[1:]] == [True, False]


def test_require_tls_refuses_plaintext_with_3159():
    with LoginServer(require_tls=True) as server:
        with pytest.raises(pymysql.err.OperationalError) as caught:
            connect(server, "app", "app-secret", tls=False)
        assert caught.value.args == (3159, "This RDS Proxy requires TLS connections.")
        with connect(server, "app", "app-secret", tls=True) as conn:
            conn.ping(reconnect=False)


def mariadb_cli(server: LoginServer, user: str, password: str, *options: str) -> subprocess.CompletedProcess:
    command = ["mariadb", "--no-defaults", "-h127.0.0.1", f"-P{server.port}", f"-u{user}", f"-p{password}",
               *options, "-e", "DO 1"]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(shutil.which("mariadb") is None,
                    reason="the mariadb command-line client is not installed")
def test_mariadb_cli_logs_in_with_both_plugins(server):
    """libmariadb uses TLS when offered (its --ssl default) and sends a caching_sha2 password over it."""
    assert mariadb_cli(server, "app", "app-secret").returncode == 0
    assert mariadb_cli(server, "app", "app-secret", "--skip-ssl").returncode == 0
    denied = mariadb_cli(server, "app", "wrong")
    assert denied.returncode == 1
    denied_text = "ERROR 1045 (28000): Access denied for user 'app'@'127.0.0.1' (using password: YES)"
    assert denied_text in denied.stderr
    needs_tls = mariadb_cli(server, "sha2", "sha2-secret", "--skip-ssl")
    assert needs_tls.returncode == 1
    assert "ERROR 1045 (28000)" in needs_tls.stderr and "TLS" in needs_tls.stderr
    assert mariadb_cli(server, "sha2", "sha2-secret").returncode == 0
    assert mariadb_cli(server, "sha2", "sha2-secret", "--skip-ssl").returncode == 0
    assert [(type(o).__name__, getattr(o, "tls", None)) for o in server.outcomes] == [
        ("Authenticated", True), ("Authenticated", False), ("Refused", None), ("Refused", None),
        ("Authenticated", True), ("Authenticated", False)]
