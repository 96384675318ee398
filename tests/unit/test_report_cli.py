"""``aurora-harness report`` and ``compare`` on hand-built run directories: files rebuilt, flips and
moves listed, exit status 1 when a verdict got worse and 2 (one line, no traceback) for bad input."""

from __future__ import annotations

import json
import shutil

from click.testing import CliRunner

from harness.cli import cli


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_report_rebuilds_the_files_and_prints_the_verdicts(built_run):
    for name in ("report.html", "report.json", "junit.xml"):
        (built_run / name).unlink(missing_ok=True)
    done = run("report", str(built_run), "--no-plots")
    assert done.exit_code == 0, done.output
    assert "NOT CERTIFIED: 1 false (ISOLATION-NO-SESSION-LEAK)" in done.output
    assert "Plots were left out" in (built_run / "report.html").read_text()
    assert json.loads((built_run / "report.json").read_text())["counts"]["false"] == 1
    assert (built_run / "junit.xml").stat().st_size > 0
    as_json = run("report", str(built_run), "--json", "--no-plots")
    assert as_json.exit_code == 0 and json.loads(as_json.output)["passed"] is False


def test_bad_input_is_one_line_and_exit_2(tmp_path, built_run):
    for args in (["report", str(tmp_path / "missing")], ["compare", str(built_run), str(tmp_path / "missing")]):
        done = run(*args)
        assert done.exit_code == 2, done.output
        assert "no run directory at" in done.output and "Traceback" not in done.output
        assert len(done.output.strip().splitlines()) == 1
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text("{not json")
    done = run("compare", str(tmp_path / "broken"), str(built_run))
    assert done.exit_code == 2 and "cannot read" in done.output


def _with_verdict(src, dest, guarantee: str, valid: str, figure: float):
    shutil.copytree(src, dest)
    results = json.loads((dest / "results.json").read_text())
    entry = results["guarantees"][guarantee]
    entry.update(valid=valid, figure=figure)
    (dest / "results.json").write_text(json.dumps(results))
    return dest


def test_compare_lists_flips_moves_and_latency_and_exits_1_when_worse(tmp_path, built_run):
    better = _with_verdict(built_run, tmp_path / "better", "ISOLATION-NO-SESSION-LEAK", "true", 0.0)
    done = run("compare", str(better), str(built_run), "--html", str(tmp_path / "cmp.html"))
    assert done.exit_code == 1, done.output
    assert "ISOLATION-NO-SESSION-LEAK: TRUE -> FALSE (worse)" in done.output
    assert "ISOLATION-NO-SESSION-LEAK: 0 -> 1 observations (from 0, worse)" in done.output
    assert "1 verdict got worse" in done.output
    # Both runs share the failover history: latency per endpoint with no difference.
    assert "writer: p50 4.00 ms -> 4.00 ms +0.00 ms (+0%)" in done.output
    assert "direct:instance-1: p50 1.00 ms -> 1.00 ms" in done.output  # reads 2 ms, backend counts 1 ms
    page = (tmp_path / "cmp.html").read_text()
    assert 'class="flip worse" data-guarantee="ISOLATION-NO-SESSION-LEAK"' in page and "<script" not in page
    assert "differ" not in done.output and 'id="differ"' not in page
    other = _with_verdict(built_run, tmp_path / "other", "ISOLATION-NO-SESSION-LEAK", "false", 1.0)
    results = json.loads((other / "results.json").read_text())
    results["run"]["engine"] = "mysql" if results["run"]["engine"] != "mysql" else "postgres"
    (other / "results.json").write_text(json.dumps(results))
    assert "note: the runs differ in engine" in run("compare", str(built_run), str(other)).output
    back = run("compare", str(built_run), str(better))
    assert back.exit_code == 0 and "FALSE -> TRUE (better)" in back.output and "no verdict got worse" in back.output


def test_the_tolerance_hides_small_moves(tmp_path, built_run):
    moved = _with_verdict(built_run, tmp_path / "moved", "FAILOVER-WRITE-GAP", "true", 0.95)  # 0.9 -> 0.95 s
    assert "FAILOVER-WRITE-GAP: 0.9 -> 0.95 s (6%, worse)" in run("compare", str(built_run), str(moved),
                                                                   "--tolerance", "5").output
    quiet = run("compare", str(built_run), str(moved))  # 10% by default
    assert quiet.exit_code == 0 and "figures that moved more than 10%: none" in quiet.output
