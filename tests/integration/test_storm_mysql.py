"""The connection storm fault on MySQL: aiomysql clients through the reference proxy, every one recorded."""

from __future__ import annotations

import os

import pytest

from harness.checkers.base import CheckContext, Validity
from harness.checkers.storm import StormServedChecker
from harness.faults.registry import fault_from_spec
from harness.history import OpType, Recorder
from harness.standins.mysql.cluster import SEARCH_DIRS
from harness.targets.reference import ReferenceTarget

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.slow,
              pytest.mark.skipif(not any(os.path.exists(os.path.join(d, "mariadbd")) for d in SEARCH_DIRS),
                                 reason="MariaDB server binaries are not installed")]


def test_storm_through_the_proxy_serves_and_records_every_client():
    clients = 200
    with ReferenceTarget("mysql", readers=0, pool={"max_connections_percent": 10}) as target, Recorder() as recorder:
        storm = fault_from_spec({"name": "storm", "clients": clients, "hold_seconds": 0.1, "connect_timeout": 60})
        storm.start(target, recorder)
        assert storm.wait(120)
        storm.stop()
        history = recorder.history()
        assert storm.result is not None and storm.result.errors == {}
    attempts = [c for i, c in history.pairs() if i.f == "connect"]
    assert len(attempts) == clients and all(c is not None and c.type is OpType.OK for c in attempts)
    [window] = history.fault_windows("storm")
    assert window.end_op.params == {"ok": clients, "failed": 0}
    assert StormServedChecker().check(history, CheckContext()).valid is Validity.TRUE
