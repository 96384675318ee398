"""Cancel: a client's cancel stops its own statement (CANCEL-OWN-QUERY) and never another's
(CANCEL-NEVER-OTHERS).

Two phases, each a few seconds:

1. *Own*: clients start a long sleep and cancel it the engine's way (PostgreSQL CancelRequest, MySQL
   ``KILL QUERY`` with the connection id the client's handshake gave, on a second connection), again
   every :data:`CANCEL_AGAIN_S` while it runs, in case the first cancel came before the statement
   reached the server.  A cancel that is ignored leaves a 20 s sleep running: the client gives up at
   :data:`OWN_TIMEOUT_S` and the checker sees a statement no cancel stopped.
2. *Others*: clients each run one short request at the same time, so that each holds a backend
   connection of its own, which then goes back to the pool; then twice as many clients start long
   sleeps (taking those backends: the reference proxy's pool lends the most recently returned first,
   and the sleepers outnumber them), and meanwhile the first clients cancel *themselves*, though they
   run nothing: the cancel that arrives after its statement has ended, which every real
   application sends now and then.  A proxy that delivers a cancel by backend rather than by session
   stops a stranger's sleep; a correct one does nothing.

Both guarantees are judged on every target: the cancels are client-side, so nothing is asked of the
target but its endpoints (a target that refuses a cancel is judged by what its client saw).
"""

from __future__ import annotations

import threading

import pytest

from harness.checkers.cancel import SLEEP_KEY
from suites.workloads import CLIENT_REQUEST_TIMEOUT_S, run_clients

OWN_SLEEP_S = 20.0
"""The sleep a client cancels: far longer than CANCEL-OWN-QUERY's bound, so an ignored cancel fails."""
OWN_TIMEOUT_S = 10.0
"""How long a client waits for its cancelled sleep before it gives up (above the bound, below the sleep)."""
CANCEL_AFTER_S = 0.3
CANCEL_AGAIN_S = 1.0
OTHERS_SLEEP_S = 2.0
"""The sleep of the clients nobody cancels: long enough for the stale cancels to land during it."""
STALE_EVERY_S = 0.4
SHORT_S = 0.2


def long_statement(clients, client, seconds: float):
    """A sleep on the server that a cancel stops with the engine's error (op ``sleep``)."""
    return client.request("sleep", clients.dialect.cancellable_sleep_sql(seconds, clients.who),
                          result=lambda row: row[0], extra={SLEEP_KEY: seconds})


def cancel_own_statements(clients, count: int) -> int:
    """Phase 1: each client cancels its own running sleep until it ends; how many could connect."""
    def client(_worker: int) -> int:
        session = clients("writer", request_timeout=OWN_TIMEOUT_S)
        if not session.connected:
            return 0
        canceller = clients.canceller(session)
        done = threading.Event()

        def sleep() -> None:
            try:
                long_statement(clients, session, OWN_SLEEP_S)
            finally:
                done.set()

        runner = threading.Thread(target=sleep, name="own-sleep")
        runner.start()
        if not done.wait(CANCEL_AFTER_S):
            canceller.cancel()
            while not done.wait(CANCEL_AGAIN_S):
                canceller.cancel()
        runner.join()
        session.close()
        return 1

    return sum(run_clients(count, client))


def cancel_after_the_end(clients, stale: int, others: int, rounds: int) -> int:
    """Phase 2: ``stale`` clients cancel themselves, running nothing, while ``others`` clients sleep
    on the backends the stale ones gave back; how many of them could connect."""
    stale_sessions = [clients("writer", request_timeout=CLIENT_REQUEST_TIMEOUT_S) for _ in range(stale)]
    cancellers = [clients.canceller(s) for s in stale_sessions if s.connected]
    sleepers = [clients("writer", request_timeout=CLIENT_REQUEST_TIMEOUT_S) for _ in range(others)]
    connected = sum(1 for s in stale_sessions + sleepers if s.connected)
    for _ in range(rounds):
        # At once, so that each holds a backend of its own, which then goes back to the pool.
        run_clients(len(stale_sessions), lambda worker: short_statement(clients, stale_sessions[worker]))
        cancel_while_others_sleep(clients, cancellers, sleepers)
    return connected


def short_statement(clients, client):
    """A read that holds its backend for :data:`SHORT_S` (op ``read``, no cancel is aimed at it)."""
    return client.request("read", clients.dialect.cancellable_sleep_sql(SHORT_S, clients.who))


def cancel_while_others_sleep(clients, cancellers, sleepers) -> None:
    """Every canceller cancels again every :data:`STALE_EVERY_S` while ``sleepers`` sleep."""
    done = threading.Event()

    def all_sleep() -> None:
        try:
            run_clients(len(sleepers), lambda worker: long_statement(clients, sleepers[worker], OTHERS_SLEEP_S))
        finally:
            done.set()

    sleeping = threading.Thread(target=all_sleep, name="others")
    sleeping.start()
    while not done.wait(STALE_EVERY_S):
        for canceller in cancellers:
            canceller.cancel()
    sleeping.join()


@pytest.mark.guarantee("CANCEL-OWN-QUERY", "CANCEL-NEVER-OTHERS")
def test_a_cancel_stops_its_own_statement_and_no_other(clients, profile):
    own, stale, others, rounds = (2, 3, 6, 2) if profile == "quick" else (4, 4, 10, 4)
    connected = cancel_own_statements(clients, own) + cancel_after_the_end(clients, stale, others, rounds)
    assert connected == own + stale + others, f"only {connected} of {own + stale + others} clients could connect"
