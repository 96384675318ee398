"""Session isolation: state one client creates is never visible to another.

Many short-lived clients share few backend connections.  Each client first looks for state left
behind by others (a custom setting, a temporary table, a prepared statement, an advisory lock held
by its backend), then creates all four with values unique to itself, looks again, and disconnects
*without* cleaning up.  A pooler that hands the backend to the next client without resetting it
(PgBouncer in transaction mode) shows that client the previous one's state: a leak.  RDS Proxy
avoids it by pinning such sessions and never returning their backends unreset.
"""

from __future__ import annotations

import re
import zlib

import pytest

from harness.plugin.recording import WHO
from suites.workloads import CLIENT_REQUEST_TIMEOUT_S, run_clients

TAG = "harness.leak_tag"
TEMP_PREFIX = "harness_leak_t_"
PREPARED_PREFIX = "harness_leak_ps_"

# Every client names its objects after itself, so an observation says *whose* object it saw and a
# leak is unambiguous whatever the order of sets and reads.  Each query returns the names present.
_FOUND_TEMP = (f"SELECT coalesce(array_agg(relname::text), '{{}}') FROM pg_class "
               f"WHERE relnamespace = pg_my_temp_schema() AND relname LIKE '{TEMP_PREFIX}%'")
_FOUND_PREPARED = (f"SELECT coalesce(array_agg(name), '{{}}') FROM pg_prepared_statements "
                   f"WHERE name LIKE '{PREPARED_PREFIX}%'")
_FOUND_LOCKS = ("SELECT coalesce(array_agg(((classid::bigint << 32) | objid::bigint)::text), '{}') "
                "FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")


def client_names(process: str) -> dict[str, str]:
    """The names (and the lock key, as text) one client gives its state."""
    slug = re.sub(r"[^a-z0-9_]", "_", process.lower())
    return {"setting": f"client-{process}", "temp_table": TEMP_PREFIX + slug,
            "prepared_statement": PREPARED_PREFIX + slug, "advisory_lock": str(zlib.crc32(process.encode()))}


def _pick(kind: str, found: list[str], own: str) -> dict[str, object]:
    """One observation: another client's object if any is present, else whether our own is."""
    others = sorted(n for n in found if n != own)
    if others:
        return {"kind": kind, "name": others[0], "value": True}
    return {"kind": kind, "name": own, "value": own in found}


def observe(session) -> None:
    names = client_names(session.process)
    session.request("read_state", f"SELECT current_setting('{TAG}', true), {WHO}",
                    value={"kind": "setting", "name": TAG},
                    result=lambda row: {"kind": "setting", "name": TAG, "value": row[0]})
    for kind, sql in (("temp_table", _FOUND_TEMP), ("prepared_statement", _FOUND_PREPARED),
                      ("advisory_lock", _FOUND_LOCKS)):
        own = names[kind]
        session.request("read_state", f"SELECT found, {WHO} FROM ({sql}) AS q(found)",
                        value={"kind": kind, "name": own},
                        result=lambda row, kind=kind, own=own: _pick(kind, list(row[0]), own))


def create_state(session) -> None:
    names = client_names(session.process)
    tag, table, prepared, lock_key = (names["setting"], names["temp_table"], names["prepared_statement"],
                                      names["advisory_lock"])
    steps = [
        ({"kind": "setting", "name": TAG, "value": tag}, f"SET {TAG} = '{tag}'; SELECT {WHO}"),
        ({"kind": "temp_table", "name": table, "value": True},
         f"CREATE TEMP TABLE IF NOT EXISTS {table} (x int); SELECT {WHO}"),
        ({"kind": "prepared_statement", "name": prepared, "value": True},
         f"PREPARE {prepared} AS SELECT 1; SELECT {WHO}"),
        ({"kind": "advisory_lock", "name": lock_key, "value": True},
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
            session = pg_clients("writer", request_timeout=CLIENT_REQUEST_TIMEOUT_S)
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
