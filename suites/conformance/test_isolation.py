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

import pytest

from suites.workloads import CLIENT_REQUEST_TIMEOUT_S, run_clients

TAG = "harness.leak_tag"
TEMP_PREFIX = "harness_leak_t_"
PREPARED_PREFIX = "harness_leak_ps_"
# Every client names its objects after itself, so an observation says *whose* object it saw and a
# leak is unambiguous whatever the order of sets and reads.  Each look lists the names present.
PREFIXES = {"temp_table": TEMP_PREFIX, "prepared_statement": PREPARED_PREFIX, "advisory_lock": ""}


def client_names(process: str) -> dict[str, str]:
    """The names one client gives its state (its advisory lock is named after the client itself)."""
    slug = re.sub(r"[^a-z0-9_]", "_", process.lower())
    return {"setting": f"client-{process}", "temp_table": TEMP_PREFIX + slug,
            "prepared_statement": PREPARED_PREFIX + slug, "advisory_lock": process}


def observe(session) -> None:
    names = client_names(session.process)
    session.read_state("setting", TAG)
    for kind, prefix in PREFIXES.items():
        session.find_state(kind, prefix, names[kind])


def create_state(session) -> None:
    names = client_names(session.process)
    session.set_state("setting", TAG, names["setting"])
    for kind in PREFIXES:
        session.set_state(kind, names[kind])


@pytest.mark.guarantee("ISOLATION-NO-SESSION-LEAK")
def test_session_state_never_leaks(clients, profile):
    workers, rounds = (8, 6) if profile == "quick" else (16, 12)

    def client(worker: int) -> int:
        seen = 0
        for _ in range(rounds):
            session = clients("writer", request_timeout=CLIENT_REQUEST_TIMEOUT_S)
            if not session.connected:
                continue
            observe(session)
            create_state(session)
            observe(session)
            session.close()  # leave the state behind on purpose
            seen += 1
        return seen

    served = run_clients(workers, client)
    assert sum(served) >= workers * rounds // 2, f"too few clients could connect: {served}"
