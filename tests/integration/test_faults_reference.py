"""Faults against the reference target with relays: the proxy reaches every instance through a TCP
relay, and network faults on one relay shape or silence that path.

One target (1 writer + 1 reader, proxy process, relays) serves the module; each test heals what it
broke.  The failover test runs last because it changes the writer.
"""

from __future__ import annotations

import os

import pytest
from polling import eventually

from harness.checkers.base import CheckContext, Validity
from harness.checkers.netfault import SilentFaultDetectedChecker
from harness.checkers.storm import StormServedChecker
from harness.clients.address import Address
from harness.clients.client import Client
from harness.faults.registry import fault_from_spec
from harness.history import OpType, Recorder, duration_ns
from harness.standins.postgres.cluster import PG_BIN_DIR
from harness.targets.base import Capability
from harness.targets.reference import ReferenceTarget

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.shares_cluster, pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(os.path.join(PG_BIN_DIR, "postgres")),
                                 reason="PostgreSQL 15 server binaries are not installed")]

TABLE = "fault_writes"


@pytest.fixture(scope="module")
def target():
    # A short borrow timeout: with the writer unreachable the proxy queues requests for that long.
    with ReferenceTarget("postgres", readers=1, relays=True, pool={"connection_borrow_timeout": 5}) as t:
        yield t


@pytest.fixture
def recorder():
    with Recorder() as r:
        yield r


_next_process = iter(range(1, 1_000_000))
_next_write_id = iter(range(1000, 1_000_000))


def client(target, recorder, **options) -> Client:
    c = Client(recorder, next(_next_process), Address.of(target, "writer"), table=TABLE, **options)
    assert c.connect().ok
    return c


def write_ok(target, recorder):
    """One write of a new id through the proxy on a fresh connection; the result if ok, else None."""
    c = Client(recorder, next(_next_process), Address.of(target, "writer"), table=TABLE, connect_timeout=3,
                 op_timeout=5)
    try:
        if not c.connect().ok:
            return None
        result = c.write(next(_next_write_id))
        return result if result.ok else None
    finally:
        c.close()


def took(recorder, result_f: str) -> float:
    inv, comp = next((i, c) for i, c in reversed(recorder.history().pairs()) if i.f == result_f)
    return duration_ns(inv, comp) / 1e9


def test_the_proxy_reaches_instances_through_their_relays(target, recorder):
    assert target.supports(Capability.NETWORK_FAULTS)
    writer = target.roles()["writer"]
    assert set(target.describe()["relays"]) == {i.id for i in target.cluster.instances}
    with client(target, recorder) as c:
        c.setup()
        result = c.write(1)
    assert result.ok and result.node == writer  # the instance id survives the relay
    assert target.relay(writer).stats().connections_total >= 1


def test_the_proxys_metrics_are_read_as_samples_through_the_target(target, recorder):
    writer = target.roles()["writer"]
    with client(target, recorder) as c:
        assert c.idle_probe().ok
        samples = target.metrics({"DatabaseConnections"})
    assert samples and {s.name for s in samples} == {"DatabaseConnections"}
    assert any(dict(s.dimensions) == {"Target": writer} and s.value >= 1 for s in samples), samples


def test_latency_fault_delays_queries_and_heal_removes_it(target, recorder):
    writer = target.roles()["writer"]
    with client(target, recorder) as c:
        assert c.idle_probe().ok
        latency = fault_from_spec({"name": "latency", "latency_ms": 150, "stream": "downstream"})
        latency.start(target, recorder)
        try:
            assert [t.name for t in target.relay(writer).toxics()] == ["fault-latency"]
            assert c.idle_probe().ok
            assert took(recorder, "idle_probe") >= 0.15  # at least one delayed answer from the writer
        finally:
            latency.stop()
        assert target.relay(writer).toxics() == []
        assert c.idle_probe().ok
    [window] = recorder.history().fault_windows("latency")
    assert window.params["instance"] == writer and window.end is not None


def test_blackhole_hangs_a_client_until_its_deadline_and_heal_restores(target, recorder):
    victim = client(target, recorder, op_timeout=2.0)
    blackhole = fault_from_spec({"name": "blackhole"})
    blackhole.start(target, recorder)
    try:
        result = victim.write(2)
        # The proxy kept the client's socket open and silent: only the client's own deadline ended it.
        assert result.error is not None and result.error.code == "timeout", result.error
        assert result.type in (OpType.FAIL, OpType.INFO)
        assert took(recorder, "write") >= 2.0
        assert target.proxy_running()
    finally:
        victim.close()
        blackhole.stop()
    assert eventually(lambda: write_ok(target, recorder), what="a write through the healed path").ok
    verdict = SilentFaultDetectedChecker().check(recorder.history(), CheckContext())
    assert verdict.valid is Validity.TRUE and verdict.figure >= 1.9


@pytest.mark.parametrize("name", ["reset_peer", "down"])
def test_loud_network_faults_end_requests_with_an_error_and_heal_restores(target, recorder, name):
    fault = fault_from_spec({"name": name})
    fault.start(target, recorder)
    try:
        c = Client(recorder, next(_next_process), Address.of(target, "writer"), table=TABLE,
                     connect_timeout=5, op_timeout=20)
        with c:
            result = c.write(next(_next_write_id)) if c.connect().ok else None
        assert result is None or (result.error is not None and result.error.code != "timeout"), result
    finally:
        fault.stop()
    assert eventually(lambda: write_ok(target, recorder),
                      what=f"a write after healing {name}").ok


def test_storm_records_every_client_as_a_connect_request(target, recorder):
    storm = fault_from_spec({"name": "storm", "clients": 30, "hold_seconds": 0.2, "connect_timeout": 20})
    storm.start(target, recorder)
    assert storm.wait(60)
    storm.stop()
    h = recorder.history()
    attempts = [c for i, c in h.pairs() if i.f == "connect"]
    assert len(attempts) == 30 and all(c is not None and c.type is OpType.OK for c in attempts)
    [window] = h.fault_windows("storm")
    assert window.end_op.params["ok"] == 30
    assert StormServedChecker().check(h, CheckContext()).valid is Validity.TRUE


def test_reader_crash_heals_by_restarting_the_reader(target, recorder):
    reader = target.roles()["readers"][0]
    crash = fault_from_spec({"name": "reader_crash"})
    crash.start(target, recorder)
    try:
        assert not target.cluster.running(reader)
    finally:
        crash.stop()
    direct = Client(recorder, next(_next_process), Address.direct(target.cluster, reader), table=TABLE)
    with direct:
        assert direct.connect().ok and direct.read().node == reader


def test_failover_fault_records_new_writer_and_netfaults_follow_it(target, recorder):
    old = target.roles()["writer"]
    fault_from_spec({"name": "failover"}).start(target, recorder)
    h = recorder.history()
    [window] = h.fault_windows("failover")
    new = window.params["new_writer"]
    assert new != old and window.params["old_writer"] == old
    assert [e.value for e in h.events("new_writer")] == [new]
    assert target.roles()["writer"] == new
    # Whether writes through the proxy follow the new writer is the availability suites' question.
    latency = fault_from_spec({"name": "latency", "latency_ms": 10})
    with latency:
        latency.start(target, recorder)
        assert [t.name for t in target.relay(new).toxics()] == ["fault-latency"]
    assert recorder.history().fault_windows("latency")[0].params["instance"] == new
