"""A multi-statement transaction runs whole on one backend connection.

Each client runs transactions of several statements, each sent as its own request so that each
records the instance and backend connection that served it (BEGIN with an identity read in the same
request; COMMIT and ROLLBACK return no row, so they cannot say): BEGIN; an insert of the transaction's
own row; a read of that row (it must see its own uncommitted write); another read; then COMMIT, or
ROLLBACK every other time.  Afterwards a read outside the transaction checks it ended as one: the
committed row is there, the rolled-back one is not.  Background clients keep the pool busy, so a
pooler that hands the backend on between statements really does move the transaction.

A pooler that refuses such transactions (PgBouncer's statement mode) fails their statements; those
failures are the evidence, and a worker whose connection was closed for it goes on with a new one.
"""

from __future__ import annotations

import itertools
import threading

import pytest

from suites.workloads import CLIENT_REQUEST_TIMEOUT_S, background_reads, run_clients, run_table


def run_transaction(clients, session, table: str, txn: str, row: int, ending: str) -> None:
    """One transaction as separate recorded requests (op ``txn``), then its outcome (``txn_outcome``)."""
    dialect, who = clients.dialect, clients.who
    count = f"SELECT (SELECT count(*) FROM {dialect.quote(table)} WHERE id = %s), {who}"

    def step(name: str) -> dict[str, str]:
        return {"txn": txn, "step": name}

    statements = [
        lambda: session.request("txn", f"BEGIN; SELECT {who}", idempotent=False, extra=step("begin")),
        lambda: session.request("txn", dialect.insert_identified_sql(table, who), (row,), value=row,
                                idempotent=False, extra=step("write")),
        lambda: session.request("txn", count, (row,), result=lambda r: int(r[0]), extra=step("read_own")),
        lambda: session.request("txn", f"SELECT {who}", extra=step("read")),
        lambda: session.execute("txn", ending.upper(), invoke_extra=step(ending)),
    ]
    for statement in statements:
        if not statement().ok:
            return  # refused or cut off: that is the evidence; nothing after it means anything
    session.request("txn_outcome", count, (row,), result=lambda r: int(r[0]) > 0,
                    extra={"txn": txn, "ended": ending})


@pytest.mark.guarantee("TRANSACTION-ONE-BACKEND")
def test_a_transaction_runs_whole_on_one_backend(clients, profile):
    workers, per_worker = (4, 4) if profile == "quick" else (8, 12)
    rows = itertools.count(1)
    lock = threading.Lock()

    def client(worker: int) -> int:
        session, done = None, 0
        for k in range(per_worker):
            if session is None or not session.connected:
                session = clients("writer", request_timeout=CLIENT_REQUEST_TIMEOUT_S)
                if not session.connected:
                    continue
            with lock:
                row = next(rows)
            run_transaction(clients, session, table, f"w{worker}-{k}", row, "commit" if k % 2 == 0 else "rollback")
            done += 1
        if session is not None:
            session.close()
        return done

    with run_table(clients, "harness_txn") as table, background_reads(clients, "writer", workers=4):
        done = run_clients(workers, client)
    assert sum(done) == workers * per_worker, f"only {sum(done)} of {workers * per_worker} transactions ran"
