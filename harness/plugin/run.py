"""One certification run inside pytest: where things are written and what each test concluded.

The plugin makes one :class:`HarnessRun` per pytest session when ``--target`` is given.  Each test
that carries ``@pytest.mark.guarantee(...)`` gets a :class:`TestRecord`; after the test body the
plugin judges the test's history with the checkers of those guarantees (:meth:`HarnessRun.judge`)
and the record keeps the verdicts, the outcome and the duration.  ``results.json`` is rewritten
after every test so that a run that dies keeps what it reached.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any

from harness import guarantees as _guarantees
from harness.checkers import CheckContext, Validity, Verdict, check_safe, default_checkers
from harness.checkers.base import CheckerError
from harness.guarantees import Guarantee
from harness.history import History
from harness.runstore import SCHEMA_VERSION, RunStore, summarise, utc_now
from harness.targets.masking import scrub

_VERSIONED = ("aurora-proxy-harness", "pytest", "psycopg", "PyMySQL", "mysql-connector-python", "aiomysql",
              "hypothesis")


@dataclasses.dataclass
class TestRecord:
    """What one test did: its guarantees, verdicts, outcome and where its history is."""

    id: str
    guarantees: list[str]
    history: str | None = None
    metrics: str | None = None
    """The proxy metrics sampled during the test (``metrics/<test>.jsonl``), when there were any."""
    verdicts: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    outcome: str = "passed"
    duration_s: float = 0.0
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in _VERSIONED:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


class HarnessRun:
    """The state of one run: store, thresholds, options, and the records of the tests so far."""

    def __init__(self, store: RunStore, *, target: str, engine: str, profile: str,
                 catalogue: Mapping[str, Guarantee] = _guarantees.CATALOGUE, seed: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.target_kind = target
        self.engine = engine
        self.profile = profile
        self.seed = seed
        self.catalogue = catalogue
        self._clock = clock
        self._started = clock()
        self.started_at = utc_now().isoformat(timespec="seconds")
        self.records: dict[str, TestRecord] = {}
        self.selected: list[str] = []
        self.not_in_profile: list[str] = []
        self.server_version: str | None = None
        self.target_error: str | None = None
        self.secrets: list[str] = []
        """The target's passwords, masked in every test report (see the plugin's report hook)."""
        self.warnings: list[str] = []
        """Preflight warnings (a misrouted endpoint), shown in the session header."""
        self.status = "running"
        self.command: str | None = None
        """The command line of the run; masked again with :attr:`secrets` whenever it is written."""

    def record_for(self, test_id: str, guarantees: list[str]) -> TestRecord:
        if test_id not in self.records:
            self.records[test_id] = TestRecord(test_id, list(guarantees))
        return self.records[test_id]

    # -- judging -----------------------------------------------------------------------------
    def judge(self, guarantee_ids: list[str], history: History, context: CheckContext) -> list[Verdict]:
        """Run the checker of each guarantee on the history; a checker bug gives UNKNOWN, not a crash."""
        verdicts = []
        for gid in guarantee_ids:
            try:
                (checker,) = default_checkers([gid])
            except CheckerError as e:
                g = self.catalogue.get(gid)
                verdicts.append(Verdict(gid, Validity.UNKNOWN, None, g.threshold if g else None,
                                        g.unit if g else "", str(e)))
                continue
            verdicts.append(check_safe(checker, history, context))
        return verdicts

    def unknown_verdicts(self, guarantee_ids: list[str], reason: str) -> list[Verdict]:
        out = []
        for gid in guarantee_ids:
            g = self.catalogue.get(gid)
            out.append(Verdict(gid, Validity.UNKNOWN, None, g.threshold if g else None, g.unit if g else "",
                               reason))
        return out

    # -- results -----------------------------------------------------------------------------
    def results(self) -> dict[str, Any]:
        tests = [r.to_dict() for r in self.records.values()]
        catalogue = {gid: {"sentence": g.render(), "family": g.family.value, "threshold": g.threshold,
                           "unit": g.unit, "comparison": g.comparison.value}
                     for gid, g in self.catalogue.items()}
        return {
            "schema": SCHEMA_VERSION,
            "status": self.status,
            "target_error": self.target_error,
            "run": {"target": self.target_kind, "engine": self.engine, "profile": self.profile, "seed": self.seed,
                    "started_at": self.started_at,
                    "finished_at": utc_now().isoformat(timespec="seconds") if self.status != "running" else None,
                    "duration_s": round(self._clock() - self._started, 3),
                    "versions": {**_versions(), "server": self.server_version},
                    "command": scrub(self.command, self.secrets) if self.command else None},
            "thresholds": catalogue,
            "selected": list(self.selected),
            "not_in_profile": list(self.not_in_profile),
            "tests": tests,
            "guarantees": summarise(tests, catalogue, self.selected),
        }

    def save(self) -> None:
        self.store.write_results(self.results())
