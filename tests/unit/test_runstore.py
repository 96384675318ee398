"""The run store: directory naming, the latest link, atomic results, and the per-guarantee summary."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest

from harness.runstore import (
    RunStore,
    RunStoreError,
    default_run_dir,
    history_file_name,
    overall,
    summarise,
)

NOON = dt.datetime(2026, 3, 1, 12, 0, 5, tzinfo=dt.UTC)
CATALOGUE = {"A-ONE": {"sentence": "a", "family": "x", "threshold": 0.0, "unit": "ops", "comparison": "at_most"},
             "B-TWO": {"sentence": "b", "family": "x", "threshold": 3.0, "unit": "s", "comparison": "at_most"}}


def verdict(gid: str, valid: str, figure: float | None = None, reason: str = "r") -> dict:
    return {"guarantee_id": gid, "valid": valid, "figure": figure, "threshold": 0.0, "unit": "ops",
            "reason": reason, "evidence": [{"index": 1, "f": "read_state"}] if valid == "false" else []}


def test_default_directory_is_named_by_utc_time_target_and_engine(tmp_path):
    assert default_run_dir(tmp_path, "reference", "postgres", NOON) == tmp_path / "20260301T120005Z-reference-postgres"


def test_names_that_would_escape_the_directory_are_refused(tmp_path):
    with pytest.raises(RunStoreError, match="target"):
        default_run_dir(tmp_path, "../etc", "postgres", NOON)


def test_create_makes_the_run_and_points_latest_at_it(tmp_path):
    store = RunStore.create(target="reference", engine="postgres", root=tmp_path, now=lambda: NOON)
    assert (store.path / "history").is_dir()
    assert os.readlink(tmp_path / "latest") == store.path.name
    second = RunStore.create(target="reference", engine="postgres", root=tmp_path, now=lambda: NOON)
    assert second.path != store.path, "two runs in the same second must not share a directory"
    assert os.readlink(tmp_path / "latest") == second.path.name


def test_a_named_directory_must_be_empty_and_gets_no_latest_link(tmp_path):
    chosen = tmp_path / "mine"
    chosen.mkdir()
    (chosen / "old.txt").write_text("x")
    with pytest.raises(RunStoreError, match="not empty"):
        RunStore.create(chosen, target="reference", engine="postgres", root=tmp_path)
    store = RunStore.create(tmp_path / "fresh", target="reference", engine="postgres", root=tmp_path)
    assert store.path == tmp_path / "fresh"
    assert not (tmp_path / "latest").exists()


def test_history_file_names_are_safe_and_distinct():
    a = history_file_name("suites/conformance/test_x.py::test_a[p1/2]")
    b = history_file_name("suites/conformance/test_x.py::test_b")
    assert "/" not in a and a.endswith(".jsonl") and a != b
    assert len(history_file_name("t::" + "x" * 500)) < 200


def test_results_round_trip_and_damaged_files_are_reported(tmp_path):
    store = RunStore.create(tmp_path / "r", target="external", engine="postgres")
    with pytest.raises(RunStoreError, match="no results"):
        store.load_results()
    store.write_results({"schema": 1, "tests": []})
    assert store.load_results() == {"schema": 1, "tests": []}
    store.results_path.write_text("{not json")
    with pytest.raises(RunStoreError, match="cannot read"):
        store.load_results()
    store.results_path.write_text(json.dumps({"schema": 99}))
    with pytest.raises(RunStoreError, match="schema"):
        store.load_results()


def test_target_description_is_kept_without_passwords(tmp_path):
    store = RunStore.create(tmp_path / "r", target="reference", engine="postgres")
    store.write_target({"credentials": {"user": "u", "password": "s3cret"},
                        "instances": [{"id": "instance-1", "password": "s3cret"}]})
    text = store.target_path.read_text()
    assert "s3cret" not in text
    assert store.load_target()["credentials"] == {"user": "u", "password": "(redacted)"}


def test_copy_log_keeps_an_existing_log_and_ignores_a_missing_one(tmp_path):
    store = RunStore.create(tmp_path / "r", target="reference", engine="postgres")
    log = tmp_path / "proxy.log"
    log.write_text("listening\n")
    assert store.copy_log(log, "proxy.log").read_text() == "listening\n"
    assert store.copy_log(tmp_path / "missing.log", "other.log") is None


def test_summary_ranks_false_over_unknown_over_true_and_names_the_deciding_test():
    tests = [{"id": "t1", "verdicts": [verdict("A-ONE", "true", 0), verdict("B-TWO", "unknown")]},
             {"id": "t2", "verdicts": [verdict("A-ONE", "false", 4, "4 leaks")]}]
    s = summarise(tests, CATALOGUE, ["A-ONE", "B-TWO"])
    assert s["A-ONE"]["valid"] == "false" and s["A-ONE"]["decided_by"] == "t2"
    assert s["A-ONE"]["figure"] == 4 and s["A-ONE"]["evidence"]
    assert s["A-ONE"]["tests"] == ["t1", "t2"]
    assert s["B-TWO"]["valid"] == "unknown"


def test_a_skipped_test_does_not_make_a_guarantee_judged_elsewhere_unknown():
    judged = {"id": "routing", "outcome": "passed",
              "verdicts": [{"guarantee_id": "A-ONE", "valid": "true", "reason": "60 requests judged"}]}
    skipped = {"id": "failover", "outcome": "skipped",
               "verdicts": [{"guarantee_id": "A-ONE", "valid": "unknown", "reason": "unsupported"},
                            {"guarantee_id": "B-TWO", "valid": "unknown", "reason": "unsupported"}]}
    s = summarise([judged, skipped], CATALOGUE, ["A-ONE", "B-TWO"])
    assert s["A-ONE"]["valid"] == "true" and "not judged in 1 skipped tests: failover" in s["A-ONE"]["reason"]
    assert s["B-TWO"]["valid"] == "unknown" and s["B-TWO"]["reason"] == "unsupported"  # nothing else judged it
    ran_and_unknown = {**judged, "verdicts": [{"guarantee_id": "A-ONE", "valid": "unknown", "reason": "no data"}]}
    assert summarise([ran_and_unknown, judged], CATALOGUE, ["A-ONE"])["A-ONE"]["valid"] == "unknown"


def test_a_selected_guarantee_no_test_judged_is_unknown():
    s = summarise([], CATALOGUE, ["B-TWO"])
    assert s["B-TWO"]["valid"] == "unknown" and "no test" in s["B-TWO"]["reason"]


@pytest.mark.parametrize(("valids", "outcome", "strict", "passes"), [
    (["true", "true"], "passed", False, True),
    (["true", "unknown"], "passed", False, True),
    (["true", "unknown"], "passed", True, False),
    (["false", "true"], "failed", False, False),
    (["true", "true"], "failed", False, False),   # a check outside the catalogue failed
])
def test_overall_pass_rules(valids, outcome, strict, passes):
    results = {"status": "complete",
               "guarantees": {f"G{i}": {"valid": v} for i, v in enumerate(valids)},
               "tests": [{"id": "t", "outcome": outcome, "verdicts": []}]}
    ok, problems = overall(results, strict=strict)
    assert ok is passes
    assert bool(problems) is not passes


def test_an_incomplete_run_does_not_pass():
    ok, problems = overall({"status": "interrupted", "guarantees": {}, "tests": []}, strict=False)
    assert not ok and "interrupted" in problems[0]
