"""The report model: what a run directory says, in the shape the renderers need."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from harness.history import ClockAnchor, History, HistoryError
from harness.metrics import MetricSample, load_samples
from harness.runstore import Certification, RunStore, RunStoreError, certification, overall


class ReportError(Exception):
    """Root of the reports' errors: a run directory that cannot be read or rendered."""


@dataclasses.dataclass(frozen=True)
class GuaranteeRow:
    """One guarantee's combined verdict, as a table row."""

    id: str
    valid: str
    figure: float | None
    threshold: float | None
    unit: str
    comparison: str | None
    reason: str
    sentence: str | None
    decided_by: str | None
    evidence: list[dict[str, Any]]

    @property
    def figure_vs_threshold(self) -> str:
        """``12.5 <= 3 s`` style: what was measured against what was promised."""
        if self.figure is None:
            return f"- (threshold {_num(self.threshold)} {self.unit})".rstrip()
        op = {"at_most": "<=", "at_least": ">="}.get(self.comparison or "", "vs")
        return f"{_num(self.figure)} {op} {_num(self.threshold)} {self.unit}".rstrip()


@dataclasses.dataclass(frozen=True)
class Judgement:
    """What one test concluded about one guarantee; a guarantee's row combines all of them."""

    test: str
    valid: str
    figure: float | None
    threshold: float | None
    unit: str
    reason: str
    evidence: list[dict[str, Any]]

    @property
    def figure_text(self) -> str:
        return f"{_num(self.figure)} {self.unit}".rstrip() if self.figure is not None else "-"


@dataclasses.dataclass(frozen=True)
class Report:
    """A run's results plus its target description."""

    run_dir: str
    results: dict[str, Any]
    target: dict[str, Any] | None
    _histories: dict[str, History | None] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def run(self) -> dict[str, Any]:
        return self.results.get("run", {})

    @property
    def tests(self) -> list[dict[str, Any]]:
        return list(self.results.get("tests", []))

    @property
    def rows(self) -> list[GuaranteeRow]:
        rows = []
        for gid, e in self.results.get("guarantees", {}).items():
            rows.append(GuaranteeRow(gid, e["valid"], e.get("figure"), e.get("threshold"), e.get("unit", ""),
                                     e.get("comparison"), e.get("reason", ""), e.get("sentence"),
                                     e.get("decided_by"), list(e.get("evidence", []))))
        return rows

    def counts(self) -> dict[str, int]:
        c = {"true": 0, "false": 0, "unknown": 0}
        for row in self.rows:
            c[row.valid] = c.get(row.valid, 0) + 1
        return c

    def passed(self, *, strict: bool = False) -> tuple[bool, list[str]]:
        return overall(self.results, strict=strict)

    @property
    def certification(self) -> Certification:
        """CERTIFIED, NOT CERTIFIED, INCOMPLETE or NOT CARRIED OUT, with the reasons."""
        return certification(self.results)

    def tests_without_guarantees(self) -> list[dict[str, Any]]:
        """Tests that assert something no catalogue guarantee names (they still pass or fail the run)."""
        return [t for t in self.tests if not t.get("guarantees")]

    def failed_tests(self) -> list[dict[str, Any]]:
        """Tests that failed or errored, guarantees or not: their messages say what went wrong."""
        return [t for t in self.tests if t.get("outcome") in ("failed", "error")]

    def judgements(self, guarantee_id: str) -> list[Judgement]:
        """Every verdict any test reached on ``guarantee_id``, in the order the tests ran."""
        out = []
        for t in self.tests:
            for v in t.get("verdicts", []):
                if v.get("guarantee_id") == guarantee_id:
                    out.append(Judgement(t["id"], v.get("valid", "unknown"), v.get("figure"), v.get("threshold"),
                                         v.get("unit", ""), v.get("reason", ""), list(v.get("evidence", []))))
        return out

    @property
    def command(self) -> str | None:
        """The command line of the run, with its passwords already masked by whoever recorded it."""
        return self.run.get("command")

    def test(self, test_id: str | None) -> dict[str, Any] | None:
        return next((t for t in self.tests if t["id"] == test_id), None)

    def history(self, test_id: str | None) -> History | None:
        """The history a test recorded, read once; ``None`` when it has none or it cannot be read (a
        report is still worth having without one plot)."""
        if test_id in self._histories:
            return self._histories[test_id]
        test = self.test(test_id)
        history = None
        if test and test.get("history"):
            try:
                history = History.load(Path(self.run_dir) / test["history"])
            except HistoryError:
                history = None
        self._histories[test_id] = history
        return history

    def metrics(self, test_id: str | None) -> tuple[list[MetricSample], ClockAnchor | None]:
        """The proxy metrics sampled during a test and the anchor of their clock (no samples when none
        were kept or the file is damaged)."""
        test = self.test(test_id)
        if not test or not test.get("metrics"):
            return [], None
        try:
            return load_samples(Path(self.run_dir) / test["metrics"])
        except (OSError, ValueError, KeyError, HistoryError):
            return [], None

    def files(self) -> list[str]:
        """The run directory's files a reader may want to open, relative to it, in a stable order."""
        base = Path(self.run_dir)
        top = [n for n in ("results.json", "report.json", "junit.xml", "target.json") if (base / n).is_file()]
        logs = sorted(p.name for p in base.glob("*.log") if p.is_file())
        histories = sorted(os.fspath(p.relative_to(base)) for p in base.glob("history/**/*.jsonl"))
        metrics = sorted(os.fspath(p.relative_to(base)) for p in base.glob("metrics/*.jsonl"))
        return top + logs + histories + metrics


def load_report(run_dir: str | os.PathLike[str]) -> Report:
    """Read ``results.json`` and ``target.json`` of a run directory."""
    try:
        store = RunStore.open(run_dir)
        return Report(os.fspath(run_dir), store.load_results(), store.load_target())
    except RunStoreError as e:
        raise ReportError(str(e)) from None


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    if float(x).is_integer():
        return str(int(x))
    return f"{x:.4g}"
