"""Histories of Locust workers on other machines: shipped in pieces, put together by the master, and
merged on the master's clock.  No Locust here: the pieces go through a plain function."""

from __future__ import annotations

import itertools
import json

import pytest

from harness.history import History, Recorder
from loadprofiles import histories

TAG = "worker-far_away-4242"


def recorded(path, n: int, *, clock_start: int = 1_000) -> None:
    ticks = itertools.count(clock_start, 5)
    recorder = Recorder(path, clock=lambda: next(ticks))
    for i in range(n):
        inv = recorder.invoke(f"{TAG}-c{i}", "write", i, endpoint="writer")
        recorder.complete(inv, "ok", i)
    recorder.close()


def test_a_history_shipped_in_pieces_arrives_whole(tmp_path) -> None:
    worker_file = tmp_path / "worker" / "h.jsonl"
    worker_file.parent.mkdir()
    recorded(worker_file, 300)
    master = histories.Shipments(tmp_path / "master")
    count, sha256 = histories.ship(worker_file, lambda seq, piece: master.add(TAG, seq, piece))
    assert count >= 1
    assert master.finish(TAG, count, sha256) is None
    arrived = histories.process_history_path(tmp_path / "master", TAG)
    assert arrived.read_text() == worker_file.read_text()
    assert histories.history_files(tmp_path / "master") == [arrived]


def test_pieces_end_at_line_ends_and_join_to_the_file(tmp_path) -> None:
    path = tmp_path / "h.jsonl"
    recorded(path, 100)
    pieces = list(histories.history_pieces(path, size=1000))
    assert len(pieces) > 5 and all(p.endswith("\n") for p in pieces)
    assert "".join(pieces) == path.read_text()


@pytest.mark.parametrize("damage", ["lost piece", "reordered", "digest", "bad tag"])
def test_a_damaged_shipment_is_a_problem_not_a_history(tmp_path, damage: str) -> None:
    path = tmp_path / "h.jsonl"
    recorded(path, 100)
    pieces = list(histories.history_pieces(path, size=1000))
    master = histories.Shipments(tmp_path / "master")
    tag = "../../etc/evil" if damage == "bad tag" else TAG
    order = list(enumerate(pieces))
    if damage == "lost piece":
        order.pop(2)
    if damage == "reordered":
        order[1], order[2] = order[2], order[1]
    for seq, piece in order:
        master.add(tag, seq, piece)
    sha256 = "0" * 64 if damage == "digest" else histories.ship(path, lambda *_: None)[1]
    if damage == "bad tag":
        assert master.problems == {"../../etc/evil": "a history piece named no valid process tag"}
        assert not (tmp_path / "etc").exists() and not list(tmp_path.glob("master/**/*.jsonl*"))
        return
    problem = master.finish(TAG, len(pieces), sha256)
    assert problem, damage
    assert histories.history_files(tmp_path / "master") == [], "no partial history is judged"


def test_the_manifest_reports_a_shipment_problem(tmp_path) -> None:
    (tmp_path / histories.MANIFEST).write_text(json.dumps({"workers": {"w1": {
        "tag": TAG, "records": 10, "shipment_problem": "2 of 3 history pieces arrived"}}}))
    assert histories.check_manifest(tmp_path) == [
        "worker w1: its history did not arrive whole: 2 of 3 history pieces arrived"]


def test_a_worker_on_another_clock_is_shifted_by_its_offset_when_merged(tmp_path) -> None:
    local = histories.process_history_path(tmp_path, "master-here-1")
    far = histories.process_history_path(tmp_path, TAG)
    local.parent.mkdir(parents=True)
    recorder = Recorder(local, clock=itertools.count(4_999_990, 10).__next__)  # the anchor, then the event
    recorder.event("fault_start", "failover")
    recorder.close()
    recorded(far, 2, clock_start=1_000)  # its clock reads far behind the master's
    (tmp_path / histories.MANIFEST).write_text(json.dumps({"workers": {
        "w1": {"tag": TAG, "records": 4, "clock_offset_ns": 4_998_500},
        "w2": {"tag": "worker-near-2", "records": 0}}}))
    offsets = histories.clock_offsets(tmp_path)
    assert offsets == {TAG: 4_998_500}
    merged = histories.merge(histories.history_files(tmp_path), offsets)
    assert [op.time for op in merged] == sorted(op.time for op in merged)
    assert merged[0].f == "write" and merged[0].time == History.load(far)[0].time + 4_998_500
    unshifted = histories.merge(histories.history_files(tmp_path))
    assert unshifted[-1].f == "fault_start"


def test_only_a_process_on_the_same_file_system_sees_the_marker(tmp_path) -> None:
    name = histories.leave_marker(tmp_path / "run")
    assert histories.sees_marker(tmp_path / "run", name)
    assert not histories.sees_marker(tmp_path / "elsewhere", name)
    assert not histories.sees_marker(tmp_path / "run", "../run/x")
    histories.remove_markers(tmp_path / "run")
    assert not histories.sees_marker(tmp_path / "run", name)
    assert histories.boot_id() == histories.boot_id() and histories.boot_id()


def test_an_empty_worker_history_still_arrives(tmp_path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text("")
    master = histories.Shipments(tmp_path / "m")
    count, sha256 = histories.ship(path, lambda seq, piece: master.add(TAG, seq, piece))
    assert count == 0 and master.finish(TAG, 0, sha256) is None
    assert History.load(histories.process_history_path(tmp_path / "m", TAG)).ops() == []
