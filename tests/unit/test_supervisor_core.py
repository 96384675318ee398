"""The supervisor's decisions on a fake cluster and a fake clock: grace, locks, failures."""

from __future__ import annotations

import threading

import pytest

from harness.standins.base import Cluster, Instance, Role, StandinError
from harness.standins.supervisor import MemoryStore, Supervisor, SupervisorError, read_promotions


class FakeCluster(Cluster):
    """Three instances; ``failover`` swaps roles like a real cluster, or fails when told to."""

    engine = "fake"

    def __init__(self) -> None:
        super().__init__(base_dir="", user="u", password="p", database="d", instances=[
            Instance(f"i{n}", Role.WRITER if n == 1 else Role.READER, "127.0.0.1", 5000 + n)
            for n in (1, 2, 3)])
        self.failovers: list[str | None] = []
        self.fail_with: Exception | None = None

    def failover(self, target: str | None = None) -> str:
        self.failovers.append(target)
        if self.fail_with is not None:
            raise self.fail_with
        old, new = self.writer, self.readers[0]
        old.role, new.role = Role.READER, Role.WRITER
        return new.id

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def topology(self): ...
    def crash(self, instance_id: str) -> None: ...
    def restart(self, instance_id: str) -> None: ...
    def add_reader(self) -> str: return ""
    def wait_replicated(self, timeout: float = 30.0) -> None: ...
    def running(self, instance_id: str) -> bool: return True
    def query_value(self, instance_id: str, query: str, timeout: float): return 1


class Harness:
    def __init__(self, tmp_path=None, grace: float = 2.0) -> None:
        self.now = 100.0
        self.cluster = FakeCluster()
        self.down: set[str] = set()
        self.store = MemoryStore(self.cluster)
        self.log = tmp_path / "promotions.jsonl" if tmp_path else None
        self.sup = Supervisor(self.store, grace=grace, poll_interval=0.25, promotions_log=self.log,
                              clock=lambda: self.now, wall=lambda: 1e9 + self.now,
                              is_answering=lambda c, inst: inst.id not in self.down)

    def steps(self, seconds: float, every: float = 0.25):
        results = []
        end = self.now + seconds
        while self.now < end - 1e-9:
            results.append(self.sup.step())
            self.now += every
        return [r for r in results if r is not None]


def test_answering_writer_is_left_alone():
    h = Harness()
    assert h.steps(10.0) == [] and h.cluster.failovers == []


def test_silent_writer_is_replaced_after_grace(tmp_path):
    h = Harness(tmp_path)
    h.steps(1.0)
    h.down.add("i1")
    assert h.steps(1.7) == []  # still within grace (last answer at +0.75 s)
    promotions = h.steps(0.5)
    assert len(promotions) == 1 and h.cluster.failovers == [None]
    p = promotions[0]
    assert (p.old_writer, p.new_writer, p.error) == ("i1", "i2", None)
    assert p.detected - p.writer_last_answered == pytest.approx(2.0)
    assert p.finished is not None and p.accepting_writes is not None
    assert h.cluster.writer.id == "i2"
    assert h.steps(10.0) == []  # the new writer answers: nothing more
    assert read_promotions(h.log)[0]["new_writer"] == "i2"


def test_no_judgement_while_someone_else_holds_the_lock_then_a_fresh_grace():
    h = Harness()
    h.steps(1.0)
    held, release = threading.Event(), threading.Event()

    def planned_failover() -> None:
        with h.sup.paused():
            h.down.add("i1")  # the planned failover fences the writer...
            held.set()
            release.wait(5)
            h.cluster.failover("i3")  # ...and promotes i3
            h.down.discard("i1")

    t = threading.Thread(target=planned_failover)
    t.start()
    held.wait(5)
    assert h.steps(5.0) == []  # far beyond grace, but the lock is held
    release.set()
    t.join(5)
    assert h.cluster.failovers == ["i3"]
    h.down.add("i2")  # i2 became the writer by FakeCluster's rule; its grace starts now
    assert h.steps(1.5) == []
    assert len(h.steps(1.0)) == 1


def test_failed_promotion_is_recorded_and_retried_after_another_grace():
    h = Harness()
    h.steps(0.5)
    h.down.add("i1")
    h.cluster.fail_with = StandinError("cannot fail over: no running reader to promote")
    first = h.steps(2.5)
    assert len(first) == 1 and "no running reader" in first[0].error and first[0].new_writer is None
    assert h.steps(1.5) == []
    h.cluster.fail_with = RuntimeError("driver exploded")  # not a StandinError: still survives
    second = h.steps(1.0)
    assert len(second) == 1 and "RuntimeError" in second[0].error
    h.cluster.fail_with = None
    third = h.steps(2.5)
    assert len(third) == 1 and third[0].new_writer == "i2"


def test_writer_back_within_grace_is_not_replaced():
    h = Harness()
    h.down.add("i1")
    h.steps(1.5)
    h.down.clear()
    assert h.steps(5.0) == []


def test_settings_are_checked():
    with pytest.raises(SupervisorError):
        Supervisor(MemoryStore(FakeCluster()), poll_interval=-1)
    with pytest.raises(SupervisorError):
        Supervisor(MemoryStore(FakeCluster()), grace=True)
