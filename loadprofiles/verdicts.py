"""Judging a load run: the same checkers, verdicts and ``results.json`` as a certification.

After the load (every Locust process stopped, or at least every worker's last report in), one
recording client reads the writes table through the writer endpoint (``final_read``, the durability
checkers' view of what survived), the per-process histories are merged by time into
``history/merged.jsonl``, and each guarantee of the profile is judged on it by its checker.  The
run is written as one test, ``load::<profile>``, in ``results.json``, so ``reports`` renders it
like any certification and the exit status means the same (0 certified, 1 not, 2 not carried out,
3 incomplete).

Two things make a verdict UNKNOWN rather than trusted: a history that may be incomplete (a worker
that sent no last report, or a file shorter than announced: :func:`histories.check_manifest`), which
turns every TRUE into UNKNOWN (a FALSE found stands); and a planned fault that could not be carried
out, which makes the guarantees that judge that fault unknown.

Locust is not imported here; the Locust master of a plain ``locust -f`` run calls
:func:`judge_and_print` when it quits, ``aurora-harness load`` calls :func:`judge` after Locust ended.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from harness.checkers import CheckContext, Validity, Verdict
from harness.clients.address import Address
from harness.clients.client import Client
from harness.history import Recorder
from harness.plugin.run import HarnessRun
from harness.plugin.targets import pool_caps, reader_weights
from harness.runstore import RunStore, write_json_atomically
from harness.targets.base import Capability, Target
from loadprofiles import histories
from loadprofiles.phases import PhaseStats, phases
from loadprofiles.phases import render as render_phases
from loadprofiles.profiles import BASE, DURABILITY, PROFILES

PHASES = "load-phases.json"
"""Requests, failures, req/s and latency before, during and after each fault (:mod:`loadprofiles.phases`)."""
FINAL_READ_DEADLINE_S = 30.0
"""How long the final read may keep trying (the writer may still be coming back from a fault)."""


def writer_now(target: Target) -> str | None:
    """The writer instance as the target reports it (None when it cannot say): the routing checkers'
    starting point, taken before the load."""
    if not target.supports(Capability.DIRECT):
        return None
    try:
        return target.roles()["writer"]
    except Exception:  # noqa: BLE001 - a target that cannot say leaves the timeline to the history
        return None


def final_read(target: Target, run_dir: str | os.PathLike[str], *, deadline_s: float = FINAL_READ_DEADLINE_S) -> bool:
    """Read the writes table through the writer endpoint until one read succeeds; every attempt is
    recorded in ``history/processes/final-read.jsonl``.  True when a read succeeded."""
    path = histories.process_history_path(run_dir, "final-read")
    path.parent.mkdir(parents=True, exist_ok=True)
    give_up = time.monotonic() + deadline_s
    attempt = 0
    with Recorder(path) as recorder:
        while True:
            attempt += 1
            client = Client(recorder, f"final-read-{attempt}", Address.of(target, "writer"), connect_timeout=10,
                            op_timeout=30)
            try:
                if client.connect().ok and client.final_read().ok:
                    return True
            finally:
                client.close()
            if time.monotonic() >= give_up:
                return False
            time.sleep(0.5)


def _manifest(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / histories.MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def judge(run_dir: str | os.PathLike[str], target: Target, profile_name: str, *,
          initial_writer: str | None = None) -> dict[str, Any]:
    """Judge the run in ``run_dir`` (see the module docstring); writes and returns its results."""
    base = Path(run_dir)
    known = PROFILES.get(profile_name)
    guarantees = list(known.guarantees if known is not None else BASE)
    manifest = _manifest(base)
    if initial_writer is None:
        initial_writer = manifest.get("initial_writer")
    if any(g in DURABILITY for g in guarantees):
        final_read(target, base)
    incomplete = histories.check_manifest(base)
    merged = histories.merge(histories.history_files(base), histories.clock_offsets(base))
    histories.write_history(merged, base / histories.MERGED)
    write_json_atomically(base / PHASES, [dataclasses.asdict(p) for p in phases(merged)])
    run = HarnessRun(RunStore.open(base), target=target.kind, engine=target.engine, profile=f"load:{profile_name}")
    run.selected = guarantees
    record = run.record_for(f"load::{profile_name}", guarantees)
    record.history = histories.MERGED
    context = CheckContext(catalogue=run.catalogue, engine=target.engine, target=target.kind,
                           initial_writer=initial_writer, pool_cap=pool_caps(target),
                           reader_weights=reader_weights(target))
    verdicts = run.judge(guarantees, merged, context)
    fault_errors = manifest.get("fault_errors") or []
    if fault_errors and known is not None:
        verdicts = [run.unknown_verdicts([v.guarantee_id], "the planned fault could not be carried out: "
                                         + "; ".join(fault_errors))[0]
                    if v.guarantee_id in known.fault_guarantees else v for v in verdicts]
    if incomplete:
        verdicts = [_doubted(run, v, incomplete) for v in verdicts]
    record.verdicts = [v.to_dict() for v in verdicts]
    record.outcome = "failed" if any(v.valid is Validity.FALSE for v in verdicts) else "passed"
    record.message = "; ".join(incomplete + fault_errors) or None
    run.status = "complete"
    run.save()
    return run.results()


def _doubted(run: HarnessRun, verdict: Verdict, problems: list[str]) -> Verdict:
    if verdict.valid is not Validity.TRUE:
        return verdict
    return run.unknown_verdicts([verdict.guarantee_id], "the histories may be incomplete ("
                                + "; ".join(problems) + "); what was recorded showed no violation")[0]


def judge_and_print(run_dir: str | os.PathLike[str], target: Target, profile_name: str) -> int:
    """Judge, render the reports, print the verdict table and headline; returns the exit status."""
    from reports.render import write_reports
    from reports.table import for_terminal

    judge(run_dir, target, profile_name)
    report = write_reports(run_dir, strict=True)
    outcome = report.certification
    print("\n" + phases_text(run_dir), flush=True)
    print("\n" + for_terminal(report) + "\n", flush=True)
    print(f"run directory: {run_dir}  (results.json, report.html, locust CSV/HTML, history/)")
    print("\n".join([outcome.summary(), *(f"  {line}" for line in outcome.problems())]), flush=True)
    return outcome.exit_status()


def phases_text(run_dir: str | os.PathLike[str]) -> str:
    """The phases table of a judged run (empty when there is none)."""
    try:
        rows = json.loads((Path(run_dir) / PHASES).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return ""
    return render_phases([PhaseStats(**r) for r in rows])
