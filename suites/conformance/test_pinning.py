"""Pinning: each documented trigger pins a session to its backend; documented non-triggers do not.

Background clients keep the pool busy so that an unpinned session's next transaction really can
land on another backend connection; the checkers compare ``backend`` ids before and after.  The
requests are the engine's documented triggers and non-triggers (``Dialect.pin_cases``), and clients
whose driver leaves a named protocol-level prepared statement open past the end of a transaction
(``Dialect.protocol_pin_cases``: psycopg's default prepare threshold and ``prepare=True``): such a
session must pin, or the statement's next execution runs where it does not exist.  Those sessions
alternate the prepared statement with reads of new text, which run anywhere, so a session that was
not pinned shows as moved whatever became of its statement; they run one after another, after the
others, since psycopg's statement names restart from zero in each connection.
"""

from __future__ import annotations

import pytest

from suites.workloads import CLIENT_REQUEST_TIMEOUT_S, background_reads, run_clients, serving_read

PROTOCOL_ROUNDS = 4
"""A protocol-statement session crosses this many times more transaction boundaries after its marker
than a statement-trigger session.  Its requests are short reads, and a pool that lends the backend
connection returned last gets the session its own backend back unless a background client returns
or takes one between two of its transactions; an unpinned session must be seen to move however the
machine's load falls, so it is given many chances, which cost milliseconds each."""


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

    protocol_cases = list(clients.dialect.protocol_pin_cases(clients.who).items())

    def protocol_client(i: int) -> None:
        name, case = protocol_cases[i]
        session = clients("writer", request_timeout=CLIENT_REQUEST_TIMEOUT_S, **case.options)
        for _ in range(case.runs):
            session.request("read", case.sql, case.params)
        # The statement is open now; the marker is the next request, new text that runs anywhere
        # (the preparing run itself may fail where a proxy releases between its Parse and its Bind).
        session.request("pin_trigger", f"SELECT 'marker' AS m, {clients.who}", value=name, idempotent=False)
        for n in range(PROTOCOL_ROUNDS * requests_after):
            if n % 2:
                session.request("read", case.sql, case.params)
            else:
                session.request("read", f"SELECT {n} AS fresh_text, {clients.who}")
        session.close()

    with background_reads(clients, "writer", workers=8):
        run_clients(len(cases), client)
    # One at a time, each with load from clients of its own kind (a MySQL driver's login settings
    # give it backends of its own): psycopg names statements _pg3_0, _pg3_1... from zero in every
    # connection, so a statement one left on a backend it did not pin would collide with the next's.
    for i, (_, case) in enumerate(protocol_cases):
        with background_reads(clients, "writer", workers=4, options=case.options):
            run_clients(1, lambda _, i=i: protocol_client(i))
