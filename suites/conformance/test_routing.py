"""Routing: the writer endpoint reaches the writer; the reader endpoint only readers, in balance."""

from __future__ import annotations

import pytest

from suites.workloads import CLIENT_REQUEST_TIMEOUT_S, note_roles, run_clients


@pytest.mark.guarantee("ROUTE-WRITER-ENDPOINT")
def test_writer_endpoint_reaches_the_writer(target, pg_clients, recorder):
    note_roles(target, recorder)

    def client(i: int) -> None:
        session = pg_clients("writer", request_timeout=CLIENT_REQUEST_TIMEOUT_S)
        for _ in range(5):
            session.read()
        session.close()

    run_clients(10, client)


@pytest.mark.guarantee("ROUTE-READER-ONLY", "ROUTE-READER-BALANCE")
def test_reader_endpoint_reaches_readers_in_balance(target, pg_clients, recorder):
    note_roles(target, recorder)

    def client(i: int) -> None:
        session = pg_clients("reader", request_timeout=CLIENT_REQUEST_TIMEOUT_S)
        for _ in range(3):
            session.read()
        # Stay connected while the others connect: balancing is by outstanding connections.
        return session

    sessions = run_clients(40, client, max_workers=20)
    for s in sessions:
        s.close()
