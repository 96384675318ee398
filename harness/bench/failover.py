"""``aurora-harness bench failover``: a timeline of every client operation across writer failovers.

Why a timeline and not one stopwatch: what a failover costs depends on where a client stands.  A
writer client notices it on its next write, a reader client may not notice at all, an idle client
only when it comes back, and a client without a proxy has to find the new writer itself.  So each
round runs, at once:

* K writer and K reader clients through the proxy's endpoints, writing unique ids and reading,
* the same K + K straight at the instances, for comparison, where the engine's driver can find a
  writer among several hosts by itself (libpq multi-host with ``target_session_attrs``
  ``read-write`` / ``standby``: what a PostgreSQL client without a proxy does; PyMySQL cannot,
  so a MySQL run has no direct figures),
* M idle clients connected through the writer endpoint before the failover and used only after it,

then triggers a planned failover at the stand-in and records, through one
:class:`~harness.history.Recorder`, every operation's start, end, outcome and serving instance.
A watcher polls the stand-in's readers directly and records when one first accepts writes (the
stand-in's own ``writable_query``): that is the "new primary accepting writes" moment the other
figures are measured from.  Everything engine-specific comes from the recording clients' dialect
and driver adapters, so the same rounds run on PostgreSQL and MySQL stand-ins.

Figures per round (the JSON keeps them all, plus each round's history file):

* ``trigger_to_accepting_s`` - the stand-in's own failover speed (trigger -> new primary writable);
* ``accepting_to_first_write_s`` - new primary writable -> first write acknowledged by it through the
  writer endpoint (and ``direct_accepting_to_first_write_s`` for the direct clients); the watcher
  polls every 10 ms, so a value within -0.01 of zero means "as soon as it could";
* ``failed_reads`` - reads on the reader endpoint that failed during the round (and ``direct_...``);
* ``idle_survival`` - the share of idle clients whose first write after the failover succeeded on
  the connection they already had;
* ``lost_writes`` - writes acknowledged during the round and missing from the new writer afterwards.

Numbers are printed as p50 / p95 / max over the rounds; nothing is asserted here (see the tests).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Self

from harness.clients.address import Address, ProcessIds
from harness.clients.client import SYNC_DRIVERS, Client
from harness.clients.outcomes import Result
from harness.clients.workload import Loop
from harness.errors import HarnessError
from harness.history import History, OpType, Phase, Recorder
from harness.targets.reference import ReferenceTarget

TABLE = "failover_bench_writes"
FIGURES = ("trigger_to_accepting_s", "accepting_to_first_write_s", "direct_accepting_to_first_write_s",
           "failed_reads", "direct_failed_reads", "failed_writes", "direct_failed_writes",
           "idle_survival", "lost_writes")
OP_PACE = 0.01
"""Seconds between one client's operations: a steady load that leaves the 2-core CI machine room."""


class FailoverBenchError(HarnessError):
    """The failover benchmark could not run a round (bad settings, a round that never recovered)."""


@dataclasses.dataclass
class FailoverBenchConfig:
    engine: str = "postgres"
    rounds: int = 5
    clients: int = 2          # K: writer clients and reader clients per path
    idle_clients: int = 4     # M: idle clients through the writer endpoint
    readers: int = 2
    direct: bool = True       # also run the K + K clients straight at the instances
    warmup: float = 1.0       # seconds of load before each trigger
    recovery_timeout: float = 60.0  # seconds a round may take to get a write through again
    history_dir: str | None = None  # where each round's history is written (None: memory only)

    def __post_init__(self) -> None:
        if self.engine not in SYNC_DRIVERS:
            raise FailoverBenchError(f"engine must be one of {', '.join(SYNC_DRIVERS)}, got {self.engine!r}")
        for name, low, high in (("rounds", 1, 1000), ("clients", 1, 64), ("idle_clients", 0, 256),
                                ("readers", 2, 15)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise FailoverBenchError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
        for name in ("warmup", "recovery_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value <= 3600:
                raise FailoverBenchError(f"{name} must be a number of seconds from 0 to 3600, got {value!r}")


def quantile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank quantile (``q`` in [0, 1]); None for no values.  Few rounds: no interpolation."""
    ordered = sorted(v for v in values if v is not None)
    if not ordered:
        return None
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def summarise(rounds: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """p50 / p95 / max of every figure over the rounds."""
    out = {}
    for name in FIGURES:
        values = [r[name] for r in rounds if r.get(name) is not None]
        out[name] = {"p50": quantile(values, 0.5), "p95": quantile(values, 0.95),
                     "max": max(values) if values else None, "rounds": len(values)}
    return out


# ------------------------------------------------------------------------------------- clients

def direct_supported(engine: str) -> bool:
    """Whether the engine's driver can find an instance of a given role among several by itself."""
    return SYNC_DRIVERS[engine].multi_host_options is not None


def _direct_address(target: ReferenceTarget, label: str) -> tuple[Address, dict[str, Any]]:
    """An address for a client without a proxy: every instance listed, the driver picks by role."""
    cluster = target.cluster
    assert cluster is not None
    first = Address.direct(cluster, cluster.instances[0].id)
    params = [cluster.connection_params(i.id) for i in cluster.instances]
    address = dataclasses.replace(first, endpoint=f"direct:{label}")
    options = SYNC_DRIVERS[target.engine].multi_host_options([(p.host, p.port) for p in params],
                                                             writer=label == "writer")
    return address, options


@dataclasses.dataclass
class _Worker:
    """One bench client: a loop that writes (or reads) until stopped, and the ids it got acknowledged."""

    kind: str
    loop: Loop
    acknowledged: list[int]


def _worker(recorder: Recorder, processes: ProcessIds, address: Address, options: dict[str, Any], kind: str,
            write_ids: Callable[[], int], stop: threading.Event) -> _Worker:
    acknowledged: list[int] = []

    def new_client() -> Client:
        return Client(recorder, processes.next(), address, table=TABLE, connect_timeout=5, op_timeout=30,
                      **options)

    def request(client: Client) -> Result:
        if kind == "write":
            return client.write(write_ids())
        return client.execute("read", "SELECT 1", idempotent=True, identify=True)

    def on_result(result: Result) -> None:
        if kind == "write" and result.ok:
            acknowledged.append(result.value)

    loop = Loop(new_client, request, interval=OP_PACE, pause=OP_PACE, on_result=on_result, stop_event=stop,
                name=f"bench-{kind}")
    return _Worker(kind, loop, acknowledged)


class _WritableWatcher:
    """Polls candidate instances directly; records when one first accepts writes.

    Each candidate is asked the stand-in's ``writable_query`` every 10 ms over a connection kept
    open (a promotion does not end existing sessions; one that does is reopened), so the moment is
    known to about 10 ms; a fresh login per poll would blur it by the login time.
    """

    INTERVAL = 0.01

    def __init__(self, target: ReferenceTarget, candidates: list[str], recorder: Recorder) -> None:
        assert target.cluster is not None
        self.target, self.candidates, self.recorder = target, candidates, recorder
        self.query = target.cluster.writable_query
        self.first: tuple[str, int] | None = None
        self._conns: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="bench-writable-watcher")

    def __enter__(self) -> Self:
        for instance_id in self.candidates:
            self._conns[instance_id] = _open_direct(self.target, instance_id)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        for conn in self._conns.values():
            conn.close()

    def _writable(self, instance_id: str) -> bool:
        conn = self._conns.get(instance_id)
        try:
            if conn is None or not conn.connected:
                conn = self._conns[instance_id] = _open_direct(self.target, instance_id)
            rows = conn.execute(self.query)
            return bool(rows and rows[0][0])
        except SYNC_DRIVERS[self.target.engine].errors:
            if conn is not None:
                conn.close()
            return False

    def _run(self) -> None:
        while not self._stop.is_set() and self.first is None:
            for instance_id in self.candidates:
                if self._writable(instance_id):
                    op = self.recorder.event("accepting_writes", {"instance": instance_id}, node=instance_id)
                    self.first = (instance_id, op.time)
                    return
            self._stop.wait(self.INTERVAL)


def _open_direct(target: ReferenceTarget, instance_id: str, timeout: float = 2) -> Any:
    """An open driver connection straight to one instance (unrecorded: it only watches the stand-in)."""
    cluster = target.cluster
    assert cluster is not None
    conn = SYNC_DRIVERS[target.engine](Address.direct(cluster, instance_id), connect_timeout=timeout)
    conn.open()
    return conn


# -------------------------------------------------------------------------------------- rounds

def run_round(target: ReferenceTarget, cfg: FailoverBenchConfig, number: int, write_ids: Callable[[], int],
              say: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """One failover under load; returns the round's figures (see the module docstring)."""
    cluster = target.cluster
    assert cluster is not None
    path = None
    if cfg.history_dir is not None:
        os.makedirs(cfg.history_dir, exist_ok=True)
        path = os.path.join(cfg.history_dir, f"round-{number:03d}.jsonl")
        if os.path.exists(path):
            os.remove(path)
    recorder = Recorder(path)
    processes = ProcessIds()
    stop = threading.Event()
    paths = [("writer", Address.of(target, "writer"), {}), ("reader", Address.of(target, "reader"), {})]
    if cfg.direct:
        paths += [("writer", *_direct_address(target, "writer")), ("reader", *_direct_address(target, "reader"))]
    workers = [_worker(recorder, processes, address, options, "write" if role == "writer" else "read",
                       write_ids, stop)
               for role, address, options in paths for _ in range(cfg.clients)]
    idle = [Client(recorder, processes.next(), Address.of(target, "writer"), table=TABLE, connect_timeout=5,
                   op_timeout=30) for _ in range(cfg.idle_clients)]
    try:
        for client in idle:
            if not client.connect().ok or not client.idle_probe().ok:
                raise FailoverBenchError("an idle client could not connect through the writer endpoint")
        for worker in workers:
            worker.loop.start()
        _wait_until(lambda: all(w.acknowledged or w.kind == "read" for w in workers), cfg.recovery_timeout,
                    "every writer client to get a first write through")
        stop.wait(cfg.warmup)  # steady load before the trigger (a workload duration, not a wait for state)
        old = cluster.writer.id
        candidates = [r.id for r in cluster.readers]
        with _WritableWatcher(target, candidates, recorder) as watcher:
            trigger = recorder.fault("failover", Phase.START, {"old_writer": old})
            new = target.failover()
            recorder.fault("failover", Phase.END, {"old_writer": old, "new_writer": new})
            _wait_until(lambda: watcher.first is not None, cfg.recovery_timeout, "the new primary to accept writes")
        accepting = watcher.first[1]
        _wait_until(lambda: _first_ok(recorder.history(), "writer", "write", trigger.time, new) is not None,
                    cfg.recovery_timeout, "a write through the writer endpoint on the new writer")
        if cfg.direct:
            _wait_until(lambda: _first_ok(recorder.history(), "direct:writer", "write", trigger.time, new) is not None,
                        cfg.recovery_timeout, "a direct write on the new writer")
        survived = 0
        for client in idle:
            before = client.connection.conn
            if client.write(write_ids()).ok and client.connection.conn is before:
                survived += 1
    finally:
        stop.set()
        for worker in workers:
            worker.loop.join(60)
        for client in idle:
            client.close()
    history = recorder.history()
    recorder.close()
    acknowledged = [op.value for op in history if op.type is OpType.OK and op.f == "write"]
    lost = _missing_writes(target, new, acknowledged)
    figures = {
        "round": number, "old_writer": old, "new_writer": new,
        "trigger_to_accepting_s": (accepting - trigger.time) / 1e9,
        "accepting_to_first_write_s": _seconds_after(
            _first_ok(history, "writer", "write", trigger.time, new), accepting),
        "direct_accepting_to_first_write_s": _seconds_after(
            _first_ok(history, "direct:writer", "write", trigger.time, new), accepting) if cfg.direct else None,
        "failed_reads": _failures(history, "reader", "read"),
        "direct_failed_reads": _failures(history, "direct:reader", "read") if cfg.direct else None,
        "failed_writes": _failures(history, "writer", "write"),
        "direct_failed_writes": _failures(history, "direct:writer", "write") if cfg.direct else None,
        "idle_survival": survived / len(idle) if idle else None,
        "lost_writes": len(lost), "lost_write_ids": lost[:100], "acknowledged_writes": len(acknowledged),
        "history": path,
    }
    say(f"round {number}: {old} -> {new}; accepting after {figures['trigger_to_accepting_s']:.2f}s, "
        f"first proxied write {figures['accepting_to_first_write_s']:.3f}s later, "
        f"{figures['failed_reads']} failed reads, {len(lost)} lost writes")
    return figures


def _wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise FailoverBenchError(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(0.02)


def _first_ok(history: History, endpoint: str, f: str, after_ns: int, node: str) -> int | None:
    """Completion time of the first ``f`` on ``endpoint`` acknowledged by ``node`` after ``after_ns``.

    Measured from the trigger, not from the watcher's moment: a client may beat the 10 ms watcher,
    and the figure then comes out slightly negative rather than silently dropping that write.
    """
    times = [comp.time for inv, comp in history.pairs()
             if comp is not None and comp.type is OpType.OK and inv.f == f and inv.endpoint == endpoint
             and comp.node == node and comp.time >= after_ns]
    return min(times) if times else None


def _seconds_after(t_ns: int | None, start_ns: int) -> float | None:
    return None if t_ns is None else (t_ns - start_ns) / 1e9


def _failures(history: History, endpoint: str, f: str) -> int:
    return sum(1 for op in history if op.f == f and op.endpoint == endpoint and op.type in (OpType.FAIL, OpType.INFO))


def _missing_writes(target: ReferenceTarget, writer: str, ids: list[int]) -> list[int]:
    """The acknowledged ids the new writer does not hold, read straight from it with the clients' read plan."""
    if not ids:
        return []
    cluster = target.cluster
    assert cluster is not None
    with Recorder() as scratch, Client(scratch, 0, Address.direct(cluster, writer), table=TABLE,
                                       connect_timeout=5) as client:
        if not client.connect().ok:
            raise FailoverBenchError(f"could not connect to the new writer {writer} to count lost writes")
        read = client.final_read()
        if not read.ok:
            raise FailoverBenchError(f"could not read the writes back from {writer}: {read.error}")
    return sorted(set(ids) - set(read.value))


# --------------------------------------------------------------------------------------- run

def run(cfg: FailoverBenchConfig, say: Callable[[str], None] = print,
        target_factory: Callable[[], ReferenceTarget] | None = None) -> dict[str, Any]:
    """Start a stand-in cluster behind the reference proxy, run ``cfg.rounds`` failovers, summarise."""
    if cfg.direct and not direct_supported(cfg.engine):
        say(f"no direct clients on {cfg.engine}: its driver cannot find the writer among several instances")
        cfg = dataclasses.replace(cfg, direct=False)
    target = (target_factory or (lambda: ReferenceTarget(cfg.engine, readers=cfg.readers)))()
    counter = itertools.count(1)
    lock = threading.Lock()

    def write_ids() -> int:
        with lock:
            return next(counter)
    rounds: list[dict[str, Any]] = []
    with target:
        assert target.cluster is not None
        with Recorder() as scratch, Client(scratch, 0, Address.direct(target.cluster, target.cluster.writer.id),
                                           table=TABLE, connect_timeout=5) as client:
            if not client.connect().ok:
                raise FailoverBenchError("could not connect to the stand-in's writer to create the table")
            client.setup()
        for number in range(1, cfg.rounds + 1):
            rounds.append(run_round(target, cfg, number, write_ids, say))
    return {"engine": cfg.engine, "config": dataclasses.asdict(cfg), "rounds": rounds,
            "summary": summarise(rounds), "targets": TARGETS}


TARGETS = {
    "accepting_to_first_write_s": "p95 <= 1.0",
    "failed_reads": "0 with >= 2 readers",
    "idle_survival": "1.0",
    "lost_writes": "0",
}


def table(results: dict[str, Any]) -> str:
    """The summary as an aligned text table."""
    lines = [f"{'figure':<36}{'p50':>10}{'p95':>10}{'max':>10}   target"]
    for name, s in results["summary"].items():
        def cell(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f}" if isinstance(v, float) and not v.is_integer() else f"{v:g}"
        lines.append(f"{name:<36}{cell(s['p50']):>10}{cell(s['p95']):>10}{cell(s['max']):>10}   "
                     f"{results['targets'].get(name, '')}")
    return "\n".join(lines)

