"""Every request a recording client invokes gets an outcome, even when its own error path breaks.

The driver adapters are replaced by stubs (no server): a request fails with a driver error, and
cleaning up after it (``settle``, the rollback) then raises something that is no driver error, as
Connector/Python's protocol code does on a reply it cannot parse.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pymysql
import pytest

from harness.clients.address import Address
from harness.clients.client import AsyncClient, Client
from harness.clients.drivers.connector import ConnectorConnection
from harness.clients.plans import idle_probe_plan
from harness.history import OpType, Recorder

ADDRESS = Address("mysql", "writer", "127.0.0.1", 3306, "u", "p", "d", "SELECT @@report_host")
LOST = pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query")


class BrokenCleanup:
    """A connected driver whose request fails and whose clean-up after the failure raises."""

    errors = pymysql.MySQLError
    connected = True

    def fileno(self) -> int | None:
        return None

    def execute(self, sql: str, params: Any = None) -> None:
        raise LOST

    def settle(self, timed_out: bool) -> None:
        raise IndexError("bytearray index out of range")


class AsyncBrokenCleanup(BrokenCleanup):
    async def execute(self, sql: str, params: Any = None) -> None:
        raise LOST

    async def settle(self, timed_out: bool) -> None:
        raise IndexError("bytearray index out of range")


@pytest.fixture
def recorder():
    with Recorder() as r:
        yield r


def _only_outcome(recorder: Recorder) -> Any:
    assert not recorder.outstanding()
    [(invocation, completion)] = recorder.history().pairs()
    assert invocation.f == "idle_probe" and completion is not None
    return completion


def test_a_request_whose_cleanup_raises_still_gets_an_outcome(recorder):
    client = Client(recorder, "c1", ADDRESS)
    client.connection = BrokenCleanup()
    with pytest.raises(IndexError):
        client.run(idle_probe_plan())
    completion = _only_outcome(recorder)
    assert completion.type is OpType.INFO and completion.error.code == "client-error"
    assert "IndexError" in completion.error.text


def test_an_async_request_whose_cleanup_raises_still_gets_an_outcome(recorder):
    client = AsyncClient(recorder, "c1", ADDRESS)
    client.connection = AsyncBrokenCleanup()
    with pytest.raises(IndexError):
        asyncio.run(client.run(idle_probe_plan()))
    assert _only_outcome(recorder).type is OpType.INFO


class UnreadableRollback:
    """Connector/Python's connection as seen after a reply it cannot parse."""

    _socket = object()
    closed = False

    def rollback(self) -> None:
        raise IndexError("bytearray index out of range")

    def close(self) -> None:
        self.closed = True


def test_connector_settle_closes_a_connection_whose_rollback_cannot_be_read():
    connection = ConnectorConnection(ADDRESS)
    connection.conn = broken = UnreadableRollback()
    connection.settle(timed_out=False)
    assert broken.closed and not connection.connected
