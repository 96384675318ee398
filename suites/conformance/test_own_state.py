"""A session keeps its own state: what a client set, it sees on every later request.

Each client makes the session state the engine has (a setting or MySQL user variable, on MySQL its
own ``time_zone`` too, a temporary table, an SQL prepared statement, a session lock: the same kinds
and names as the isolation suite), then keeps reading it back between plain reads while background
clients keep the pool busy, so that a pooler that lets such a session move (PgBouncer in
transaction mode, pgpool-II balancing its reads over standbys) really does move it, and the read
meets a backend without the state.  RDS Proxy pins such a session, so every read finds what the
client made.  On MySQL every other client changes only ``time_zone``, a variable RDS Proxy tracks
rather than pins on: that session stays multiplexed, and must still meet its own value on every
backend it is lent.
"""

from __future__ import annotations

import pytest

from suites.session_state import make_session_variable, make_state, read_back
from suites.workloads import CLIENT_REQUEST_TIMEOUT_S, background_reads, run_clients, serving_read


@pytest.mark.guarantee("SESSION-OWN-STATE")
def test_a_session_sees_its_own_state(clients, profile):
    workers, rounds = (4, 4) if profile == "quick" else (8, 10)

    def client(worker: int) -> int:
        session = clients("writer", request_timeout=CLIENT_REQUEST_TIMEOUT_S)
        if not session.connected:
            return 0
        serving_read(clients, session)
        # Every other client changes only a variable the proxy tracks (MySQL's time_zone): it stays
        # multiplexed, and must still meet its own value on whichever backend it is lent.
        made = (worker % 2 and make_session_variable(session)) or make_state(session, session_variable=True)
        for _ in range(rounds):
            serving_read(clients, session)
            read_back(session, made)
        session.close()
        return 1

    with background_reads(clients, "writer", workers=4):
        served = run_clients(workers, client)
    assert sum(served) == workers, f"only {sum(served)} of {workers} clients could connect"
