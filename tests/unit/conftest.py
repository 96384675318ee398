"""Fixtures shared by the unit tests of the reports: a run directory built by hand."""

from __future__ import annotations

import pytest

from harness.checkers import Validity, Verdict
from harness.history import ClockAnchor, ManualClock, OpError, Recorder
from harness.metrics import MetricSample, write_samples
from harness.plugin.run import HarnessRun
from harness.runstore import RunStore

WALL_AT_ZERO = 1_796_169_600_000_000_000  # 2026-12-02 00:00:00 UTC, the wall clock when the history began
ISO = "suites/conformance/test_isolation.py::test_leaks"
MODEL = "suites/models/test_sessions_model.py::test_private_sessions"
FAILOVER = "suites/chaos/test_failover.py::test_failover_under_load"
POOL = "suites/conformance/test_pooling.py::test_cap"


def record_failover(path) -> list[dict]:
    """A small failover under load: writes and reads on both endpoints, a failover window, errors of
    two kinds, a promotion, idle probes, backend counts against a cap.  Returns one leaking op."""
    clock = ManualClock()
    with Recorder(path, clock=clock, wall_clock=lambda: WALL_AT_ZERO) as rec:
        rec.event("roles", {"writer": "instance-1", "readers": ["instance-2"]})
        rec.event("pool_cap", {"instance-1": 20})
        for step in range(60):  # a step every 0.1 s; the failover runs from step 20 to step 30
            clock.at(step / 10)
            w = rec.invoke(1, "write", step, endpoint="writer")
            clock.advance(0.004 + (0.05 if 20 <= step <= 30 else 0))
            if 21 <= step <= 25:
                rec.fail(w, OpError("57P01", "terminating connection", definite=True))
            elif step == 26:
                rec.info(w, OpError("timeout", "no answer", definite=False))
            else:
                rec.ok(w, node="instance-1" if step < 20 else "instance-2")
            r = rec.invoke(2, "read", None, endpoint="reader")
            clock.advance(0.003)
            rec.ok(r, 1, node="instance-2")
            d = rec.invoke(3, "read", None, endpoint="direct:instance-1")
            clock.advance(0.002)
            rec.ok(d, 1, node="instance-1")
            c = rec.invoke(4, "backend_count", endpoint="direct:instance-1")
            clock.advance(0.001)
            rec.ok(c, 5 + step % 10, node="instance-1")
            if step == 20:
                rec.fault("failover", "start", {"old_writer": "instance-1"})
            if step == 25:
                rec.event("new_writer", "instance-2")
            if step == 30:
                rec.fault("failover", "end", {"new_writer": "instance-2"})
            if step == 35:
                p = rec.invoke(5, "idle_probe", endpoint="writer")
                clock.advance(0.004)
                rec.ok(p, node="instance-2")
        leak = rec.history().ops(f="write", type="ok")[3]
    return [leak.to_dict()]


def record_metrics(path):
    """What the proxy reported every 0.5 s of the failover history: connections, its cap, pinned sessions."""
    samples = []
    for step in range(12):
        t = step * 500_000_000
        samples += [MetricSample(t, "DatabaseConnections", 3 + step % 4, {"Target": "instance-1"}),
                    MetricSample(t, "MaxDatabaseConnectionsAllowed", 20, {"Target": "instance-1"}),
                    MetricSample(t, "DatabaseConnectionsCurrentlySessionPinned", step % 3, {"Target": "instance-1"})]
    write_samples(path, samples, ClockAnchor(wall_ns=WALL_AT_ZERO, monotonic_ns=0))
    return path


@pytest.fixture
def built_run(tmp_path):
    """A run directory by hand: four tests, one failed guarantee judged twice, a failover history."""
    store = RunStore.create(tmp_path / "run", target="external", engine="postgres")
    run = HarnessRun(store, target="external", engine="postgres", profile="quick", seed=7)
    run.command = "aurora-harness certify --target external --writer-dsn 'host=db password=sekrit-pw-1'"
    run.secrets = ["sekrit-pw-1"]
    run.server_version = "15.18"
    run.selected = ["ISOLATION-NO-SESSION-LEAK", "POOL-BACKEND-CAP", "FAILOVER-WRITE-GAP"]
    run.not_in_profile = ["NETFAULT-SILENT-DETECTED"]
    history = store.history_path(FAILOVER)
    evidence = record_failover(history)
    iso = run.record_for(ISO, ["ISOLATION-NO-SESSION-LEAK"])
    iso.history = store.relative(history)  # the evidence ops are in this history
    iso.verdicts = [Verdict("ISOLATION-NO-SESSION-LEAK", Validity.FALSE, 1.0, 0.0, "observations",
                            "1 saw another client's <state>", evidence).to_dict()]
    iso.outcome = "failed"
    iso.message = "ISOLATION-NO-SESSION-LEAK is FALSE: 1 saw another client's state"
    model = run.record_for(MODEL, ["ISOLATION-NO-SESSION-LEAK"])
    model.verdicts = [Verdict("ISOLATION-NO-SESSION-LEAK", Validity.TRUE, 0.0, 0.0, "observations",
                              "93 state reads by the model, none leaked").to_dict()]
    model.outcome = "failed"
    model.message = "Falsifying example: -- client 1\nSET x = 1; replay with --seed 7"
    fo = run.record_for(FAILOVER, ["FAILOVER-WRITE-GAP"])
    fo.history = store.relative(history)
    fo.metrics = store.relative(record_metrics(store.metrics_path(FAILOVER)))
    fo.verdicts = [Verdict("FAILOVER-WRITE-GAP", Validity.TRUE, 0.9, 3.0, "s", "1 failover; worst gap 0.9 s").to_dict()]
    pool = run.record_for(POOL, ["POOL-BACKEND-CAP"])
    pool.verdicts = [v.to_dict() for v in run.unknown_verdicts(["POOL-BACKEND-CAP"], "the pool cap is not known")]
    run.status = "complete"
    run.save()
    (store.path / "proxy.log").write_text("proxy started\n")
    store.write_target({"target": "external", "engine": "postgres", "password": "sekrit-pw-1"})
    return store.path


@pytest.fixture
def built_ids() -> dict[str, str]:
    """The test ids of :func:`built_run`, by role: iso (failed, false verdict), model (failed, true
    verdict), failover (the history with everything to plot)."""
    return {"iso": ISO, "model": MODEL, "failover": FAILOVER, "pool": POOL}
