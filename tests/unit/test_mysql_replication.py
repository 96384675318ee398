"""Reading MariaDB's SHOW SLAVE STATUS: streaming or not, and can it ever catch up (no server)."""

from __future__ import annotations

from harness.standins.mysql.replication import divergence, streaming


def status(io="Yes", sql="Yes", io_errno=0, io_error="", sql_errno=0, sql_error=""):
    return {"Slave_IO_Running": io, "Slave_SQL_Running": sql, "Last_IO_Errno": io_errno,
            "Last_IO_Error": io_error, "Last_SQL_Errno": sql_errno, "Last_SQL_Error": sql_error}


def test_streaming_needs_both_threads_running():
    assert streaming(status())
    assert not streaming(status(io="Connecting"))
    assert not streaming(status(sql="No"))
    assert not streaming(None)


def test_a_reconnecting_replica_has_not_diverged():
    assert divergence(status(io="Connecting", io_errno=2003, io_error="can't connect")) is None
    assert divergence(None) is None


def test_a_source_refusing_the_position_is_divergence():
    reason = divergence(status(io="No", io_errno=1236, io_error="GTID 0-2-3 not in binlog"))
    assert reason and "1236" in reason and "0-2-3" in reason


def test_a_stopped_sql_thread_with_an_error_is_divergence():
    reason = divergence(status(sql="No", sql_errno=1950, sql_error="out of order"))
    assert reason and "1950" in reason
    assert divergence(status(sql="No")) is None  # stopped on purpose, no error
