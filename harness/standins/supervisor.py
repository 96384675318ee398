"""An Aurora-like control plane for stand-ins: promote a reader when the writer stops answering.

Aurora's control plane, not the client or the proxy, decides that a writer is dead and promotes
the most advanced reader.  A stand-in has no such thing of its own, so without this module a
crashed writer stays crashed and "unplanned failover" cannot be tested.  The supervisor:

* asks the recorded writer ``SELECT 1`` every ``poll_interval`` seconds over a fresh connection
  (a fresh one, because a frozen server keeps a TCP connection open but never finishes a login,
  and the login timeout is what bounds a ping);
* when the writer has not answered for ``grace`` seconds (default 2), re-reads the cluster record,
  pings once more, and calls ``cluster.failover()``: the cluster promotes the most advanced running
  reader, repoints the others and brings the old writer back as a reader when it can;
* records each promotion (when the writer last answered, when the loss was detected, when the new
  writer first accepted writes, when the failover finished) in a JSON-lines log, and saves the new
  roles into the cluster record.

Anything else that changes the cluster (a planned ``aurora-harness failover``, a ``crash``) holds
the same lock as the supervisor (:func:`cluster_lock` for a record on disk, :meth:`Supervisor.paused`
in process); while the lock is held by someone else the supervisor does not judge the writer, and
it starts a fresh grace period for whichever writer the record names afterwards.

Two ways to run it: :class:`SupervisorThread` inside a test process, over a :class:`Cluster`
object; or ``python -m harness.standins.supervisor --state FILE`` as a background process over a
cluster record on disk, which is what ``ReferenceTarget(auto_failover=True)`` starts.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, Self

from harness.standins.base import Cluster, Instance, StandinError
from harness.standins.registry import cluster_from_state

log = logging.getLogger("harness.standins.supervisor")

DEFAULT_GRACE = 2.0
DEFAULT_POLL_INTERVAL = 0.25
PING_TIMEOUT = 2  # seconds; libpq's minimum connect_timeout
LOCK_TIMEOUT = 300.0  # a failover with a re-clone can take minutes
READY_LINE = "supervising"


class SupervisorError(StandinError):
    """The supervisor cannot run: bad settings, unreadable record, lock not obtained in time."""


# --------------------------------------------------------------------------------------- probes

def ping(cluster: Cluster, instance: Instance, query: str = "SELECT 1") -> Any:
    """Run one query on ``instance`` over a new connection; returns the first value, raises on failure."""
    return cluster.query_value(instance.id, query, PING_TIMEOUT)


def answers(cluster: Cluster, instance: Instance) -> bool:
    """True when the instance completes a login and a query within the ping timeout."""
    try:
        return ping(cluster, instance) is not None
    except Exception:  # noqa: BLE001 - any driver or socket error means "did not answer"
        return False


def accepts_writes(cluster: Cluster, instance: Instance) -> bool:
    """True when the instance answers and is not read-only (promoted, or never demoted)."""
    try:
        return bool(ping(cluster, instance, cluster.writable_query))
    except Exception:  # noqa: BLE001 - not answering is not accepting writes
        return False


# --------------------------------------------------------------------------------------- stores

class ClusterStore(Protocol):
    """Where the supervisor reads the cluster from and saves the new roles to, under a lock."""

    def load(self) -> Cluster: ...

    def save(self, cluster: Cluster) -> None: ...

    def lock(self, blocking: bool) -> contextlib.AbstractContextManager[bool]:
        """Hold the cluster's lock; yields False (without holding it) if ``blocking`` is false and it is taken."""
        ...


class MemoryStore:
    """An in-process cluster object; the lock is a re-entrant thread lock."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._lock = threading.RLock()

    def load(self) -> Cluster:
        return self.cluster

    def save(self, cluster: Cluster) -> None:
        self.cluster = cluster

    @contextlib.contextmanager
    def lock(self, blocking: bool) -> Iterator[bool]:
        acquired = self._lock.acquire(blocking=blocking)
        try:
            yield acquired
        finally:
            if acquired:
                self._lock.release()


@contextlib.contextmanager
def cluster_lock(state_path: str | os.PathLike[str], timeout: float | None = LOCK_TIMEOUT,
                 blocking: bool = True) -> Iterator[bool]:
    """Hold the lock of a cluster record on disk (an flock on ``<record>.lock``).

    Everything that changes a supervised cluster takes it: the supervisor while it promotes, and
    planned failovers, crashes and restarts done by the CLI or a target.  With ``blocking`` it
    waits up to ``timeout`` seconds and raises :class:`SupervisorError` if it cannot get it;
    without, it yields False at once when someone else holds it.
    """
    lock_path = f"{os.fspath(state_path)}.lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise SupervisorError(f"cannot open the lock file {lock_path}: {e.strerror}") from None
    acquired = False
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                acquired = True
                break
            except BlockingIOError:
                if not blocking:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise SupervisorError(f"{lock_path} is still held after {timeout:.0f}s: another "
                                          "failover or control operation is running") from None
                time.sleep(0.05)
        yield acquired
    finally:
        if acquired:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class StateFileStore:
    """A cluster record on disk: ``Cluster.to_state()`` itself, or a record holding it under ``cluster``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def exists(self) -> bool:
        return self.path.exists()

    def _read(self) -> dict[str, Any]:
        try:
            record = json.loads(self.path.read_text())
        except FileNotFoundError:
            raise SupervisorError(f"no cluster record at {self.path}") from None
        except (OSError, json.JSONDecodeError) as e:
            raise SupervisorError(f"cannot read the cluster record {self.path}: {e}") from None
        if not isinstance(record, dict):
            raise SupervisorError(f"{self.path} does not hold a cluster record")
        return record

    def load(self) -> Cluster:
        record = self._read()
        state = record.get("cluster", record)
        if not isinstance(state, dict) or "engine" not in state or "instances" not in state:
            raise SupervisorError(f"{self.path} does not hold a cluster record (no engine and instances)")
        return cluster_from_state(state)

    def save(self, cluster: Cluster) -> None:
        record = self._read()
        record = {**record, "cluster": cluster.to_state()} if "cluster" in record else cluster.to_state()
        write_json_atomically(self.path, record)

    def lock(self, blocking: bool) -> contextlib.AbstractContextManager[bool]:
        return cluster_lock(self.path, blocking=blocking)


def write_json_atomically(path: Path, record: dict[str, Any]) -> None:
    """Replace ``path`` with ``record`` so that a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


# --------------------------------------------------------------------------------------- promotions

@dataclasses.dataclass
class Promotion:
    """One automatic failover, with wall-clock times (seconds since the epoch) of each step.

    ``writer_last_answered`` -> ``detected`` is the grace period plus polling;
    ``detected`` -> ``accepting_writes`` is the promotion itself, as a client of the new writer
    would see it; ``finished`` is when the cluster was fully rewired (old writer rejoined).
    """

    old_writer: str
    new_writer: str | None
    writer_last_answered: float
    detected: float
    accepting_writes: float | None = None
    finished: float | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _WritableWatcher:
    """While a failover runs, notes when any of the candidates first accepts writes."""

    def __init__(self, cluster: Cluster, candidates: list[Instance], wall: Callable[[], float],
                 interval: float = 0.05) -> None:
        self.cluster, self.candidates, self.wall, self.interval = cluster, candidates, wall, interval
        self.first: tuple[str, float] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writable-watcher", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=PING_TIMEOUT * 2 + 1)

    def _run(self) -> None:
        while not self._stop.is_set() and self.first is None:
            for inst in self.candidates:
                if accepts_writes(self.cluster, inst):
                    self.first = (inst.id, self.wall())
                    return
            self._stop.wait(self.interval)


# --------------------------------------------------------------------------------------- supervisor

class Supervisor:
    """Watches a cluster's writer and promotes a reader when it stops answering for ``grace`` seconds.

    Call :meth:`step` repeatedly (or :meth:`run` until a stop event); each step checks once.
    ``clock`` (monotonic seconds) and ``wall`` (epoch seconds) are injected for tests;
    ``is_answering`` / ``is_writable`` default to real pings of the engine.
    """

    def __init__(self, store: ClusterStore, *, grace: float = DEFAULT_GRACE,
                 poll_interval: float = DEFAULT_POLL_INTERVAL, promotions_log: str | os.PathLike[str] | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 is_answering: Callable[[Cluster, Instance], bool] = answers) -> None:
        for name, value in (("grace", grace), ("poll_interval", poll_interval)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
                raise SupervisorError(f"{name} must be a number of seconds in (0, 3600], got {value!r}")
        self.store = store
        self.grace = float(grace)
        self.poll_interval = float(poll_interval)
        self.promotions_log = Path(promotions_log) if promotions_log else None
        self.clock, self.wall, self.is_answering = clock, wall, is_answering
        self.promotions: list[Promotion] = []
        self._watching: str | None = None
        self._last_answer = clock()
        self._last_answer_wall = wall()

    @contextlib.contextmanager
    def paused(self, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
        """Hold off automatic failover while the caller changes the cluster (a planned failover)."""
        with self.store.lock(blocking=True) as held:
            if not held:
                raise SupervisorError(f"could not pause the supervisor within {timeout:.0f}s")
            yield

    def _answered(self) -> None:
        self._last_answer, self._last_answer_wall = self.clock(), self.wall()

    def step(self) -> Promotion | None:
        """Check the writer once; promote a reader if it has been silent for ``grace`` seconds."""
        with self.store.lock(blocking=False) as held:
            if not held:  # someone else is changing the cluster: not ours to judge right now
                self._watching = None
                return None
            cluster = self.store.load()
        try:
            writer = cluster.writer
        except StandinError as e:
            log.error("the cluster record names no writer (%s); waiting", e)
            return None
        if writer.id != self._watching:
            self._watching = writer.id
            self._answered()
            log.info("watching writer %s (%s:%s), grace %.1fs", writer.id, writer.host, writer.port, self.grace)
        if self.is_answering(cluster, writer):
            self._answered()
            return None
        silent = self.clock() - self._last_answer
        if silent < self.grace:
            return None
        return self._promote(writer.id, silent)

    def _promote(self, old_writer: str, silent: float) -> Promotion | None:
        with self.store.lock(blocking=False) as held:
            if not held:
                self._watching = None
                return None
            cluster = self.store.load()
            writer = cluster.writer
            if writer.id != old_writer or self.is_answering(cluster, writer):
                self._watching = None  # someone failed over meanwhile, or it came back
                return None
            promotion = Promotion(old_writer=old_writer, new_writer=None,
                                  writer_last_answered=self._last_answer_wall, detected=self.wall())
            log.warning("writer %s has not answered for %.1fs: promoting the most advanced reader",
                        old_writer, silent)
            try:
                with _WritableWatcher(cluster, list(cluster.readers), self.wall) as watcher:
                    try:
                        promotion.new_writer = cluster.failover(None)
                    finally:
                        with contextlib.suppress(StandinError):
                            self.store.save(cluster)  # roles may have changed even if a later step failed
            except Exception as e:  # noqa: BLE001 - driver errors too: the supervisor must keep watching
                promotion.error = f"{type(e).__name__}: {e}"
                log.error("automatic failover away from %s failed: %s", old_writer, promotion.error)
            promotion.finished = self.wall()
            if watcher.first is not None:
                promotion.accepting_writes = watcher.first[1]
            elif promotion.new_writer is not None:
                promotion.accepting_writes = promotion.finished
        self._watching = None
        self._answered()  # a failed attempt is retried only after another grace period
        self.promotions.append(promotion)
        self._append_log(promotion)
        if promotion.new_writer:
            log.warning("promoted %s to writer (was %s); accepting writes %.2fs after detection",
                        promotion.new_writer, old_writer,
                        (promotion.accepting_writes or promotion.finished) - promotion.detected)
        return promotion

    def _append_log(self, promotion: Promotion) -> None:
        if self.promotions_log is None:
            return
        try:
            with open(self.promotions_log, "a") as f:
                f.write(json.dumps(promotion.as_dict()) + "\n")
        except OSError as e:
            log.error("cannot record the promotion in %s: %s", self.promotions_log, e.strerror)

    def run(self, stop: threading.Event, still_wanted: Callable[[], bool] = lambda: True) -> None:
        """Step every ``poll_interval`` seconds until ``stop`` is set or ``still_wanted()`` is false."""
        while not stop.is_set() and still_wanted():
            started = self.clock()
            try:
                self.step()
            except StandinError as e:
                log.error("supervisor check failed: %s", e)
            except Exception:
                log.exception("supervisor check crashed; continuing")
            stop.wait(max(0.0, self.poll_interval - (self.clock() - started)))


def read_promotions(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The promotions recorded in a supervisor's JSON-lines log (empty if there is none yet)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class SupervisorThread:
    """The supervisor in a background thread of this process, over a cluster object.

    ``with SupervisorThread(cluster, grace=2.0) as sup: ...``; use ``with sup.paused():`` around a
    failover done by hand.
    """

    def __init__(self, cluster: Cluster, **kwargs: Any) -> None:
        self.supervisor = Supervisor(MemoryStore(cluster), **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def promotions(self) -> list[Promotion]:
        return self.supervisor.promotions

    def paused(self) -> contextlib.AbstractContextManager[None]:
        return self.supervisor.paused()

    def start(self) -> None:
        if self._thread is not None:
            raise SupervisorError("the supervisor thread is already running")
        self._thread = threading.Thread(target=self.supervisor.run, args=(self._stop,),
                                        name="standin-supervisor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = LOCK_TIMEOUT) -> None:
        """Stop and join (waits for a promotion in progress to finish). Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------- process

def main(argv: list[str] | None = None) -> int:
    """``python -m harness.standins.supervisor --state FILE``: supervise until SIGTERM or the record goes."""
    parser = argparse.ArgumentParser(prog="python -m harness.standins.supervisor",
                                     description="Promote a reader when a stand-in's writer stops answering.")
    parser.add_argument("--state", required=True, help="cluster record (JSON) to watch and update")
    parser.add_argument("--grace", type=float, default=DEFAULT_GRACE,
                        help="seconds the writer may stay silent before a reader is promoted")
    parser.add_argument("--interval", type=float, default=DEFAULT_POLL_INTERVAL, help="seconds between pings")
    parser.add_argument("--promotions-log", default=None,
                        help="JSON-lines file of promotions (default: <state>.promotions.jsonl)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store = StateFileStore(args.state)
    try:
        store.load()
        supervisor = Supervisor(store, grace=args.grace, poll_interval=args.interval,
                                promotions_log=args.promotions_log or f"{args.state}.promotions.jsonl")
    except StandinError as e:
        print(f"supervisor: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("%s %s (grace %.1fs, ping every %.2fs)", READY_LINE, args.state, args.grace, args.interval)
    supervisor.run(stop, still_wanted=store.exists)
    log.info("supervisor stopped%s", "" if store.exists() else ": the cluster record is gone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
