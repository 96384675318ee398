"""One history per Locust process, and the merged history the checkers judge.

Every Locust process (the local runner, the master, each worker) records into its own JSON-lines
file under ``history/processes/`` of the run directory, named after its role, host and process id,
so that no two processes ever share a file or a lock.  Its client process ids carry the same tag
(``w-host-4242-c17``), so that ids stay unique once the files are put together.  The master records
the fault events; the workers record the requests.

:func:`merge` puts the files together by time, renumbering the records, and refuses files whose
client processes collide.  The times are monotonic nanoseconds, one clock per machine: files from
processes on one machine merge exactly; files from several machines need their clocks aligned first
(not done here), so a distributed run over several machines is judged from one machine's histories.

``load.json`` (the *manifest*) is written by the master when every worker has sent its last report:
the history file and record count each worker announced, so a missing or short file is noticed
rather than judged as if it were whole (:func:`check_manifest`).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.history import CLOCK_RECORD, History, HistoryError, Op, OpType

PROCESSES_DIR = "history/processes"
MERGED = "history/merged.jsonl"
MANIFEST = "load.json"
SHARED_PROCESSES = frozenset({"nemesis", "harness"})
"""Process names of fault and observation records: any file may hold them, they pair with nothing."""


def process_tag(role: str, *, host: str | None = None, pid: int | None = None) -> str:
    """``<role>-<host>-<pid>``: names one Locust process among all of a run's machines."""
    host = (host or socket.gethostname()).split(".")[0] or "host"
    safe_host = "".join(c if c.isalnum() else "_" for c in host)[:40]
    return f"{role}-{safe_host}-{pid if pid is not None else os.getpid()}"


def process_history_path(run_dir: str | os.PathLike[str], tag: str) -> Path:
    return Path(run_dir) / PROCESSES_DIR / f"{tag}.jsonl"


def history_files(run_dir: str | os.PathLike[str]) -> list[Path]:
    return sorted((Path(run_dir) / PROCESSES_DIR).glob("*.jsonl"))


def merge(paths: Iterable[str | os.PathLike[str]]) -> History:
    """The records of every file in one history, ordered by time (ties keep file order), renumbered.

    Raises :class:`HistoryError` when a client process appears in two files: their invocations and
    completions could not be paired."""
    owner: dict[Any, str] = {}
    tagged: list[tuple[int, int, int, Op]] = []
    torn = 0
    anchor = None
    for file_number, path in enumerate(paths):
        history = History.load(path)
        torn += history.torn_lines
        anchor = anchor or history.anchor  # one machine, one monotonic clock: any file's anchor fits all
        for op in history:
            if op.type in (OpType.INVOKE, OpType.OK, OpType.FAIL, OpType.INFO) \
                    and op.process not in SHARED_PROCESSES:
                first = owner.setdefault(op.process, os.fspath(path))
                if first != os.fspath(path):
                    raise HistoryError(f"process {op.process!r} appears in {first} and in {os.fspath(path)}: "
                                       "each Locust process must tag its clients' ids")
            tagged.append((op.time, file_number, op.index, op))
    tagged.sort(key=lambda t: t[:3])
    ops = [_renumbered(op, n) for n, (_, _, _, op) in enumerate(tagged)]
    return History(ops, torn_lines=torn, anchor=anchor)


def _renumbered(op: Op, index: int) -> Op:
    return Op(index=index, time=op.time, type=op.type, process=op.process, f=op.f, value=op.value,
              endpoint=op.endpoint, node=op.node, error=op.error, phase=op.phase, extra=dict(op.extra))


def write_history(history: History, path: str | os.PathLike[str]) -> None:
    """Write ``history`` as JSON lines (the recorder's format, its clock anchor first when it has one)."""
    with open(path, "w", encoding="utf-8") as fh:
        if history.anchor is not None:
            fh.write(json.dumps(history.anchor.to_record(), separators=(",", ":")) + "\n")
        fh.writelines(json.dumps(op.to_dict(), separators=(",", ":"), allow_nan=False) + "\n" for op in history)


def count_records(path: str | os.PathLike[str]) -> int:
    """Ops in a history file (its clock anchor line is not one)."""
    anchor_start = f'{{"type":"{CLOCK_RECORD}"'
    with open(path, encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip() and not line.startswith(anchor_start))


def check_manifest(run_dir: str | os.PathLike[str]) -> list[str]:
    """Problems that make the run's histories incomplete: a worker that never sent its last report,
    or whose file holds fewer records than it announced.  Empty when all is whole (or no workers)."""
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        return [f"no {MANIFEST}: the Locust master did not finish (its workers' last reports are unknown)"]
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        return [f"cannot read {MANIFEST}: {e}"]
    problems = [f"worker {w} sent no last report within {manifest.get('wait_s', '?')} s"
                for w in manifest.get("missing_workers", [])]
    for worker, report in sorted(manifest.get("workers", {}).items()):
        if report.get("tag") is None:  # it never started a user, so it recorded nothing
            continue
        file = process_history_path(run_dir, report["tag"])
        if not file.exists():
            problems.append(f"worker {worker}: its history {file.name} is not in the run directory")
            continue
        found = count_records(file)
        if found < report["records"]:
            problems.append(f"worker {worker}: {file.name} holds {found} records, it announced {report['records']}")
    return problems
