"""A rotation drill: a secret rotates while sessions are open and new logins arrive at a steady rate.

The drill is the workload the ROTATION-* checkers read (see :mod:`harness.checkers.rotation` for the
conventions), shared by the certification suite and by ``aurora-harness bench rotation``, which
prints the rotation window (failed logins and their seconds) at a given login rate:

1. the rotation fault reads the secret's current login (:meth:`RotateSecret.prepare`);
2. ``held`` sessions log in with it and keep sending a trivial request every ``PING_INTERVAL_S``;
3. new logins start at ``rate`` a second with whatever the secret holds at that moment (label
   ``new``), and at ``old_rate`` with the old login (label ``old``);
4. after ``lead_seconds`` the rotation runs, then the drill observes for ``observe_seconds`` more.

Every client is a recording client of the target, so the drill runs on either engine.  ``during``
(a context manager factory) runs extra load over the whole rotation: the full profile puts a
connection storm there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from harness.checkers.rotation import LOGIN_KEY, NEW_LOGIN, OLD_LOGIN, failed_login_window, rotation_windows
from harness.clients.client import Client
from harness.clients.fleet import Clients
from harness.clients.pacing import Paced
from harness.faults.rotation import Login, RotateSecret
from harness.history import OpType, Recorder
from harness.targets.base import Target

PING_INTERVAL_S = 0.1
LOGIN_TIMEOUT_S = 5.0


@dataclasses.dataclass
class DrillSummary:
    """What a drill saw, for printing (the checkers judge the history itself)."""

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
                   workers: int = 4) -> DrillSummary:
    """Run the drill (see the module docstring) and summarise it; the rotation is stopped (its end
    event written) whatever happens."""
    rotation = RotateSecret(strategy=strategy, window_seconds=window_seconds)
    old = rotation.prepare(target)
    stop = threading.Event()
    sessions = [clients("writer", login=old.pair) for _ in range(held)]

    def keep_busy(client: Client) -> None:
        while not stop.wait(PING_INTERVAL_S):
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
            rotation.wait(4 * rotation.step_timeout + window_seconds)
        finally:
            rotation.stop()
        stop.wait(observe_seconds)
    return summarise(recorder, strategy, rate, streams)


def _join(loops: list[threading.Thread], stop: threading.Event) -> None:
    stop.set()
    for loop in loops:
        loop.join(timeout=30)


def summarise(recorder: Recorder, strategy: str, rate: float, streams: list[Paced]) -> DrillSummary:
    history = recorder.history()
    logins = [(i, c) for i, c in history.pairs() if i.f == "connect" and LOGIN_KEY in i.extra]
    failed = sum(1 for _, c in logins if c is None or c.type is not OpType.OK)
    windows = rotation_windows(history, (strategy,))
    count, span = failed_login_window(history, windows[-1], None) if windows else (0, 0.0)
    return DrillSummary(strategy, rate, len(logins), failed, count, round(span, 3), sum(s.late for s in streams))

