"""The history model: recording, pairing, fault windows, JSON-lines round trip, torn lines."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from harness.history import (
    ClockAnchor,
    History,
    HistoryError,
    ManualClock,
    Op,
    OpError,
    OpType,
    Phase,
    Recorder,
    duration_ns,
)


def small_run(rec: Recorder, clock: ManualClock) -> None:
    clock.at(0.0)
    w = rec.invoke(1, "write", 7, endpoint="writer")
    clock.at(0.1)
    rec.ok(w, node="instance-1", extra={"backend": 4242})
    clock.at(0.2)
    rec.fault("failover", "start", {"target": "instance-2"})
    r = rec.invoke(2, "read", None, endpoint="reader")
    clock.at(0.3)
    rec.info(r, OpError("08006", "connection lost", definite=False))
    clock.at(1.0)
    rec.fault("failover", Phase.END, {"new_writer": "instance-2"})
    rec.event("roles", {"writer": "instance-2", "readers": ["instance-1"]})
    w2 = rec.invoke(1, "write", 8, endpoint="writer")
    clock.at(1.5)
    rec.fail(w2, OpError("25006", "read-only transaction", definite=True), node="instance-1")


def test_recorder_assigns_indices_times_and_pairs():
    clock = ManualClock()
    rec = Recorder(clock=clock)
    small_run(rec, clock)
    h = rec.history()
    assert [o.index for o in h] == list(range(len(h)))
    assert [o.type for o in h][:2] == [OpType.INVOKE, OpType.OK]
    pairs = h.pairs()
    assert [(i.f, c.type) for i, c in pairs] == [("write", OpType.OK), ("read", OpType.INFO),
                                               ("write", OpType.FAIL)]
    inv, comp = pairs[0]
    assert comp.node == "instance-1" and comp.endpoint == "writer" and comp.extra == {"backend": 4242}
    assert duration_ns(inv, comp) == 100_000_000
    assert pairs[1][1].error == OpError("08006", "connection lost", False)


def test_queries_filter_by_kind_type_process_and_endpoint():
    clock = ManualClock()
    rec = Recorder(clock=clock)
    small_run(rec, clock)
    h = rec.history()
    assert len(h.ops(f="write")) == 4
    assert len(h.ops(f="write", type="ok")) == 1
    assert len(h.ops(type=[OpType.FAIL, OpType.INFO])) == 2
    assert len(h.ops(process=2)) == 2
    assert len(h.ops(endpoint="reader")) == 2
    assert [o.type for o in h.completed()] == [OpType.OK, OpType.INFO, OpType.FAIL]
    assert [o.phase for o in h.faults()] == [Phase.START, Phase.END]
    assert h.faults("other") == []
    assert h.events("roles")[0].value["writer"] == "instance-2"
    assert h.end_time == 1_500_000_000
    assert len(h.between(200_000_000, 300_000_000)) == 3


def test_fault_windows_join_start_and_end_params():
    clock = ManualClock()
    rec = Recorder(clock=clock)
    small_run(rec, clock)
    clock.at(2.0)
    rec.fault("blackhole", "start")
    (failover,) = rec.history().fault_windows("failover")
    assert (failover.start, failover.end) == (200_000_000, 1_000_000_000)
    assert failover.params == {"target": "instance-2", "new_writer": "instance-2"}
    assert failover.contains(500_000_000) and not failover.contains(1_100_000_000)
    assert failover.overlaps(900_000_000, 1_200_000_000)
    (open_window,) = rec.history().fault_windows("blackhole")
    assert open_window.end is None and open_window.contains(10**12)


def test_round_trip_through_a_file(tmp_path):
    path = tmp_path / "history.jsonl"
    clock = ManualClock()
    with Recorder(path, clock=clock) as rec:
        small_run(rec, clock)
        in_memory = rec.history()
    loaded = History.load(path)
    assert list(loaded) == list(in_memory)
    assert loaded.torn_lines == 0
    # One JSON object per line after the clock anchor, and keys with nothing in them are left out.
    first = json.loads(path.read_text().splitlines()[1])
    assert first == {"index": 0, "time": 0, "type": "invoke", "process": 1, "f": "write", "value": 7,
                     "endpoint": "writer"}


def test_torn_last_line_is_skipped_and_counted(tmp_path):
    path = tmp_path / "history.jsonl"
    clock = ManualClock()
    with Recorder(path, clock=clock) as rec:
        small_run(rec, clock)
    whole = path.read_text()
    path.write_text(whole + '{"index": 99, "time": 17, "ty')
    h = History.load(path)
    assert h.torn_lines == 1
    assert len(h) == len(whole.splitlines()) - 1  # the anchor line is not an op


def test_a_damaged_middle_line_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "history.jsonl"
    clock = ManualClock()
    with Recorder(path, clock=clock) as rec:
        small_run(rec, clock)
    lines = path.read_text().splitlines()
    lines[2] = lines[2][:10]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(HistoryError, match=r"history.jsonl:3: not a JSON record"):
        History.load(path)


@pytest.mark.parametrize("record, message", [
    ({"index": 0, "time": 0, "type": "bogus", "f": "x"}, "unknown record type"),
    ({"index": 0, "type": "ok", "f": "x"}, "missing 'time'"),
    ({"index": 0, "time": 0, "type": "ok", "f": "x", "error": {"code": "1"}}, "'text' and 'definite'"),
    ([1, 2], "must be a JSON object"),
])
def test_malformed_records_are_rejected_clearly(tmp_path, record, message):
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps(record) + "\n" + json.dumps({"index": 1, "time": 1, "type": "ok", "f": "x"}) + "\n")
    with pytest.raises(HistoryError, match=message):
        History.load(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(HistoryError, match="cannot read history"):
        History.load(tmp_path / "absent.jsonl")


def test_recorder_refuses_misuse():
    clock = ManualClock()
    rec = Recorder(clock=clock)
    op = rec.invoke(1, "read")
    with pytest.raises(HistoryError, match="already has op 0 outstanding"):
        rec.invoke(1, "read")
    with pytest.raises(HistoryError, match="ok, fail or info"):
        rec.complete(op, "invoke")
    with pytest.raises(HistoryError, match="cannot carry an error"):
        rec.complete(op, "ok", error=OpError(None, "x", True))
    with pytest.raises(HistoryError, match="not JSON-serialisable"):
        rec.ok(op, value=object())
    assert rec.outstanding() == [op]  # a rejected completion leaves the invocation open
    rec.ok(op, 1)
    with pytest.raises(HistoryError, match="not outstanding"):
        rec.ok(op, 1)
    with pytest.raises(HistoryError, match="non-empty"):
        rec.invoke(2, "")


def test_recorder_does_not_overwrite_an_existing_history(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text("")
    with pytest.raises(HistoryError, match="already exists"):
        Recorder(path)


def test_recorder_rejects_a_clock_going_backwards():
    clock = ManualClock(10)
    rec = Recorder(clock=clock)
    rec.event("x")
    clock.now_ns = 5
    with pytest.raises(HistoryError, match="clock went backwards"):
        rec.event("y")
    with pytest.raises(HistoryError, match="cannot move the clock back"):
        ManualClock(10).at(0)


def test_pairs_reports_inconsistent_histories():
    ops = [Op(0, 0, OpType.INVOKE, 1, "read"), Op(1, 1, OpType.INVOKE, 1, "read")]
    with pytest.raises(HistoryError, match="still open"):
        History(ops).pairs()
    with pytest.raises(HistoryError, match="has no invocation"):
        History([Op(0, 0, OpType.OK, 1, "read")]).pairs()
    with pytest.raises(HistoryError, match="without having started"):
        History([Op(0, 0, OpType.FAULT, "nemesis", "failover", phase=Phase.END)]).fault_windows()


def test_unfinished_invocation_pairs_with_none():
    rec = Recorder(clock=ManualClock())
    rec.invoke(3, "write", 1)
    assert rec.history().pairs()[0][1] is None


def test_many_threads_and_tasks_lose_nothing(tmp_path):
    path = tmp_path / "h.jsonl"
    rec = Recorder(path)

    def worker(n: int) -> None:
        for i in range(200):
            rec.ok(rec.invoke(f"t{n}", "write", i), i)

    async def task(n: int) -> None:
        for i in range(200):
            op = rec.invoke(f"a{n}", "read")
            await asyncio.sleep(0)
            rec.ok(op, i)

    async def tasks() -> None:
        await asyncio.gather(*(task(n) for n in range(4)))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    asyncio.run(tasks())
    for t in threads:
        t.join()
    rec.close()
    loaded = History.load(path)
    assert len(loaded) == 8 * 200 * 2
    assert [o.index for o in loaded] == list(range(len(loaded)))
    times = [o.time for o in loaded]
    assert times == sorted(times)
    assert all(c is not None and c.value == i.value if i.f == "write" else c is not None
               for i, c in loaded.pairs())


def test_torn_line_is_logged(tmp_path, caplog):
    path = tmp_path / "h.jsonl"
    path.write_text('{"index": 0, "time": 0, "type": "ok", "f": "x"}\n{"ind')
    with caplog.at_level("WARNING"):
        assert History.load(path).torn_lines == 1
    assert "torn last line" in caplog.text


def test_a_history_file_opens_with_its_clock_anchor(tmp_path):
    path = tmp_path / "history.jsonl"
    clock = ManualClock(5_000_000_000)
    with Recorder(path, clock=clock, wall_clock=lambda: 1_700_000_000_000_000_000) as rec:
        small_run_from(rec, clock)
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {"type": "clock", "wall_ns": 1_700_000_000_000_000_000, "time": 5_000_000_000}
    loaded = History.load(path)
    assert loaded.anchor == ClockAnchor(wall_ns=1_700_000_000_000_000_000, monotonic_ns=5_000_000_000)
    assert rec.history().anchor == loaded.anchor
    # Monotonic times stay as they were (durations), and each maps onto the wall clock.
    assert [o.time for o in loaded][:2] == [6_000_000_000, 6_100_000_000]
    assert loaded.anchor.wall_ns_of(loaded[1].time) == 1_700_000_001_100_000_000
    assert all(o.type is not None for o in loaded) and loaded[0].index == 0


def small_run_from(rec: Recorder, clock: ManualClock) -> None:
    clock.at(6.0)
    w = rec.invoke(1, "write", 7, endpoint="writer")
    clock.at(6.1)
    rec.ok(w)


def test_a_history_without_an_anchor_still_loads(tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_text('{"index":0,"time":10,"type":"invoke","process":1,"f":"write"}\n'
                    '{"index":1,"time":20,"type":"ok","process":1,"f":"write"}\n')
    loaded = History.load(path)
    assert len(loaded) == 2 and loaded.anchor is None


def test_a_malformed_anchor_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"type":"clock","wall_ns":"yesterday","time":1}\n'
                    '{"index":0,"time":10,"type":"invoke","process":1,"f":"write"}\n')
    with pytest.raises(HistoryError, match=r"bad.jsonl:1: a clock record"):
        History.load(path)
