"""Faults as data (registry, specs, validation) and their history events, on a fake target."""

from __future__ import annotations

import pytest

from harness.faults.base import FaultError
from harness.faults.registry import fault_from_spec, registered
from harness.history import ManualClock, Phase, Recorder
from harness.net.toxics import Blackhole, Latency
from harness.targets.base import Capability, Credentials, Endpoint, Target, TargetError, Unsupported


class FakeRelay:
    def __init__(self) -> None:
        self.installed: dict[str, object] = {}

    def add_toxic(self, toxic):
        self.installed[toxic.name] = toxic
        return toxic

    def remove_toxic(self, name: str) -> None:
        del self.installed[name]

    def toxics(self):
        return list(self.installed.values())


class FakeTarget(Target):
    """Three instances; control operations only change who is writer and what is down."""

    kind = "fake"

    def __init__(self, capabilities=frozenset(Capability)) -> None:
        super().__init__("postgres")
        self.capabilities = frozenset(capabilities)
        self.writer, self.readers = "i1", ["i2", "i3"]
        self.down: set[str] = set()
        self.calls: list[tuple[str, str]] = []
        self.relays = {i: FakeRelay() for i in ("i1", "i2", "i3")}

    writer_endpoint = Endpoint("default", "writer", "127.0.0.1", 1)

    @property
    def reader_endpoints(self):
        return [Endpoint("reader", "reader", "127.0.0.1", 2)]

    credentials = Credentials("u", "p", "d")

    def roles(self):
        self.require(Capability.DIRECT)
        return {"writer": self.writer, "readers": list(self.readers)}

    def failover(self, target_instance=None):
        self.require(Capability.FAILOVER)
        new = target_instance or self.readers[0]
        self.readers = [i for i in (*self.readers, self.writer) if i != new]
        self.writer = new
        return new

    def crash(self, instance_id):
        self.require(Capability.CRASH)
        if instance_id == "boom":
            raise TargetError("cannot crash")
        self.calls.append(("crash", instance_id))

    def restart(self, instance_id):
        self.require(Capability.RESTART)
        self.calls.append(("restart", instance_id))

    def relay(self, instance_id):
        self.require(Capability.NETWORK_FAULTS)
        return self.relays[instance_id]


@pytest.fixture
def recorder():
    return Recorder(clock=ManualClock())


def test_every_documented_fault_is_registered():
    assert set(registered()) >= {"failover", "writer_crash", "reader_crash", "restart", "storm", "latency",
                                 "bandwidth", "reset_peer", "blackhole", "slicer", "limit_data", "down"}


def test_fault_from_spec_builds_typed_faults():
    f = fault_from_spec({"name": "latency", "latency_ms": 250, "jitter_ms": 20, "stream": "downstream"})
    assert f.name == "latency" and f.latency_ms == 250
    assert f.params() == {"instance": None, "stream": "downstream", "latency_ms": 250, "jitter_ms": 20}


@pytest.mark.parametrize("spec, message", [
    ({"name": "earthquake"}, "unknown fault 'earthquake'; known: bandwidth"),
    ({"latency_ms": 5}, "must be an object with a 'name'"),
    ({"name": "latency", "delay": 5}, "unknown parameter(s) delay; allowed: instance, jitter_ms"),
    ({"name": "latency", "latency_ms": -1}, "latency_ms must be a number from 0"),
    ({"name": "latency", "latency_ms": True}, "latency_ms must be a number"),
    ({"name": "blackhole", "stream": "sideways"}, "stream must be one of both, downstream, upstream"),
    ({"name": "slicer", "average_size": 4, "size_variation": 4}, "slicer: "),
    ({"name": "storm", "clients": 10_001}, "clients must be an integer from 1 to 10000"),
    ({"name": "storm", "endpoint": "direct"}, "endpoint must be 'writer' or 'reader'"),
    ({"name": "writer_crash", "instance": 3}, "instance must be an instance id"),
])
def test_bad_specs_are_rejected_clearly(spec, message):
    with pytest.raises(FaultError) as e:
        fault_from_spec(spec)
    assert message in str(e.value)


def test_failover_records_start_new_writer_event_and_end(recorder):
    target = FakeTarget()
    fault_from_spec({"name": "failover"}).start(target, recorder)
    h = recorder.history()
    [window] = h.fault_windows("failover")
    assert window.start_op.params["old_writer"] == "i1"
    assert window.end_op.params["new_writer"] == "i2"
    assert [e.value for e in h.events("new_writer")] == ["i2"]
    assert target.writer == "i2"


def test_missing_capability_raises_unsupported_and_records_nothing(recorder):
    target = FakeTarget(capabilities=set(Capability) - {Capability.NETWORK_FAULTS})
    with pytest.raises(Unsupported):
        fault_from_spec({"name": "blackhole"}).start(target, recorder)
    assert len(recorder.history()) == 0


def test_netfault_hits_the_writer_at_start_time_and_heal_removes_the_toxic(recorder):
    target = FakeTarget()
    blackhole = fault_from_spec({"name": "blackhole"})
    blackhole.start(target, recorder)
    assert isinstance(target.relays["i1"].installed["fault-blackhole"], Blackhole)
    target.failover("i3")  # the writer changes while the fault is on: it stays on i1
    blackhole.stop()
    assert target.relays["i1"].installed == {}
    latency = fault_from_spec({"name": "latency", "latency_ms": 50})
    with latency:
        latency.start(target, recorder)
        assert isinstance(target.relays["i3"].installed["fault-latency"], Latency)
    assert target.relays["i3"].installed == {}
    windows = recorder.history().fault_windows()
    assert [(w.name, w.params["instance"], w.end is not None) for w in windows] == [
        ("blackhole", "i1", True), ("latency", "i3", True)]


def test_writer_crash_heals_by_restarting_the_same_instance(recorder):
    target = FakeTarget()
    crash = fault_from_spec({"name": "writer_crash"})
    crash.start(target, recorder)
    assert crash.active
    crash.stop()
    crash.stop()  # idempotent
    assert target.calls == [("crash", "i1"), ("restart", "i1")]
    h = recorder.history()
    assert [e.value for e in h.events("instance_down")] == ["i1"]
    assert [(o.phase, o.params.get("restarted")) for o in h.faults("writer_crash")] == [
        (Phase.START, None), (Phase.END, True)]


def test_reader_crash_and_restart_pick_their_instances(recorder):
    target = FakeTarget()
    fault_from_spec({"name": "reader_crash"}).start(target, recorder)
    fault_from_spec({"name": "restart", "instance": "i3"}).start(target, recorder)
    assert target.calls == [("crash", "i2"), ("crash", "i3"), ("restart", "i3")]
    with pytest.raises(FaultError, match="no instance 'i9'"):
        fault_from_spec({"name": "restart", "instance": "i9"}).start(target, recorder)


def test_a_fault_that_cannot_be_applied_closes_its_window(recorder):
    target = FakeTarget()
    target.writer = "boom"
    with pytest.raises(FaultError, match="could not be applied: cannot crash"):
        fault_from_spec({"name": "writer_crash"}).start(target, recorder)
    [window] = recorder.history().fault_windows("writer_crash")
    assert window.end is not None and "cannot crash" in window.end_op.params["error"]

