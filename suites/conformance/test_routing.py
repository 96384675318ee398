"""Routing: the writer endpoint reaches the writer; the reader endpoint only readers, in balance."""

from __future__ import annotations

import pytest

from suites.workloads import CLIENT_REQUEST_TIMEOUT_S, note_roles, run_clients, serving_read


@pytest.mark.guarantee("ROUTE-WRITER-ENDPOINT")
def test_writer_endpoint_reaches_the_writer(target, clients, recorder):
    note_roles(target, recorder)

    def client(i: int) -> None:
        session = clients("writer", request_timeout=CLIENT_REQUEST_TIMEOUT_S)
        for _ in range(5):
            serving_read(clients, session)
        session.close()

    run_clients(10, client)


@pytest.mark.guarantee("ROUTE-READER-ONLY", "ROUTE-READER-BALANCE")
def test_reader_endpoint_reaches_readers_in_balance(target, clients, recorder):
    note_roles(target, recorder)

    def client(i: int) -> None:
        session = clients("reader", request_timeout=CLIENT_REQUEST_TIMEOUT_S)
        for _ in range(3):
            serving_read(clients, session)
        # Stay connected while the others connect: balancing is by outstanding connections.
        return session

    sessions = run_clients(40, client, max_workers=20)
    for s in sessions:
        s.close()
