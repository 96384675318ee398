"""A rotation drill: a secret rotates while sessions are open and new logins arrive at a steady rate.

The drill is the workload the ROTATION-* checkers read (see :mod:`harness.checkers.rotation` for the
conventions), shared by the certification suite and by ``aurora-harness bench rotation``, which
prints the rotation window (failed logins and their seconds) at a given login rate:

1. the rotation fault reads the secret's current login (:meth:`RotateSecret.prepare`);
2. ``held`` sessions log in with it and keep sending a trivial request every ``PING_INTERVAL_S``;
3. new logins start at ``rate`` a second with whatever the secret holds at that moment (label
   ``new``), and at ``old_rate`` with the old login (label ``old``);
4. after ``lead_seconds`` the rotation runs, then the drill observes for ``observe_seconds`` more;
5. the moment the database has the new password (setSecret), ``setups`` more sessions, opened with
   the old login before the rotation, each run one short statement at once.  Together they need more
   backend connections than the pool holds idle, so the proxy must open some while the database
   refuses the password it holds: the failed setups ROTATION-BACKEND-AUTH bounds (without them a
   proxy opens nothing in the window and the bound is never put to the test).  Those sessions then
   close, so that their refused statement is not taken for a dropped session.  The held sessions
   skip their requests while those statements run, so that the borrowed backends leave none of them
   refused (a MySQL client rolls back after a refused request, and closes when that is refused too).

Every client is a recording client of the target, so the drill runs on either engine.  ``during``
(a context manager factory) runs extra load over the whole rotation: the full profile puts a
connection storm there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from harness.checkers import CheckContext, default_checkers
from harness.checkers.rotation import (
    LOGIN_KEY,
    NEW_LOGIN,
    OLD_LOGIN,
    SINGLE_USER_STRATEGIES,
    failed_login_window,
    rotation_windows,
)
from harness.clients.client import Client
from harness.clients.fleet import Clients
from harness.clients.pacing import Paced
from harness.errors import HarnessError
from harness.faults.rotation import Login, RotateSecret
from harness.history import OpType, Recorder
from harness.targets.base import Target
from harness.targets.reference import ReferenceTarget

PING_INTERVAL_S = 0.1
LOGIN_TIMEOUT_S = 5.0
SETUPS = 6
"""Sessions that each start a statement the moment the database's password changes (single-user
strategies): more than the backend connections a pool keeps idle for the drill's few held sessions."""
SETUP_HOLD_S = 0.05
"""How long each of those statements keeps its backend busy, so that they overlap."""


@dataclasses.dataclass
class DrillSummary:
    """What a drill saw, for printing (the checkers judge the history itself): the logins that follow
    the secret, how many failed, the rotation's window of failed logins (count and seconds), and how
    many attempts started late because the workers could not keep the rate."""

    strategy: str
    rate: float
    logins: int
    failed_logins: int
    window_failed_logins: int
    window_seconds: float
    late: int

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def rotation_drill(target: Target, clients: Clients, recorder: Recorder, *, strategy: str = "single_user",
                   rate: float = 10.0, old_rate: float | None = None, held: int = 4, lead_seconds: float = 1.0,
                   observe_seconds: float = 8.0, window_seconds: float = 1.0,
                   during: Callable[[], AbstractContextManager[Any]] | None = None,
                   workers: int = 4, setups: int | None = None) -> DrillSummary:
    """Run the drill (see the module docstring) and summarise it; the rotation is stopped (its end
    event written) whatever happens."""
    rotation = RotateSecret(strategy=strategy, window_seconds=window_seconds)
    old = rotation.prepare(target)
    stop = threading.Event()
    sessions = [clients("writer", login=old.pair) for _ in range(held)]
    if setups is None:  # a rotation done by a user's command shows no setSecret to start them at
        setups = SETUPS if strategy in SINGLE_USER_STRATEGIES and rotation.steps_observed else 0
    in_window = [clients("writer", login=old.pair) for _ in range(setups)]

    quiet = threading.Event()

    def keep_busy(client: Client) -> None:
        while not stop.wait(PING_INTERVAL_S):
            if not quiet.is_set():
                client.execute("ping", "SELECT 1")

    def log_in(login: Callable[[], Login], label: str) -> Callable[[], None]:
        def attempt() -> None:
            client = clients("writer", login=login().pair, connect_extra={LOGIN_KEY: label},
                             connect_timeout=LOGIN_TIMEOUT_S)
            client.close()
        return attempt

    loops = [threading.Thread(target=keep_busy, args=(c,), name=f"held-{i}", daemon=True)
             for i, c in enumerate(sessions)]
    streams = [Paced(log_in(rotation.current_login, NEW_LOGIN), rate, workers=workers, name="new-logins"),
               Paced(log_in(lambda: old, OLD_LOGIN), old_rate or max(1.0, rate / 4), workers=2, name="old-logins")]
    with contextlib.ExitStack() as stack:
        for loop in loops:
            loop.start()
        stack.callback(_join, loops, stop)
        for stream in streams:
            stack.callback(stream.stop)
            stream.start()
        stop.wait(lead_seconds)
        if during is not None:
            stack.enter_context(during())
        rotation.start(target, recorder)
        try:
            if in_window and rotation.wait_database_changed(rotation.step_timeout):
                quiet.set()
                try:
                    _all_at_once(in_window, clients.dialect.sleep_sql(SETUP_HOLD_S))
                finally:
                    quiet.clear()
            rotation.wait(4 * rotation.step_timeout + window_seconds)
        finally:
            rotation.stop()
        stop.wait(observe_seconds)
    return summarise(recorder, strategy, rate, streams)


def _all_at_once(sessions: list[Client], sql: str) -> None:
    """Each session runs ``sql`` (op ``in_window``) on its own thread, all started together; then closes."""
    def run(client: Client) -> None:
        client.execute("in_window", sql)
        client.close()

    threads = [threading.Thread(target=run, args=(c,), name=f"in-window-{i}", daemon=True)
               for i, c in enumerate(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)


def _join(loops: list[threading.Thread], stop: threading.Event) -> None:
    stop.set()
    for loop in loops:
        loop.join(timeout=30)


def summarise(recorder: Recorder, strategy: str, rate: float, streams: list[Paced]) -> DrillSummary:
    history = recorder.history()
    logins = [(i, c) for i, c in history.pairs() if i.f == "connect" and i.extra.get(LOGIN_KEY) == NEW_LOGIN]
    failed = sum(1 for _, c in logins if c is None or c.type is not OpType.OK)
    windows = rotation_windows(history, (strategy,))
    count, span = failed_login_window(history, windows[-1], None) if windows else (0, 0.0)
    return DrillSummary(strategy, rate, len(logins), failed, count, round(span, 3), streams[0].late)


FIGURES = ("ROTATION-NEW-LOGINS", "ROTATION-OLD-PASSWORD")
"""The guarantees whose figures a bench round reports beside the rotation window."""


class RotationBenchError(HarnessError):
    """A bench configuration that cannot run."""


def run_bench(engine: str, *, rate: float, rounds: int, strategy: str = "single_user", window_seconds: float = 1.0,
              observe_seconds: float = 8.0, say: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """``rounds`` drills at ``rate`` new logins a second on one reference target of ``engine`` (no
    readers); per round the rotation window and the figures of :data:`FIGURES`."""
    if rounds < 1 or rate <= 0:
        raise RotationBenchError("rounds and rate must be positive")
    out: dict[str, Any] = {"bench": "rotation", "engine": engine, "strategy": strategy, "rate": rate,
                           "window_seconds": window_seconds, "machine": platform.machine(), "rounds": []}
    with ReferenceTarget(engine, readers=0) as target:
        for n in range(1, rounds + 1):
            say(f"round {n}/{rounds}: {strategy} rotation at {rate:g} new logins/s")
            with Recorder() as recorder:
                clients = Clients(target, recorder)
                try:
                    summary = rotation_drill(target, clients, recorder, strategy=strategy, rate=rate,
                                             window_seconds=window_seconds, observe_seconds=observe_seconds,
                                             workers=max(4, int(rate // 5)))
                finally:
                    clients.close_all()
                history = recorder.history()
            figures = {c.guarantee_id: c.check(history, CheckContext()) for c in default_checkers(list(FIGURES))}
            out["rounds"].append({**summary.as_dict(),
                                  **{gid: {"valid": v.valid.value, "figure": v.figure} for gid, v in figures.items()}})
    return out


def table(results: dict[str, Any]) -> str:
    title = (f"{results['engine']} {results['strategy']} rotation, {results['rate']:g} new logins/s, "
             f"{results['window_seconds']:g} s between setSecret and finishSecret")
    header = (f"{'round':>5} {'logins':>7} {'failed':>7} {'window failed':>14} {'window s':>9} "
              f"{'new-login s':>12} {'old-pw s':>9} {'late':>5}")
    lines = [title, header]
    for i, r in enumerate(results["rounds"], 1):
        new, old = (r[g]["figure"] for g in FIGURES)
        lines.append(f"{i:>5} {r['logins']:>7} {r['failed_logins']:>7} {r['window_failed_logins']:>14} "
                     f"{r['window_seconds']:>9.2f} {_num(new):>12} {_num(old):>9} {r['late']:>5}")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
