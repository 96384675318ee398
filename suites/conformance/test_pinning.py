"""Pinning: each documented trigger pins a session to its backend; documented non-triggers do not.

Background clients keep the pool busy so that an unpinned session's next transaction really can
land on another backend connection; the checkers compare ``backend`` ids before and after.
"""

from __future__ import annotations

import pytest

from harness.plugin.recording import WHO
from suites.workloads import CLIENT_REQUEST_TIMEOUT_S, Background, run_clients

TRIGGERS = {
    "SET": f"SET statement_timeout = 60000; SELECT {WHO}",
    "set_config": f"SELECT set_config('harness.pin', 'x', false), {WHO}",
    "PREPARE": f"PREPARE harness_pin_ps AS SELECT 1; SELECT {WHO}",
    "CREATE TEMP TABLE": f"CREATE TEMP TABLE harness_pin_t (x int); SELECT {WHO}",
    "pg_advisory_lock": f"SELECT pg_advisory_lock(424242 + pg_backend_pid()), {WHO}",
    "LISTEN": f"LISTEN harness_pin_channel; SELECT {WHO}",
}
NON_TRIGGERS = {
    "SELECT": f"SELECT 1, {WHO}",
    "pg_advisory_xact_lock": f"SELECT pg_advisory_xact_lock(515151), {WHO}",
    "SET LOCAL": f"BEGIN; SET LOCAL statement_timeout = 60000; SELECT {WHO}; COMMIT",
}


@pytest.mark.guarantee("PIN-TRIGGERS", "PIN-NON-TRIGGERS")
def test_triggers_pin_and_non_triggers_do_not(pg_clients, profile):
    requests_after = 12 if profile == "quick" else 20
    cases = [("pin_trigger", name, sql) for name, sql in TRIGGERS.items()] + \
            [("non_pin_trigger", name, sql) for name, sql in NON_TRIGGERS.items()]

    def client(i: int) -> None:
        f, name, sql = cases[i]
        session = pg_clients("writer", request_timeout=CLIENT_REQUEST_TIMEOUT_S)
        session.read()
        session.request(f, sql, value=name, idempotent=False)
        for _ in range(requests_after):
            session.read()
        session.close()

    with Background(lambda: pg_clients("writer", request_timeout=CLIENT_REQUEST_TIMEOUT_S), clients=8):
        run_clients(len(cases), client)
