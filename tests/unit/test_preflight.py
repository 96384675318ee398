"""Preflight on loopback sockets: a closed port, a DSN typo and the wrong engine are each one line
naming the endpoint and the problem, and none of them shows the password.

Refused logins and misrouted endpoints need a real server: tests/integration/test_external_preflight.py.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.clients.preflight import PreflightFailed, check_endpoints, sniff_protocol
from harness.targets.base import TargetError
from harness.targets.external import ExternalTarget, dsn_secrets, redact_dsn, scrub

PASSWORD = "Sekr3t-preflight-pw"


@contextlib.contextmanager
def loopback_server(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """A TCP server on 127.0.0.1 running ``handle`` for every connection, on threads; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=lambda c=conn: _run(handle, c), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def _run(handle: Callable[[socket.socket], None], conn: socket.socket) -> None:
    with conn, contextlib.suppress(OSError):
        handle(conn)


def mysql_greeting(conn: socket.socket) -> None:
    """Greets like a MySQL-protocol server (protocol 10), then waits for the client to give up."""
    payload = b"\x0a" + b"5.5.5-10.11-fake\x00" + struct.pack("<I", 7) + b"12345678\x00" + b"\x00" * 20
    conn.sendall(struct.pack("<I", len(payload))[:3] + b"\x00" + payload)
    conn.settimeout(3)
    conn.recv(1024)


def postgres_like(conn: socket.socket) -> None:
    """Says nothing until asked, and refuses SSL with ``N`` as a PostgreSQL server does."""
    conn.settimeout(3)
    if conn.recv(8) == struct.pack("!ii", 8, 80877103):
        conn.sendall(b"N")
    conn.recv(1024)


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


def pg_dsn(port: int) -> str:
    return f"host=127.0.0.1 port={port} user=app password={PASSWORD} dbname=app"


def test_a_closed_port_is_unreachable_in_one_line():
    target = ExternalTarget("postgres", pg_dsn(closed_port()))
    with pytest.raises(PreflightFailed) as e:
        check_endpoints(target, timeout=2)
    assert str(e.value).startswith("writer endpoint 127.0.0.1:") and "unreachable" in str(e.value)
    assert "\n" not in str(e.value) and PASSWORD not in str(e.value)


def test_the_protocol_is_told_by_how_the_server_opens():
    with loopback_server(mysql_greeting) as my_port, loopback_server(postgres_like) as pg_port:
        assert sniff_protocol("127.0.0.1", my_port, 2) == "mysql"
        assert sniff_protocol("127.0.0.1", pg_port, 2) == "postgres"
    assert sniff_protocol("127.0.0.1", closed_port(), 2) is None


def test_a_mysql_port_given_to_engine_postgres_is_named_as_such():
    with loopback_server(mysql_greeting) as port, pytest.raises(PreflightFailed) as e:
        check_endpoints(ExternalTarget("postgres", pg_dsn(port)), timeout=2)
    assert "speaks the MySQL protocol, not PostgreSQL (--engine postgres)" in str(e.value)
    assert PASSWORD not in str(e.value)


def test_a_postgres_port_given_to_engine_mysql_is_named_as_such():
    with loopback_server(postgres_like) as port, pytest.raises(PreflightFailed) as e:
        check_endpoints(ExternalTarget("mysql", f"mysql://app:{PASSWORD}@127.0.0.1:{port}/app"), timeout=1)
    assert "speaks the PostgreSQL protocol, not MySQL (--engine mysql)" in str(e.value)
    assert PASSWORD not in str(e.value)


@pytest.mark.parametrize(("engine", "dsn", "expected"), [
    ("postgres", f"host=127.0.0.1 port=5432 user=app pasword={PASSWORD}", "cannot parse --writer-dsn"),
    ("postgres", f"host=127.0.0.1 port=abc user=app password={PASSWORD}", "cannot parse --writer-dsn"),
    ("postgres", f"host=127.0.0.1 password='{PASSWORD} user=app", "cannot parse --writer-dsn"),
    ("postgres", f"mysql://app:{PASSWORD}@127.0.0.1:3306/app", "is a MySQL URL, but --engine is postgres"),
    ("mysql", f"host=127.0.0.1 user=app password={PASSWORD}", "looks like a PostgreSQL DSN"),
    ("mysql", f"mysql://app:{PASSWORD}@127.0.0.1:notaport/app", "cannot parse --writer-dsn"),
])
def test_a_dsn_typo_is_one_line_without_the_password(engine, dsn, expected):
    with pytest.raises(TargetError) as e:
        ExternalTarget(engine, dsn)
    assert expected in str(e.value) and "\n" not in str(e.value)
    assert PASSWORD not in str(e.value)


def test_each_dsn_keeps_its_own_user_password_and_database():
    target = ExternalTarget("postgres", "host=127.0.0.1 port=6432 user=rw password=pw-writer dbname=app",
                            ["host=127.0.0.1 port=6433 user=ro password=pw-reader dbname=replica"])
    writer, reader = target.writer_endpoint, target.reader_endpoints[0]
    assert (target.credentials_for(writer).user, target.credentials_for(writer).password) == ("rw", "pw-writer")
    reader_creds = target.credentials_for(reader)
    assert (reader_creds.user, reader_creds.password, reader_creds.database) == ("ro", "pw-reader", "replica")
    assert target.conninfo(reader)["dbname"] == "replica"
    assert set(target.secret_texts()) >= {"pw-writer", "pw-reader"}
    assert "pw-reader" not in repr(reader) and "pw-writer" not in repr(target.credentials)


def test_redaction_and_scrubbing():
    assert redact_dsn(f"postgresql://u:{PASSWORD}@h/db") == "postgresql://u:***@h/db"
    assert PASSWORD not in redact_dsn(f"host=h password='{PASSWORD}' user=u")
    assert dsn_secrets("mysql://a:p%40ss@h/d") == ["p%40ss", "p@ss"]
    assert redact_dsn(f"host=h pasword={PASSWORD}") == "host=h pasword=***"  # a misspelt key hides its value too
    assert scrub(f"x {PASSWORD} y", [PASSWORD]) == "x *** y"
    assert scrub("pw in pwned, pw", ["pw"]) == "*** in pwned, ***"  # a short one only as a word


def test_the_cli_refuses_an_unusable_endpoint_in_one_line_with_exit_2(tmp_path):
    result = CliRunner().invoke(cli, ["certify", "--target", "external", "--writer-dsn", pg_dsn(closed_port()),
                                      "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: preflight: writer endpoint 127.0.0.1:")
    assert PASSWORD not in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists(), "nothing runs after a failed preflight"


def test_the_cli_refuses_a_dsn_typo_in_one_line_with_exit_2():
    result = CliRunner().invoke(cli, ["certify", "--target", "external", "--writer-dsn",
                                      f"host=127.0.0.1 port=5432 user=app pasword={PASSWORD}"])
    assert result.exit_code == 2 and PASSWORD not in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1
