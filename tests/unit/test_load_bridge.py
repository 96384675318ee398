"""The request-event/history bridge, the per-process histories and their merge, the target options.

No Locust here: the bridge is handed a recording stand-in for Locust's ``events.request.fire``
(``tests/integration/test_load.py`` checks, in a child process, that these modules never pull in gevent).
"""

from __future__ import annotations

import argparse
import json

import pytest

from harness.clients.outcomes import Result
from harness.history import History, HistoryError, ManualClock, OpError, OpType, Recorder
from harness.targets.base import TargetError
from loadprofiles import histories
from loadprofiles.bridge import RequestNotOk, RequestReporter, response_length
from loadprofiles.options import build_target, target_options


class Events:
    def __init__(self) -> None:
        self.fired: list[dict] = []

    def fire(self, **kwargs) -> None:
        self.fired.append(kwargs)


class Ticks:
    """perf_counter stand-in: each call returns the next value."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def __call__(self) -> float:
        return self.values.pop(0)


def test_an_ok_request_is_reported_with_its_time_and_rows() -> None:
    events = Events()
    reporter = RequestReporter(events.fire, "postgres", clock=Ticks(1.0, 1.0125))
    result = Result(OpType.OK, [1, 2], node="instance-1", rows=[[(1,), (2,)], [("instance-1", 7, True)]])
    assert reporter.measure("writer", "point_read", lambda: result) is result
    (fired,) = events.fired
    assert fired["request_type"] == "postgres" and fired["name"] == "writer point_read"
    assert fired["response_time"] == pytest.approx(12.5)
    assert fired["response_length"] == 3  # Locust drops a report without it
    assert fired["exception"] is None and fired["context"]["node"] == "instance-1"


@pytest.mark.parametrize("op_type, code", [(OpType.FAIL, "08006"), (OpType.INFO, None)])
def test_a_request_that_did_not_end_ok_is_a_locust_failure_named_by_outcome_and_code(op_type, code) -> None:
    events = Events()
    result = Result(op_type, 5, error=OpError(code, "server closed the connection with id 5", code is not None))
    RequestReporter(events.fire, "mysql", clock=Ticks(0.0, 0.5)).measure("reader", "write", lambda: result)
    exc = events.fired[0]["exception"]
    assert isinstance(exc, RequestNotOk) and exc.result is result
    assert str(exc) == f"{op_type.value}: {code or 'no code'}"  # no ids: one failure row per kind, not per request
    assert events.fired[0]["response_length"] == 0 and events.fired[0]["response_time"] == 500.0


def test_an_exception_from_the_call_is_reported_and_raised_on() -> None:
    events = Events()

    def broken() -> Result:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        RequestReporter(events.fire, "postgres", clock=Ticks(0.0, 0.001)).measure("writer", "write", broken)
    assert isinstance(events.fired[0]["exception"], KeyError) and events.fired[0]["response_length"] == 0


def test_response_length_counts_rows_of_every_statement() -> None:
    assert response_length(Result(OpType.OK, rows=None)) == 0
    assert response_length(Result(OpType.OK, rows=[None, [(1,)], [], [(2,), (3,)]])) == 3


# -- per-process histories --------------------------------------------------------------------------------
def _record(path, tag: str, clock: ManualClock, steps: list[tuple[float, str]]) -> int:
    """Write a small history: each (time, kind) is a write by one client of ``tag``, or a fault."""
    with Recorder(path, clock=clock) as rec:
        for t, kind in steps:
            clock.at(t)
            if kind == "fault":
                rec.fault("failover", "start")
                continue
            inv = rec.invoke(f"{tag}-c1", "write", int(t * 10), endpoint="writer")
            rec.ok(inv, int(t * 10), node="instance-1")
        return len(rec.history())


def test_process_files_merge_by_time_with_fresh_indexes(tmp_path) -> None:
    clock = ManualClock()
    a = histories.process_history_path(tmp_path, histories.process_tag("worker", host="h.example", pid=1))
    b = histories.process_history_path(tmp_path, histories.process_tag("master", host="h", pid=2))
    a.parent.mkdir(parents=True)
    assert a.name == "worker-h-1.jsonl" and b.name == "master-h-2.jsonl"
    _record(a, "w1", clock, [(1.0, "write"), (3.0, "write")])
    clock2 = ManualClock()
    _record(b, "m", clock2, [(2.0, "fault")])
    merged = histories.merge(histories.history_files(tmp_path))
    assert [(op.time, op.type.value) for op in merged] == [
        (1_000_000_000, "invoke"), (1_000_000_000, "ok"), (2_000_000_000, "fault"), (3_000_000_000, "invoke"),
        (3_000_000_000, "ok")]
    assert [op.index for op in merged] == [0, 1, 2, 3, 4]
    assert len(merged.pairs()) == 2
    out = tmp_path / histories.MERGED
    histories.write_history(merged, out)
    assert [op.to_dict() for op in History.load(out)] == [op.to_dict() for op in merged]
    assert merged.anchor is not None and History.load(out).anchor == merged.anchor  # the wall clock goes along


def test_one_client_process_in_two_files_is_refused(tmp_path) -> None:
    clock = ManualClock()
    (tmp_path / "x").mkdir()
    _record(tmp_path / "x" / "a.jsonl", "same", clock, [(1.0, "write")])
    _record(tmp_path / "x" / "b.jsonl", "same", ManualClock(), [(2.0, "write")])
    with pytest.raises(HistoryError, match="appears in"):
        histories.merge([tmp_path / "x" / "a.jsonl", tmp_path / "x" / "b.jsonl"])


def _manifest(run_dir, **fields) -> None:
    (run_dir / histories.MANIFEST).write_text(json.dumps({"wait_s": 60, "workers": {}, "missing_workers": [],
                                                          **fields}))


def test_the_manifest_tells_whole_histories_from_short_or_missing_ones(tmp_path) -> None:
    assert "no load.json" in histories.check_manifest(tmp_path)[0]
    path = histories.process_history_path(tmp_path, "worker-h-7")
    path.parent.mkdir(parents=True)
    records = _record(path, "w7", ManualClock(), [(1.0, "write"), (2.0, "write")])
    _manifest(tmp_path, workers={"w7": {"tag": "worker-h-7", "records": records}})
    assert histories.check_manifest(tmp_path) == []
    _manifest(tmp_path, workers={"w7": {"tag": "worker-h-7", "records": records + 3}})
    assert "holds 4 records, it announced 7" in histories.check_manifest(tmp_path)[0]
    _manifest(tmp_path, workers={"w7": {"tag": "worker-h-7", "records": records},
                                 "w6": {"tag": None, "records": 0}})  # a worker that never had a user
    assert histories.check_manifest(tmp_path) == []
    _manifest(tmp_path, workers={"w8": {"tag": "worker-h-8", "records": 1}}, missing_workers=["w9"])
    problems = histories.check_manifest(tmp_path)
    assert "w9 sent no last report" in problems[0] and "worker-h-8.jsonl is not in the run directory" in problems[1]


# -- target options ------------------------------------------------------------------------------------
def test_dsns_come_from_the_environment_when_not_on_the_command_line() -> None:
    ns = argparse.Namespace(engine="mysql", writer_dsn=None, reader_dsns=None, requires_tls=False)
    opts = target_options(ns, {"AURORA_HARNESS_WRITER_DSN": "mysql://u:p@127.0.0.1:1/db",
                               "AURORA_HARNESS_READER_DSNS": "mysql://u:p@127.0.0.1:2/db\nmysql://u:p@127.0.0.1:3/db\n"})
    assert opts.engine == "mysql" and opts.writer_dsn == "mysql://u:p@127.0.0.1:1/db"
    assert opts.reader_dsns == ("mysql://u:p@127.0.0.1:2/db", "mysql://u:p@127.0.0.1:3/db")
    given = target_options(argparse.Namespace(engine="mysql", writer_dsn="mysql://a:b@127.0.0.1:9/x"),
                           {"AURORA_HARNESS_WRITER_DSN": "mysql://u:p@127.0.0.1:1/db"})
    assert given.writer_dsn == "mysql://a:b@127.0.0.1:9/x"


def test_missing_targets_are_refused_with_a_sentence(tmp_path) -> None:
    with pytest.raises(TargetError, match="no target"):
        build_target(argparse.Namespace(target=None, target_record=None), {})
    with pytest.raises(TargetError, match="aurora-harness up"):
        build_target(argparse.Namespace(target="reference", target_record=None, state_dir=str(tmp_path)), {})
    with pytest.raises(TargetError, match="--writer-dsn"):
        build_target(argparse.Namespace(target="external", target_record=None, engine="postgres"), {})
    with pytest.raises(TargetError, match="cannot read the target record"):
        build_target(argparse.Namespace(target_record=str(tmp_path / "none.json")), {})


def test_the_benchmark_table_puts_locust_and_threads_side_by_side() -> None:
    from loadprofiles.benchmark import TASKS, render

    assert {t.user_class for t in TASKS} == {"PointReadBench", "ReaderReadBench", "WriteBench", "ChurnBench",
                                            "SleepBench"}
    table = render([{"task": "sleep", "users": 10,
                     "locust": {"rps": 97.5, "p50_ms": 100.0, "p99_ms": 110.0, "failures": 0,
                                "cpu_ms_per_request": {"proxy": 0.412, "database": 0.2, "client": None}},
                     "threads": {"rps": 98.0, "failures": 1}}])
    row = table.splitlines()[2]
    assert "sleep" in row and "97.5" in row and "98.0" in row
    assert "0.41/0.20/-" in row and "-/-/-" in row, "CPU per request: proxy/database/client, '-' when unknown"


def test_the_cpu_per_request_is_what_each_process_spent_over_the_requests() -> None:
    from loadprofiles.benchmark import CpuMeter, _per_request_ms

    spent = CpuMeter.spent({"proxy": 1.0, "database": None}, {"proxy": 1.5, "database": 2.0})
    assert spent == {"proxy": 0.5, "database": None}
    assert _per_request_ms({**spent, "client": 0.25}, 1000) == {"proxy": 0.5, "database": None, "client": 0.25}
    assert _per_request_ms({"proxy": 0.5}, 0) == {"proxy": None}


def test_phases_cut_the_run_at_the_fault_window() -> None:
    from loadprofiles.phases import phases, render

    clock = ManualClock()
    rec = Recorder(clock=clock)

    def request(process: str, at: float, took: float, ok: bool = True) -> None:
        clock.at(at)
        inv = rec.invoke(process, "write", 1, endpoint="writer")
        clock.at(at + took)
        if ok:
            rec.ok(inv, 1)
        else:
            rec.info(inv, OpError("08006", "lost", False))

    request("c1", 0.0, 0.010)
    request("c1", 1.0, 0.020)
    clock.at(2.0)
    rec.fault("failover", "start")
    request("c1", 2.1, 0.5, ok=False)
    clock.at(3.0)
    rec.fault("failover", "end", {"new_writer": "instance-2"})
    request("c1", 3.5, 0.030)
    request("c1", 4.0, 0.040)
    request("final-read-1", 4.5, 0.001)  # the harness's own read: not part of the load
    rows = phases(rec.history())
    assert [(r.name, r.requests, r.failures) for r in rows] == [
        ("before", 2, 0), ("during failover", 1, 1), ("after", 2, 0)]
    assert rows[0].seconds == pytest.approx(2.0) and rows[0].p50_ms == pytest.approx(10.0)
    assert rows[1].p99_ms == pytest.approx(500.0) and rows[2].p99_ms == pytest.approx(40.0)
    assert "during failover" in render(rows)
    assert [r.name for r in phases(History([op for op in rec.history() if op.type is not OpType.FAULT]))] == [
        "whole run"]


LOCUST_SIDE = {"runtime", "users", "shapes", "bench_users"}
"""The modules of loadprofiles that import Locust (and so gevent), besides the profile files."""


def _loadprofiles_imports() -> dict[str, set[str]]:
    """Each loadprofiles module's imports: ``locust``/``gevent`` and the sibling modules it names."""
    import ast
    import pathlib

    import loadprofiles

    here = pathlib.Path(loadprofiles.__file__).parent
    found: dict[str, set[str]] = {}
    for path in here.glob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
        found[path.stem] = {n.split(".")[0] if n.split(".")[0] in ("locust", "gevent") else n.split(".")[1]
                            for n in names if n.split(".")[0] in ("locust", "gevent")
                            or (n.startswith("loadprofiles.") and len(n.split(".")) > 1)}
    return found


def test_only_the_locust_side_of_loadprofiles_imports_locust() -> None:
    """What the harness's commands import from loadprofiles must never bring Locust (and gevent) in."""
    from loadprofiles.profiles import PROFILES

    imports = _loadprofiles_imports()
    locust_side = LOCUST_SIDE | set(PROFILES)
    free = set(imports) - locust_side - {"__init__"}
    assert {"stages", "bridge", "histories", "options", "verdicts", "phases", "requests", "benchmark"} <= free
    for module in free:
        assert not imports[module] & ({"locust", "gevent"} | locust_side), (module, imports[module])
    for module in LOCUST_SIDE - {"shapes"}:
        assert {"locust"} & imports[module] or "users" in imports[module], module
    import ast
    import pathlib

    import harness

    for path in pathlib.Path(harness.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("loadprofiles"):
                named = {node.module.split(".")[1]} if "." in node.module else {a.name for a in node.names}
                assert not named & locust_side, f"{path.name} imports {named & locust_side} (Locust's side)"


def test_the_locust_command_lines_of_a_distributed_run(tmp_path) -> None:
    from harness.cli.load import locust_commands

    master, *workers = locust_commands(profile="failover_under_load", record=tmp_path / "t.json",
                                       run_dir=tmp_path / "run", users=8, spawn_rate=4.0, run_time_s=7.5,
                                       workers=2, web_port=None, port=5599)
    assert master[master.index("-f") + 1].endswith("loadprofiles/failover_under_load.py")
    assert master[master.index("-t") + 1] == "8s" and master[master.index("-u") + 1] == "8"
    assert "--headless" in master and "--skip-verdicts" in master
    assert master[master.index("--expect-workers") + 1] == "2"
    assert master[master.index("--csv") + 1] == str(tmp_path / "run" / "locust")
    assert master[master.index("--stop-timeout") + 1] != "0"  # users finish their request: whole histories
    assert len(workers) == 2 and all(w[w.index("--master-port") + 1] == "5599" for w in workers)
    assert not any("--target-record" in w for w in workers)  # workers get the target from the master
    (local,) = locust_commands(profile="steady", record=tmp_path / "t.json", run_dir=tmp_path / "run", users=1,
                               spawn_rate=1.0, run_time_s=3, workers=0, web_port=8123)
    assert "--headless" not in local and local[local.index("--web-port") + 1] == "8123" and "--master" not in local
