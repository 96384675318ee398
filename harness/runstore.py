"""The run store: one directory per certification run, holding everything a report is built from.

Layout of a run directory::

    target.json          the target's description (endpoints, capabilities, instances)
    history/<test>.jsonl one history per test, written while the test runs
    metrics/<test>.jsonl the proxy metrics sampled during a test, when the target reports any
    results.json         every test with its verdicts, the per-guarantee summary, thresholds, versions
    junit.xml            one test case per guarantee (rendered from results.json by ``reports``)
    proxy.log            the reference proxy's log, copied before the target is torn down

Runs live under ``runs/<UTC timestamp>-<target>-<engine>/`` unless a directory is given, and
``runs/latest`` points at the newest.  Reports read only these files, so a report can be rebuilt
long after the run, and two runs can be compared file by file.

``results.json`` is rewritten atomically after every test, so a run that dies part-way still
leaves the verdicts it reached.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.redaction import redact

SCHEMA_VERSION = 1
DEFAULT_ROOT = "runs"
LATEST_LINK = "latest"

Now = Callable[[], _dt.datetime]
"""Returns the current UTC time (injected so tests get exact directory names)."""

_RANK = {"true": 0, "unknown": 1, "false": 2}


class RunStoreError(Exception):
    """Root of the run store's errors: an unusable directory, a damaged results file."""


def utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def default_run_dir(root: str | os.PathLike[str], target: str, engine: str, now: _dt.datetime) -> Path:
    """``<root>/<YYYYmmddTHHMMSSZ>-<target>-<engine>``: sorts by time, says what was tested."""
    for name, value in (("target", target), ("engine", engine)):
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", value or ""):
            raise RunStoreError(f"{name} {value!r} cannot be part of a directory name")
    stamp = now.astimezone(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(root) / f"{stamp}-{target}-{engine}"


def history_file_name(test_id: str) -> str:
    """A file name for a pytest node id: readable, unique per id, free of path separators."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", test_id.replace("::", "__")).strip("._") or "test"
    if len(safe) > 150:
        import hashlib

        safe = safe[:130] + "-" + hashlib.sha1(test_id.encode()).hexdigest()[:12]
    return safe + ".jsonl"


def write_json_atomically(path: Path, data: Any) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it over: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=False, allow_nan=False, default=str)
            fh.write("\n")
        os.chmod(tmp, 0o644)  # like any other file of the run: readable by whoever collects the artifacts
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class RunStore:
    """One run directory.  Create a new one with :meth:`create`; open an existing one with :meth:`open`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def create(cls, run_dir: str | os.PathLike[str] | None = None, *, target: str, engine: str,
               root: str | os.PathLike[str] = DEFAULT_ROOT, now: Now = utc_now) -> RunStore:
        """Make a fresh run directory (an existing one must be empty) and point ``latest`` at it.

        The ``latest`` link is only maintained for runs placed under ``root`` by default: a
        directory the user named is theirs to organise.
        """
        chosen = Path(run_dir) if run_dir is not None else default_run_dir(root, target, engine, now())
        if run_dir is None and chosen.exists():
            # Two runs in the same second: add a counter rather than mixing them.
            for n in range(2, 100):
                candidate = chosen.with_name(f"{chosen.name}-{n}")
                if not candidate.exists():
                    chosen = candidate
                    break
        if chosen.exists() and (not chosen.is_dir() or any(chosen.iterdir())):
            raise RunStoreError(f"run directory {os.fspath(chosen)!r} exists and is not empty; "
                                "choose another or remove it")
        try:
            (chosen / "history").mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunStoreError(f"cannot create run directory {os.fspath(chosen)!r}: {e.strerror}") from e
        store = cls(chosen)
        if run_dir is None:
            store.point_latest(Path(root))
        return store

    @classmethod
    def open(cls, run_dir: str | os.PathLike[str]) -> RunStore:
        path = Path(run_dir)
        if not path.is_dir():
            raise RunStoreError(f"no run directory at {os.fspath(path)!r}")
        return cls(path)

    def point_latest(self, root: str | os.PathLike[str]) -> None:
        """Make ``<root>/latest`` a relative symlink to this run (atomically replacing the old one)."""
        root = Path(root)
        if self.path.parent.resolve() != root.resolve():
            return  # the link is relative: only runs directly under root get it
        link = root / LATEST_LINK
        tmp = root / f".{LATEST_LINK}.{os.getpid()}"
        try:
            if tmp.is_symlink():
                tmp.unlink()
            tmp.symlink_to(self.path.name)
            os.replace(tmp, link)
        except OSError:
            pass  # a filesystem without symlinks: the run itself is still complete

    # -- paths ------------------------------------------------------------------------------
    @property
    def results_path(self) -> Path:
        return self.path / "results.json"

    @property
    def target_path(self) -> Path:
        return self.path / "target.json"

    @property
    def junit_path(self) -> Path:
        return self.path / "junit.xml"

    def history_path(self, test_id: str) -> Path:
        return self.path / "history" / history_file_name(test_id)

    def metrics_path(self, test_id: str) -> Path:
        return self.path / "metrics" / history_file_name(test_id)

    def relative(self, path: Path) -> str:
        return os.fspath(path.relative_to(self.path))

    # -- writing ----------------------------------------------------------------------------
    def write_target(self, description: Mapping[str, Any]) -> None:
        """Keep the target's description, with every secret replaced (passwords, secret keys, tokens:
        see :mod:`harness.redaction`): run directories get shared."""
        write_json_atomically(self.target_path, redact(dict(description)))

    def write_results(self, results: Mapping[str, Any]) -> None:
        write_json_atomically(self.results_path, dict(results))

    def copy_log(self, source: str | os.PathLike[str] | None, name: str) -> Path | None:
        """Copy a log file into the run (``None`` when it does not exist: nothing to keep)."""
        if source is None or not os.path.exists(source):
            return None
        dest = self.path / name
        shutil.copyfile(source, dest)
        return dest

    # -- reading ----------------------------------------------------------------------------
    def load_results(self) -> dict[str, Any]:
        try:
            with open(self.results_path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            raise RunStoreError(f"{os.fspath(self.results_path)!r} does not exist: the run recorded "
                                "no results (did it start?)") from None
        except (OSError, json.JSONDecodeError) as e:
            raise RunStoreError(f"cannot read {os.fspath(self.results_path)!r}: {e}") from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA_VERSION:
            raise RunStoreError(f"{os.fspath(self.results_path)!r} is not a results file of schema "
                                f"{SCHEMA_VERSION}")
        return data

    def load_target(self) -> dict[str, Any] | None:
        try:
            with open(self.target_path, encoding="utf-8") as fh:
                return json.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as e:
            raise RunStoreError(f"cannot read {os.fspath(self.target_path)!r}: {e}") from None


# -- the per-guarantee summary ----------------------------------------------------------------------
def summarise(tests: Iterable[Mapping[str, Any]], catalogue: Mapping[str, Mapping[str, Any]],
              selected: Iterable[str]) -> dict[str, dict[str, Any]]:
    """One entry per selected guarantee, combining the verdicts every test reached on it.

    Combining ranks false over unknown over true (as the checkers do); the entry shows the figure
    and reason of the deciding verdict and names the test it came from.  A selected guarantee that
    no test judged is unknown: nothing proved it.

    A test that was skipped (the target cannot do what it needs) ran no workload: its unknown
    verdicts count only when no test that ran reached a verdict on the guarantee, and otherwise the
    reason says which tests could not run.  So a routing guarantee judged by the routing suite is
    not made unknown by a failover test the target cannot carry out.
    """
    by_id: dict[str, list[tuple[str, Mapping[str, Any]]]] = {g: [] for g in selected}
    not_run: dict[str, list[str]] = {}
    ran = [t for t in tests if t.get("outcome") != "skipped"]
    judged_by_a_run = {v["guarantee_id"] for t in ran for v in t.get("verdicts", [])}
    for test in tests:
        skipped = test.get("outcome") == "skipped"
        for verdict in test.get("verdicts", []):
            gid = verdict["guarantee_id"]
            if skipped and gid in judged_by_a_run and verdict.get("valid") == "unknown":
                not_run.setdefault(gid, []).append(test["id"])
                continue
            by_id.setdefault(gid, []).append((test["id"], verdict))
    summary: dict[str, dict[str, Any]] = {}
    for gid, found in by_id.items():
        info = catalogue.get(gid, {})
        entry: dict[str, Any] = {"sentence": info.get("sentence"), "family": info.get("family"),
                                 "threshold": info.get("threshold"), "unit": info.get("unit", ""),
                                 "comparison": info.get("comparison")}
        if not found:
            entry.update(valid="unknown", figure=None, reason="no test in this run judged it",
                         decided_by=None, tests=[], evidence=[])
        else:
            test_id, deciding = max(found, key=lambda tv: _RANK.get(tv[1]["valid"], 1))
            reason = deciding.get("reason", "")
            if gid in not_run:
                reason += f" (not judged in {len(not_run[gid])} skipped tests: {', '.join(not_run[gid])})"
            entry.update(valid=deciding["valid"], figure=deciding.get("figure"),
                         threshold=deciding.get("threshold", entry["threshold"]),
                         unit=deciding.get("unit", entry["unit"]), reason=reason,
                         decided_by=test_id, tests=[t for t, _ in found],
                         evidence=list(deciding.get("evidence", [])))
        summary[gid] = entry
    return summary


CERTIFIED, NOT_CERTIFIED, INCOMPLETE, NOT_CARRIED_OUT = "CERTIFIED", "NOT CERTIFIED", "INCOMPLETE", "NOT CARRIED OUT"
EXIT_CERTIFIED, EXIT_FALSE, EXIT_NOT_CARRIED_OUT, EXIT_INCOMPLETE = 0, 1, 2, 3


@dataclasses.dataclass(frozen=True)
class Certification:
    """What a run came to, in one word and the reasons behind it.

    * CERTIFIED - every selected guarantee was judged true and no check failed;
    * NOT CERTIFIED - a guarantee was judged false, or a check outside the catalogue failed;
    * INCOMPLETE - nothing was false, but some guarantees could not be judged (unknown);
    * NOT CARRIED OUT - the run did not complete (the target never came up, it was interrupted).

    A false guarantee outranks unknown ones: one broken promise is enough to refuse the certificate.
    """

    headline: str
    false: tuple[tuple[str, str], ...] = ()
    """(guarantee id, reason) of each false guarantee."""
    unknown: tuple[tuple[str, str], ...] = ()
    """(guarantee id, reason) of each unknown guarantee."""
    failed_checks: tuple[str, ...] = ()
    """Tests that failed or errored without a false verdict to show for it."""
    status: str | None = None

    def exit_status(self, *, allow_unknown: bool = False) -> int:
        """0 certified, 1 something false, 2 not carried out, 3 incomplete (0 with ``allow_unknown``)."""
        return {CERTIFIED: EXIT_CERTIFIED, NOT_CERTIFIED: EXIT_FALSE, NOT_CARRIED_OUT: EXIT_NOT_CARRIED_OUT,
                INCOMPLETE: EXIT_CERTIFIED if allow_unknown else EXIT_INCOMPLETE}[self.headline]

    def problems(self) -> list[str]:
        """One line per reason the run is not certified (empty when it is)."""
        out = [f"{gid} is false: {reason}" for gid, reason in self.false]
        out += [f"check {test} failed" for test in self.failed_checks]
        out += [f"{gid} is unknown: {reason}" for gid, reason in self.unknown]
        if self.headline == NOT_CARRIED_OUT:
            out.insert(0, f"the run did not complete ({self.status})")
        return out

    def summary(self) -> str:
        """The headline with its counts, e.g. ``INCOMPLETE: 2 guarantees unknown``."""
        if self.headline == NOT_CARRIED_OUT:
            return f"{NOT_CARRIED_OUT}: the run did not complete ({self.status})"
        if self.headline == NOT_CERTIFIED:
            parts = []
            if self.false:
                parts.append(f"{len(self.false)} false ({', '.join(g for g, _ in self.false)})")
            if self.failed_checks:
                parts.append(f"{len(self.failed_checks)} checks failed")
            if self.unknown:
                parts.append(f"{len(self.unknown)} unknown")
            return f"{NOT_CERTIFIED}: " + "; ".join(parts)
        if self.headline == INCOMPLETE:
            return f"{INCOMPLETE}: {len(self.unknown)} guarantee{'s' if len(self.unknown) != 1 else ''} unknown"
        return CERTIFIED

    def to_dict(self) -> dict[str, Any]:
        return {"headline": self.headline, "summary": self.summary(),
                "false": [{"id": g, "reason": r} for g, r in self.false],
                "unknown": [{"id": g, "reason": r} for g, r in self.unknown],
                "failed_checks": list(self.failed_checks)}


def certification(results: Mapping[str, Any]) -> Certification:
    """The :class:`Certification` of a run's ``results.json``."""
    guarantees = results.get("guarantees", {})
    false = tuple((gid, e.get("reason", "")) for gid, e in guarantees.items() if e["valid"] == "false")
    unknown = tuple((gid, e.get("reason", "")) for gid, e in guarantees.items() if e["valid"] == "unknown")
    failed = tuple(t["id"] for t in results.get("tests", [])
                   if t.get("outcome") in ("failed", "error")
                   and not any(v["valid"] == "false" for v in t.get("verdicts", [])))
    status = results.get("status")
    if status not in (None, "complete"):
        headline = NOT_CARRIED_OUT
    elif false or failed:
        headline = NOT_CERTIFIED
    elif unknown or not guarantees:
        headline = INCOMPLETE
        if not guarantees:
            unknown = (("-", "no guarantee was selected"),)
    else:
        headline = CERTIFIED
    return Certification(headline, false, unknown, failed, status)


def overall(results: Mapping[str, Any], *, strict: bool) -> tuple[bool, list[str]]:
    """Whether a run passes, and why not: certified passes; incomplete passes unless ``strict``."""
    c = certification(results)
    ok = c.headline == CERTIFIED or (c.headline == INCOMPLETE and not strict)
    return ok, ([] if ok else c.problems())