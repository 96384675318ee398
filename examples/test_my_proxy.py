"""Your own certification tests, on the harness's pytest plugin: a complete example.

Run it against the reference target (started and stopped for you)::

    pytest examples/test_my_proxy.py --target reference --engine postgres

or against your proxy::

    pytest examples/test_my_proxy.py --target external --engine mysql --writer-dsn "$WRITER" --reader-dsn "$READER"

Each test names the guarantees its history is judged against (``@pytest.mark.guarantee``); the
plugin records every request the ``clients`` make, runs those guarantees' checkers when the test
ends, prints the verdicts and writes the run directory (``results.json``, ``report.html``, the
histories) as ``aurora-harness certify`` does.  A test fails on its own assertions, and also when a
guarantee it names is judged false.
"""

from __future__ import annotations

import pytest


@pytest.mark.guarantee("ROUTE-READER-ONLY")
def test_reads_through_the_reader_endpoint_are_served_by_readers(clients):
    reader = clients("reader")  # a connected, recording client of the reader endpoint
    for _ in range(20):
        # clients.who: the columns that name the serving instance and backend, which the checker reads
        result = reader.request("read", f"SELECT 1, {clients.who}")
        assert result.ok, result.error
    reader.close()


@pytest.mark.guarantee("ROUTE-WRITER-ENDPOINT")
def test_writes_through_the_writer_endpoint_reach_the_writer(clients):
    writer = clients("writer")
    writer.setup()  # the harness's writes table, made if missing
    for write_id in range(1, 21):
        result = writer.write(write_id)  # a unique-id insert that also reads who served it
        assert result.ok, result.error
        assert result.node is not None  # the instance that served it, as the history records it


def test_what_a_recorded_request_returns(clients):
    """No guarantee named: recorded, not judged.  A request's Result carries the history's outcome
    (``ok``, ``type``, ``error`` with SQLSTATE or MySQL error code and whether it proves the request
    had no effect), who served it (``node``, ``backend``) and the raw ``rows``."""
    writer = clients("writer")
    answer = writer.request("answer", f"SELECT 41 + 1, {clients.who}")
    assert answer.ok and answer.rows is not None and answer.rows[0][0][0] == 42
    broken = writer.execute("broken", "SELECT * FROM no_such_table")
    assert not broken.ok and broken.error is not None and broken.error.definite
    assert broken.error.code in ("42P01", "1146")  # undefined table: PostgreSQL's SQLSTATE, MySQL's errno
