"""Session isolation: state one client creates is never visible to another.

Many short-lived clients share few backend connections.  Each client first looks for state left
behind by others (a custom setting, a temporary table, a prepared statement, an advisory lock held
by its backend), then creates all four with values unique to itself, looks again, and disconnects
*without* cleaning up.  A pooler that hands the backend to the next client without resetting it
(PgBouncer in transaction mode) shows that client the previous one's state: a leak.  RDS Proxy
avoids it by pinning such sessions and never returning their backends unreset.
"""

from __future__ import annotations

import zlib

import pytest

from harness.plugin.recording import WHO
from suites.workloads import run_clients

TAG = "harness.leak_tag"
TEMP_TABLE = "harness_leak_probe"
PREPARED = "harness_leak_ps"

# (kind, name, SQL returning the observation then WHO)
OBSERVATIONS = [
    ("setting", TAG, f"SELECT current_setting('{TAG}', true), {WHO}"),
    ("temp_table", TEMP_TABLE, f"SELECT to_regclass('pg_temp.{TEMP_TABLE}') IS NOT NULL, {WHO}"),
    ("prepared_statement", PREPARED,
     f"SELECT EXISTS (SELECT 1 FROM pg_prepared_statements WHERE name = '{PREPARED}'), {WHO}"),
    ("advisory_lock", "any",
     f"SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()), {WHO}"),
]


def observe(session) -> None:
    for kind, name, sql in OBSERVATIONS:
        session.request("read_state", sql, value={"kind": kind, "name": name},
                        result=lambda row, kind=kind, name=name: {"kind": kind, "name": name, "value": row[0]})


def create_state(session) -> None:
    tag = f"client-{session.process}"
    lock_key = zlib.crc32(session.process.encode())
    steps = [
        ({"kind": "setting", "name": TAG, "value": tag}, f"SET {TAG} = '{tag}'; SELECT {WHO}"),
        ({"kind": "temp_table", "name": TEMP_TABLE, "value": True},
         f"CREATE TEMP TABLE IF NOT EXISTS {TEMP_TABLE} (x int); SELECT {WHO}"),
        ({"kind": "prepared_statement", "name": PREPARED, "value": True},
         f"PREPARE {PREPARED} AS SELECT 1; SELECT {WHO}"),
        ({"kind": "advisory_lock", "name": "any", "value": True},
         f"SELECT pg_try_advisory_lock({lock_key}), {WHO}"),
    ]
    for value, sql in steps:
        session.request("set_state", sql, value=value, idempotent=False)


@pytest.mark.guarantee("ISOLATION-NO-SESSION-LEAK")
def test_session_state_never_leaks(pg_clients, profile):
    workers, rounds = (8, 6) if profile == "quick" else (16, 12)

    def client(worker: int) -> int:
        seen = 0
        for _ in range(rounds):
            session = pg_clients("writer")
            if session.conn is None:
                continue
            observe(session)
            create_state(session)
            observe(session)
            session.close()  # leave the state behind on purpose
            seen += 1
        return seen

    served = run_clients(workers, client)
    assert sum(served) >= workers * rounds // 2, f"too few clients could connect: {served}"
