"""Operations and fault events of one run, recorded as they happen and read back for checking.

The model is Jepsen's.  A client (a *process*: one client connection, or one logical worker that
takes a fresh process id after a reconnect) records an ``invoke`` before it sends a request and
exactly one completion afterwards:

* ``ok``   - the request took effect and its result is known;
* ``fail`` - the request certainly did not take effect (a *definite* error);
* ``info`` - the outcome is unknown: the connection broke, a COMMIT timed out, the proxy cancelled
  a statement during failover.  Checkers must accept either outcome for these.

Faults (Jepsen's nemesis) write ``fault`` events with a ``phase`` of ``start`` or ``end`` into the
same history, and the harness may write ``event`` records for things it observed that are not
client requests, such as which instance it saw as writer (``f="roles"``).

Every record is one JSON object per line.  The :class:`Recorder` appends and flushes each line as it
is recorded, under a lock, so that several threads and asyncio tasks can share one recorder and a
run that dies still leaves everything it recorded on disk.  A line cut short by such a death is
skipped by :meth:`History.load`, which counts it in ``torn_lines`` instead of failing.

Times are monotonic nanoseconds from an injected clock, so tests can build exact histories and a
recorded run never sees the wall clock jump.  Durations are differences of these times.  To line a
history up with the proxy's and the database's logs, which print wall-clock times, a recorder that
writes a file starts it with one ``clock`` record (not an op: it has no index and checkers never see
it) pairing the wall clock with the monotonic clock at the same instant; :class:`ClockAnchor` turns
any monotonic time of the file into wall-clock time.  Histories written before the anchor existed
load with ``anchor = None``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Self, overload

from harness.errors import HarnessError

log = logging.getLogger(__name__)

Clock = Callable[[], int]
"""Returns monotonic time in nanoseconds (``time.monotonic_ns`` in real runs)."""

WallClock = Callable[[], int]
"""Returns wall-clock time in nanoseconds since the Unix epoch (``time.time_ns`` in real runs)."""

CLOCK_RECORD = "clock"
"""The ``type`` of the anchor line that opens a history file."""


class HistoryError(HarnessError):
    """Root of errors about histories: a malformed record, a broken file, a misused recorder."""


class ManualClock:
    """A clock moved by hand, for building exact histories in tests and simulations."""

    def __init__(self, start_ns: int = 0) -> None:
        self.now_ns = start_ns

    def __call__(self) -> int:
        return self.now_ns

    def at(self, seconds: float) -> ManualClock:
        """Set the time to ``seconds`` since zero (never backwards)."""
        t = round(seconds * 1e9)
        if t < self.now_ns:
            raise HistoryError(f"cannot move the clock back from {self.now_ns} ns to {t} ns")
        self.now_ns = t
        return self

    def advance(self, seconds: float) -> ManualClock:
        return self.at(self.now_ns / 1e9 + seconds)


class OpType(str, enum.Enum):
    """What kind of record a line is; the values are the strings written to disk."""

    INVOKE = "invoke"
    OK = "ok"
    FAIL = "fail"
    INFO = "info"
    FAULT = "fault"
    EVENT = "event"

    @property
    def is_completion(self) -> bool:
        return self in (OpType.OK, OpType.FAIL, OpType.INFO)


class Phase(str, enum.Enum):
    """Whether a fault event marks the moment a fault began or the moment it was healed."""

    START = "start"
    END = "end"


@dataclasses.dataclass(frozen=True)
class OpError:
    """An error a client saw, classified by whether it proves the request had no effect.

    ``code`` is a PostgreSQL SQLSTATE (``"40001"``) or a MySQL errno as text (``"9501"``), or a
    short client-side name (``"timeout"``, ``"connection-reset"``) when no server code exists.
    """

    code: str | None
    text: str
    definite: bool

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "text": self.text, "definite": self.definite}

    @classmethod
    def from_dict(cls, d: Any) -> OpError:
        if not isinstance(d, dict) or "text" not in d or "definite" not in d:
            raise HistoryError(f"an error must be an object with 'text' and 'definite', got {d!r}")
        return cls(code=d.get("code"), text=str(d["text"]), definite=bool(d["definite"]))


@dataclasses.dataclass(frozen=True)
class Op:
    """One record of a history.

    For client records ``f`` is the operation kind ("write", "read", "connect", "txn", ...).  For
    ``fault`` records ``f`` is the fault's name, ``phase`` says start or end and ``value`` holds the
    fault's parameters.  For ``event`` records ``f`` names what was observed and ``value`` holds it.

    ``endpoint`` is how the request was addressed ("writer", "reader", "direct:instance-2");
    ``node`` is the instance that actually served it, when the client could tell.
    """

    index: int
    time: int
    type: OpType
    process: int | str | None
    f: str
    value: Any = None
    endpoint: str | None = None
    node: str | None = None
    error: OpError | None = None
    phase: Phase | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def params(self) -> dict[str, Any]:
        """A fault's parameters (its ``value``), as a dict even when none were given."""
        return self.value if isinstance(self.value, dict) else {}

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to disk; keys that carry nothing are left out."""
        d: dict[str, Any] = {"index": self.index, "time": self.time, "type": self.type.value,
                             "process": self.process, "f": self.f}
        if self.value is not None:
            d["value"] = self.value
        if self.endpoint is not None:
            d["endpoint"] = self.endpoint
        if self.node is not None:
            d["node"] = self.node
        if self.error is not None:
            d["error"] = self.error.to_dict()
        if self.phase is not None:
            d["phase"] = self.phase.value
        if self.extra:
            d["extra"] = self.extra
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Op:
        """Rebuild an op from its JSON object, with a clear error for anything malformed."""
        if not isinstance(d, dict):
            raise HistoryError(f"a record must be a JSON object, got {type(d).__name__}")
        try:
            index, t, f = d["index"], d["time"], d["f"]
            op_type = OpType(d["type"])
        except KeyError as e:
            raise HistoryError(f"record is missing {e.args[0]!r}: {d!r}") from None
        except ValueError:
            raise HistoryError(f"unknown record type {d.get('type')!r}") from None
        if not isinstance(index, int) or not isinstance(t, int) or not isinstance(f, str):
            raise HistoryError(f"index and time must be integers and f a string: {d!r}")
        error = OpError.from_dict(d["error"]) if d.get("error") is not None else None
        try:
            phase = Phase(d["phase"]) if d.get("phase") is not None else None
        except ValueError:
            raise HistoryError(f"unknown fault phase {d.get('phase')!r}") from None
        extra = d.get("extra") or {}
        if not isinstance(extra, dict):
            raise HistoryError(f"extra must be an object: {d!r}")
        return cls(index=index, time=t, type=op_type, process=d.get("process"), f=f,
                   value=d.get("value"), endpoint=d.get("endpoint"), node=d.get("node"),
                   error=error, phase=phase, extra=extra)

    def summary(self) -> dict[str, Any]:
        """The op as evidence in a verdict (same shape as on disk)."""
        return self.to_dict()


@dataclasses.dataclass(frozen=True)
class ClockAnchor:
    """One instant read on both clocks: the wall clock (epoch ns) and the history's monotonic clock.

    Wall-clock time of a record = ``wall_ns + (record.time - monotonic_ns)``.  The monotonic clock
    keeps measuring durations (the wall clock may be stepped by NTP during a run); the anchor only
    places the whole history on the calendar, to within the drift of the two clocks over the run.
    """

    wall_ns: int
    monotonic_ns: int

    def wall_ns_of(self, monotonic_ns: int) -> int:
        """The wall-clock time (epoch ns) of a monotonic time of the same history."""
        return self.wall_ns + (monotonic_ns - self.monotonic_ns)

    def to_record(self) -> dict[str, Any]:
        """The anchor line of a history file."""
        return {"type": CLOCK_RECORD, "wall_ns": self.wall_ns, "time": self.monotonic_ns}

    @classmethod
    def from_record(cls, d: dict[str, Any]) -> ClockAnchor:
        wall, mono = d.get("wall_ns"), d.get("time")
        if not isinstance(wall, int) or not isinstance(mono, int):
            raise HistoryError(f"a clock record needs integer wall_ns and time: {d!r}")
        return cls(wall_ns=wall, monotonic_ns=mono)


@dataclasses.dataclass(frozen=True)
class FaultWindow:
    """The time a fault was active: from its start event to its end event (``None`` = never healed)."""

    name: str
    start: int
    end: int | None
    params: dict[str, Any]
    start_op: Op
    end_op: Op | None

    def contains(self, t: int) -> bool:
        return self.start <= t and (self.end is None or t <= self.end)

    def overlaps(self, lo: int, hi: int) -> bool:
        """Whether [lo, hi] and this window share any instant."""
        return lo <= (self.end if self.end is not None else hi) and hi >= self.start


class History(Sequence[Op]):
    """An immutable, index-ordered list of ops with the queries checkers need.

    Build one with :meth:`load` (from a recorder's file), :meth:`Recorder.history` or directly from
    ops (tests build small literal histories this way).
    """

    def __init__(self, ops: Iterable[Op] = (), *, torn_lines: int = 0, anchor: ClockAnchor | None = None) -> None:
        self._ops: tuple[Op, ...] = tuple(sorted(ops, key=lambda o: o.index))
        self.torn_lines = torn_lines
        """Lines that could not be parsed at the end of the file (a run that died mid-write)."""
        self.anchor = anchor
        """Where the monotonic times sit on the wall clock; ``None`` for a history written without one."""
        self._pairs: tuple[tuple[Op, Op | None], ...] | None = None

    # -- Sequence ---------------------------------------------------------------------------
    @overload
    def __getitem__(self, i: int) -> Op: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Op]: ...

    def __getitem__(self, i):
        return self._ops[i]

    def __len__(self) -> int:
        return len(self._ops)

    def __iter__(self) -> Iterator[Op]:
        return iter(self._ops)

    def __repr__(self) -> str:
        return f"History({len(self._ops)} ops, torn_lines={self.torn_lines})"

    # -- persistence -------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> History:
        """Read a JSON-lines history.

        A last line that is not valid JSON (the writer died mid-line) is skipped and counted in
        ``torn_lines``; a bad line anywhere else means the file is damaged and raises
        :class:`HistoryError` naming the line.  The first ``clock`` record becomes :attr:`anchor`.
        """
        try:
            with open(path, encoding="utf-8") as fh:
                lines = fh.read().split("\n")
        except OSError as e:
            raise HistoryError(f"cannot read history {os.fspath(path)!r}: {e.strerror}") from e
        while lines and not lines[-1].strip():
            lines.pop()
        ops: list[Op] = []
        torn = 0
        anchor: ClockAnchor | None = None
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines):
                    torn += 1
                    continue
                raise HistoryError(f"{os.fspath(path)}:{number}: not a JSON record") from None
            try:
                if isinstance(raw, dict) and raw.get("type") == CLOCK_RECORD:
                    anchor = anchor or ClockAnchor.from_record(raw)
                else:
                    ops.append(Op.from_dict(raw))
            except HistoryError as e:
                raise HistoryError(f"{os.fspath(path)}:{number}: {e}") from None
        if torn:
            log.warning("%s: skipped a torn last line (the recording process died mid-write)",
                        os.fspath(path))
        return cls(ops, torn_lines=torn, anchor=anchor)

    # -- queries -----------------------------------------------------------------------------
    def ops(self, *, f: str | Iterable[str] | None = None,
            type: OpType | str | Iterable[OpType | str] | None = None,
            process: int | str | None = None, endpoint: str | None = None) -> list[Op]:
        """Ops matching every filter given (``f`` and ``type`` accept one value or several)."""
        fs = _as_set(f)
        types = {OpType(t) for t in _as_set(type)} if type is not None else None
        return [o for o in self._ops
                if (fs is None or o.f in fs)
                and (types is None or o.type in types)
                and (process is None or o.process == process)
                and (endpoint is None or o.endpoint == endpoint)]

    def completed(self) -> list[Op]:
        """Every completion (ok, fail, info) in index order."""
        return [o for o in self._ops if o.type.is_completion]

    def pairs(self) -> list[tuple[Op, Op | None]]:
        """Each invocation with its completion, in invocation order.

        A process has at most one request outstanding, so a completion belongs to the latest
        invocation of the same process.  An invocation that never completed (the run ended first)
        is paired with ``None``; checkers treat it like ``info``.  Computed once per history.
        """
        if self._pairs is None:
            self._pairs = self._pair_up()
        return list(self._pairs)

    def _pair_up(self) -> tuple[tuple[Op, Op | None], ...]:
        open_by_process: dict[Any, int] = {}
        result: list[list[Any]] = []
        for o in self._ops:
            if o.type is OpType.INVOKE:
                if o.process in open_by_process:
                    raise HistoryError(f"process {o.process!r} invoked op {o.index} while op "
                                       f"{result[open_by_process[o.process]][0].index} was still open")
                open_by_process[o.process] = len(result)
                result.append([o, None])
            elif o.type.is_completion:
                slot = open_by_process.pop(o.process, None)
                if slot is None:
                    raise HistoryError(f"completion {o.index} of process {o.process!r} has no invocation")
                result[slot][1] = o
        return tuple((inv, comp) for inv, comp in result)

    def faults(self, name: str | Iterable[str] | None = None) -> list[Op]:
        """Fault start/end events, optionally only those with the given name(s)."""
        names = _as_set(name)
        return [o for o in self._ops if o.type is OpType.FAULT and (names is None or o.f in names)]

    def events(self, f: str | Iterable[str] | None = None) -> list[Op]:
        """Harness observations (type ``event``), optionally only some kinds."""
        fs = _as_set(f)
        return [o for o in self._ops if o.type is OpType.EVENT and (fs is None or o.f in fs)]

    def fault_windows(self, name: str | Iterable[str] | None = None) -> list[FaultWindow]:
        """Start-to-end intervals of faults; a fault with a start and no end is open-ended."""
        windows: list[FaultWindow] = []
        open_starts: dict[str, list[Op]] = {}
        for o in self.faults(name):
            if o.phase is Phase.START:
                open_starts.setdefault(o.f, []).append(o)
            elif o.phase is Phase.END:
                starts = open_starts.get(o.f)
                if not starts:
                    raise HistoryError(f"fault {o.f!r} ended (op {o.index}) without having started")
                s = starts.pop(0)
                windows.append(FaultWindow(o.f, s.time, o.time, {**s.params, **o.params}, s, o))
        for starts in open_starts.values():
            windows.extend(FaultWindow(s.f, s.time, None, dict(s.params), s, None) for s in starts)
        return sorted(windows, key=lambda w: w.start)

    def between(self, start: int, end: int | None) -> list[Op]:
        """Ops whose time lies in [start, end] (``end=None``: to the end of the history)."""
        return [o for o in self._ops if o.time >= start and (end is None or o.time <= end)]

    @property
    def end_time(self) -> int | None:
        """Time of the last record, i.e. how long the run was observed."""
        return self._ops[-1].time if self._ops else None


class Recorder:
    """Appends ops to a history as they happen; safe to share between threads and asyncio tasks.

    Each record is written and flushed while a lock is held (never across an ``await``), so the
    file order equals index order and a crash loses nothing already recorded.  Pass ``path=None``
    to keep the history in memory only.  The file must not exist yet: appending to an old run's
    history would mix two runs.  The file's first line is the :class:`ClockAnchor` read when the
    recorder is made (``wall_clock`` is injected like ``clock``).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, clock: Clock = time.monotonic_ns,
                 fsync: bool = False, wall_clock: WallClock = time.time_ns) -> None:
        self._clock = clock
        self.anchor = ClockAnchor(wall_ns=wall_clock(), monotonic_ns=clock())
        self._lock = threading.Lock()
        self._ops: list[Op] = []
        self._open: dict[Any, Op] = {}
        self._fsync = fsync
        self._fh = None
        self.path = os.fspath(path) if path is not None else None
        if path is not None:
            try:
                self._fh = open(path, "x", encoding="utf-8")  # noqa: SIM115 - open for the recorder's life
            except FileExistsError:
                raise HistoryError(f"history file {os.fspath(path)!r} already exists") from None
            except OSError as e:
                raise HistoryError(f"cannot create history {os.fspath(path)!r}: {e.strerror}") from e
            self._fh.write(json.dumps(self.anchor.to_record(), separators=(",", ":")) + "\n")
            self._fh.flush()

    # -- client side -------------------------------------------------------------------------
    def invoke(self, process: int | str, f: str, value: Any = None, *, endpoint: str | None = None,
               extra: dict[str, Any] | None = None) -> Op:
        """Record that ``process`` is about to send a request; returns the invocation op."""
        if not isinstance(f, str) or not f:
            raise HistoryError("f must be a non-empty string")
        with self._lock:
            if process in self._open:
                raise HistoryError(f"process {process!r} already has op {self._open[process].index} "
                                   "outstanding; complete it first or use a new process id")
            op = self._append_locked(OpType.INVOKE, process, f, value, endpoint=endpoint, extra=extra)
            self._open[process] = op
            return op

    def complete(self, invocation: Op, type: OpType | str, value: Any = None, *, node: str | None = None,
                 error: OpError | None = None, extra: dict[str, Any] | None = None) -> Op:
        """Record the outcome of ``invocation`` (ok, fail or info)."""
        op_type = OpType(type)
        if not op_type.is_completion:
            raise HistoryError(f"a completion must be ok, fail or info, not {op_type.value}")
        if op_type is OpType.OK and error is not None:
            raise HistoryError("an ok completion cannot carry an error")
        with self._lock:
            if self._open.get(invocation.process) is not invocation:
                raise HistoryError(f"op {invocation.index} of process {invocation.process!r} "
                                   "is not outstanding")
            op = self._append_locked(op_type, invocation.process, invocation.f, value,
                                     endpoint=invocation.endpoint, node=node, error=error, extra=extra)
            del self._open[invocation.process]
            return op

    def ok(self, invocation: Op, value: Any = None, *, node: str | None = None,
           extra: dict[str, Any] | None = None) -> Op:
        """The request took effect and returned ``value``."""
        return self.complete(invocation, OpType.OK, value, node=node, extra=extra)

    def fail(self, invocation: Op, error: OpError, *, node: str | None = None,
             extra: dict[str, Any] | None = None) -> Op:
        """The request certainly had no effect."""
        return self.complete(invocation, OpType.FAIL, invocation.value, node=node, error=error, extra=extra)

    def info(self, invocation: Op, error: OpError | None = None, *, node: str | None = None,
             extra: dict[str, Any] | None = None) -> Op:
        """The request's outcome is unknown."""
        return self.complete(invocation, OpType.INFO, invocation.value, node=node, error=error, extra=extra)

    # -- harness side ------------------------------------------------------------------------
    def fault(self, name: str, phase: Phase | str, params: dict[str, Any] | None = None) -> Op:
        """Record that fault ``name`` started or ended; ``params`` say how it was configured."""
        if not isinstance(name, str) or not name:
            raise HistoryError("a fault needs a non-empty name")
        with self._lock:
            return self._append_locked(OpType.FAULT, "nemesis", name, dict(params or {}), phase=Phase(phase))

    def event(self, f: str, value: Any = None, *, node: str | None = None,
              extra: dict[str, Any] | None = None) -> Op:
        """Record an observation that is not a client request, e.g. ``event("roles", {...})``."""
        if not isinstance(f, str) or not f:
            raise HistoryError("an event needs a non-empty name")
        with self._lock:
            return self._append_locked(OpType.EVENT, "harness", f, value, node=node, extra=extra)

    # -- access and lifecycle ----------------------------------------------------------------
    def history(self) -> History:
        """A snapshot of everything recorded so far."""
        with self._lock:
            return History(list(self._ops), anchor=self.anchor)

    def outstanding(self) -> list[Op]:
        """Invocations still waiting for their completion."""
        with self._lock:
            return list(self._open.values())

    def close(self) -> None:
        """Flush and close the file; the in-memory history stays readable."""
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _append_locked(self, op_type: OpType, process: Any, f: str, value: Any, *,
                       endpoint: str | None = None, node: str | None = None, error: OpError | None = None,
                       phase: Phase | None = None, extra: dict[str, Any] | None = None) -> Op:
        op = Op(index=len(self._ops), time=self._clock(), type=op_type, process=process, f=f, value=value,
                endpoint=endpoint, node=node, error=error, phase=phase, extra=dict(extra or {}))
        if self._ops and op.time < self._ops[-1].time:
            raise HistoryError(f"clock went backwards: {op.time} < {self._ops[-1].time}")
        try:
            line = json.dumps(op.to_dict(), separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as e:
            raise HistoryError(f"op {f!r} of process {process!r} is not JSON-serialisable: {e}") from None
        if self._fh is not None:
            self._fh.write(line + "\n")
            self._fh.flush()
            if self._fsync:
                os.fsync(self._fh.fileno())
        elif self.path is not None:
            raise HistoryError("the recorder is closed")
        self._ops.append(op)
        return op


def _as_set(x: Any) -> set[Any] | None:
    if x is None:
        return None
    if isinstance(x, (str, enum.Enum)):
        return {x}
    return set(x)


def duration_ns(invocation: Op, completion: Op | None) -> int | None:
    """How long a request took, or ``None`` if it never completed."""
    return None if completion is None else completion.time - invocation.time
