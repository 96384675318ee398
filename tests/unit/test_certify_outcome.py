"""The headline and exit status of a certification run: CERTIFIED only when every selected guarantee
held; a false one refuses it (1); an unknown one leaves it INCOMPLETE (3, or 0 when accepted); a run
that did not complete was not carried out (2)."""

from __future__ import annotations

import pytest

from harness.cli.certify import finish
from harness.runstore import SCHEMA_VERSION, RunStore, certification


def results(valids: dict[str, str], *, outcome: str = "passed", status: str = "complete") -> dict:
    return {"status": status,
            "guarantees": {g: {"valid": v, "reason": f"why {g}"} for g, v in valids.items()},
            "tests": [{"id": "suites/x.py::t", "outcome": outcome, "verdicts": []}]}


@pytest.mark.parametrize(("valids", "outcome", "status", "headline", "code", "allowed"), [
    ({"A": "true", "B": "true"}, "passed", "complete", "CERTIFIED", 0, 0),
    ({"A": "true", "B": "unknown"}, "passed", "complete", "INCOMPLETE", 3, 0),
    ({"A": "false", "B": "unknown"}, "passed", "complete", "NOT CERTIFIED", 1, 1),
    ({"A": "true"}, "failed", "complete", "NOT CERTIFIED", 1, 1),   # a check outside the catalogue failed
    ({"A": "true"}, "passed", "interrupted", "NOT CARRIED OUT", 2, 2),
    ({}, "passed", "complete", "INCOMPLETE", 3, 0),                 # nothing judged proves nothing
])
def test_headline_and_exit_status(valids, outcome, status, headline, code, allowed):
    c = certification(results(valids, outcome=outcome, status=status))
    assert c.headline == headline
    assert c.exit_status() == code and c.exit_status(allow_unknown=True) == allowed
    assert c.summary().startswith(headline)
    assert bool(c.problems()) is (headline != "CERTIFIED")


def test_incomplete_counts_the_unknown_guarantees_and_says_why():
    c = certification(results({"A": "true", "B": "unknown", "C": "unknown"}))
    assert c.summary() == "INCOMPLETE: 2 guarantees unknown"
    assert c.problems() == ["B is unknown: why B", "C is unknown: why C"]
    n = certification(results({"A": "false", "B": "unknown"}))
    assert n.summary() == "NOT CERTIFIED: 1 false (A); 1 unknown" and n.problems()[0] == "A is false: why A"


def _run(tmp_path, valids, status="complete"):
    store = RunStore.create(tmp_path / "run", target="external", engine="postgres")
    store.write_results({**results(valids, status=status), "schema": SCHEMA_VERSION, "selected": list(valids), "run": {}})
    return store.path


def test_finish_prints_the_headline_and_returns_its_exit_status(tmp_path, capsys):
    path = _run(tmp_path, {"ROUTE-WRITER-ENDPOINT": "true", "POOL-BACKEND-CAP": "unknown"})
    assert finish(path, as_json=False, pytest_status=0) == 3
    out = capsys.readouterr().out
    assert "INCOMPLETE: 1 guarantee unknown" in out and "POOL-BACKEND-CAP is unknown: why POOL-BACKEND-CAP" in out
    assert "\nPASSED" not in out and "CERTIFIED\n" not in out
    assert finish(path, allow_unknown=True, as_json=False, pytest_status=0) == 0
    assert "INCOMPLETE: 1 guarantee unknown (accepted by --allow-unknown)" in capsys.readouterr().out


def test_finish_without_results_is_not_carried_out(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert finish(tmp_path / "empty", as_json=False, pytest_status=4) == 2
    assert "NOT CARRIED OUT" in capsys.readouterr().err


def test_a_target_that_did_not_come_up_is_one_line_and_no_table(tmp_path, capsys):
    store = RunStore.create(tmp_path / "run", target="reference", engine="postgres")
    reason = "TargetError: the reference proxy exited | reference-proxy: pool.x: unknown setting"
    store.write_results({**results({"ROUTE-WRITER-ENDPOINT": "unknown"}, status=f"the target did not come up ({reason})"),
                         "target_error": reason, "schema": SCHEMA_VERSION, "selected": [], "run": {}})
    assert finish(store.path, as_json=False, pytest_status=2) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [f"certify: NOT CARRIED OUT: the target did not come up: {reason}"]
