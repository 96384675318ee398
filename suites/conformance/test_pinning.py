"""Pinning: each documented trigger pins a session to its backend; documented non-triggers do not.

Background clients keep the pool busy so that an unpinned session's next transaction really can
land on another backend connection; the checkers compare ``backend`` ids before and after.  The
requests are the engine's documented triggers and non-triggers (``Dialect.pin_cases``).
"""

from __future__ import annotations

import pytest

from suites.workloads import CLIENT_REQUEST_TIMEOUT_S, background_reads, run_clients, serving_read


@pytest.mark.guarantee("PIN-TRIGGERS", "PIN-NON-TRIGGERS")
def test_triggers_pin_and_non_triggers_do_not(clients, profile):
    requests_after = 12 if profile == "quick" else 20
    triggers, non_triggers = clients.dialect.pin_cases(clients.who)
    cases = [("pin_trigger", name, sql) for name, sql in triggers.items()] + \
            [("non_pin_trigger", name, sql) for name, sql in non_triggers.items()]

    def client(i: int) -> None:
        f, name, sql = cases[i]
        session = clients("writer", request_timeout=CLIENT_REQUEST_TIMEOUT_S)
        serving_read(clients, session)
        session.request(f, sql, value=name, idempotent=False)
        for _ in range(requests_after):
            serving_read(clients, session)
        session.close()

    with background_reads(clients, "writer", workers=8):
        run_clients(len(cases), client)
