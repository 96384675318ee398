"""One history per Locust process, and the merged history the checkers judge.

Every Locust process (the local runner, the master, each worker) records into its own JSON-lines
file under ``history/processes/`` of the run directory, named after its role, host and process id,
so that no two processes ever share a file or a lock.  Its client process ids carry the same tag
(``w-host-4242-c17``), so that ids stay unique once the files are put together.  The master records
the fault events; the workers record the requests.

:func:`merge` puts the files together by time, renumbering the records, and refuses files whose
client processes collide.  The times are monotonic nanoseconds, one clock per machine: files from
processes on one machine merge exactly; files from several machines need their clocks aligned first
(see below).

``load.json`` (the *manifest*) is written by the master when every worker has sent its last report:
the history file and record count each worker announced, so a missing or short file is noticed
rather than judged as if it were whole (:func:`check_manifest`).

Workers on other machines: the master leaves a marker file in the run directory and names it in its
last call to the workers; a worker that cannot see the marker does not share the master's file
system, so it sends its history through Locust's messages, in pieces (:func:`history_pieces`), and
the master puts them together (:class:`Shipments`), checking their digest.  A worker whose boot id
differs from the master's runs on another monotonic clock: the master takes the difference between
its clock when the last report arrived and the worker's when it was sent as that worker's offset
(an overestimate by the message's transit, milliseconds on a LAN), and :func:`merge` shifts the
worker's records by it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import secrets
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
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


def merge(paths: Iterable[str | os.PathLike[str]], offsets: Mapping[str, int] | None = None) -> History:
    """The records of every file in one history, ordered by time (ties keep file order), renumbered.

    ``offsets`` maps a file's tag (its name without ``.jsonl``) to nanoseconds added to its times: a
    worker on another machine's clock (:func:`clock_offsets`).  Raises :class:`HistoryError` when a
    client process appears in two files: their invocations and completions could not be paired."""
    offsets = offsets or {}
    owner: dict[Any, str] = {}
    tagged: list[tuple[int, int, int, Op]] = []
    torn = 0
    anchor = None
    for file_number, path in enumerate(paths):
        history = History.load(path)
        torn += history.torn_lines
        shift = offsets.get(Path(path).stem, 0)
        if not shift:  # on the master's monotonic clock: any such file's anchor fits the merged history
            anchor = anchor or history.anchor
        for op in history:
            if shift:
                op = dataclasses.replace(op, time=op.time + shift)
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


TAG_PATTERN = re.compile(r"(local|master|worker)-[A-Za-z0-9_]{1,40}-[0-9]{1,10}")
"""What :func:`process_tag` makes; a tag that arrives in a message must look like it (it names a file)."""
PIECE_CHARS = 256 * 1024
"""Characters of history per message: small enough for Locust's messages, few enough per run."""
MARKER_PREFIX = ".master-"


def boot_id() -> str:
    """This machine's boot id: processes with the same one share one monotonic clock."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return f"host:{socket.gethostname()}"


def leave_marker(run_dir: str | os.PathLike[str]) -> str:
    """Make a file only a process sharing this file system can see; returns its name."""
    name = MARKER_PREFIX + secrets.token_hex(8)
    path = Path(run_dir) / "history" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return name


def sees_marker(run_dir: str | os.PathLike[str], name: str) -> bool:
    return bool(name) and name.startswith(MARKER_PREFIX) and (Path(run_dir) / "history" / name).exists()


def remove_markers(run_dir: str | os.PathLike[str]) -> None:
    for marker in (Path(run_dir) / "history").glob(MARKER_PREFIX + "*"):
        marker.unlink(missing_ok=True)


def history_pieces(path: str | os.PathLike[str], size: int = PIECE_CHARS) -> Iterator[str]:
    """The file's text in pieces of at most ``size`` characters, cut at line ends where a line allows."""
    with open(path, encoding="utf-8") as fh:
        buffered = ""
        for line in fh:
            if buffered and len(buffered) + len(line) > size:
                yield buffered
                buffered = ""
            buffered += line
        if buffered:
            yield buffered


def ship(path: str | os.PathLike[str], send: Callable[[int, str], None]) -> tuple[int, str]:
    """Hand the history at ``path`` to ``send(seq, piece)`` piece by piece; returns the number of
    pieces and the SHA-256 of their text, which :meth:`Shipments.finish` checks."""
    h = hashlib.sha256()
    count = 0
    for seq, piece in enumerate(history_pieces(path)):
        send(seq, piece)
        h.update(piece.encode("utf-8"))
        count = seq + 1
    return count, h.hexdigest()


class Shipments:
    """The master's side of histories sent in pieces: each piece is appended to ``<tag>.jsonl.part``
    as it arrives; :meth:`finish` checks count and digest, then puts the file in place."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self._next: dict[str, int] = {}
        self._digests: dict[str, Any] = {}
        self.problems: dict[str, str] = {}

    def _part(self, tag: str) -> Path:
        return process_history_path(self.run_dir, tag).with_suffix(".jsonl.part")

    def add(self, tag: str, seq: int, text: str) -> None:
        if not TAG_PATTERN.fullmatch(str(tag)):
            self.problems[str(tag)[:80]] = "a history piece named no valid process tag"
            return
        if tag in self.problems:
            return
        expected = self._next.get(tag, 0)
        if seq != expected:
            self.problems[tag] = f"history piece {seq} arrived when piece {expected} was expected"
            return
        part = self._part(tag)
        part.parent.mkdir(parents=True, exist_ok=True)
        with open(part, "w" if seq == 0 else "a", encoding="utf-8") as fh:
            fh.write(text)
        self._digests.setdefault(tag, hashlib.sha256()).update(text.encode("utf-8"))
        self._next[tag] = seq + 1

    def finish(self, tag: str, pieces: int, sha256: str) -> str | None:
        """Put the shipped history in place; the problem (kept in :attr:`problems`) when it is not whole."""
        if tag in self.problems:
            return self.problems[tag]
        part = self._part(tag)
        got = self._next.get(tag, 0)
        if got != pieces:
            self.problems[tag] = f"{got} of {pieces} history pieces arrived"
        elif pieces and self._digests[tag].hexdigest() != sha256:
            self.problems[tag] = "the shipped history does not match its digest"
        if tag in self.problems:
            part.unlink(missing_ok=True)
            return self.problems[tag]
        destination = process_history_path(self.run_dir, tag)
        if pieces:
            os.replace(part, destination)
        else:  # a worker that recorded nothing still has a (empty) history
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.touch()
        return None


def clock_offsets(run_dir: str | os.PathLike[str]) -> dict[str, int]:
    """Per worker tag, the nanoseconds its records are shifted by when merged (workers on another
    machine's clock, as the manifest records them)."""
    try:
        manifest = json.loads((Path(run_dir) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return {r["tag"]: int(r["clock_offset_ns"]) for r in manifest.get("workers", {}).values()
            if r.get("tag") and r.get("clock_offset_ns")}


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
        if report.get("shipment_problem"):
            problems.append(f"worker {worker}: its history did not arrive whole: {report['shipment_problem']}")
            continue
        file = process_history_path(run_dir, report["tag"])
        if not file.exists():
            problems.append(f"worker {worker}: its history {file.name} is not in the run directory")
            continue
        found = count_records(file)
        if found < report["records"]:
            problems.append(f"worker {worker}: {file.name} holds {found} records, it announced {report['records']}")
    return problems
