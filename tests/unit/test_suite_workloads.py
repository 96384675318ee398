"""The suites' workload helpers: bounded client runs and the background load's reconnect rule."""

from __future__ import annotations

import itertools
import threading
from types import SimpleNamespace

import pytest

from suites.workloads import Background, run_clients


def test_run_clients_returns_results_in_order_and_reraises_errors():
    assert run_clients(4, lambda i: i * i) == [0, 1, 4, 9]

    def body(i: int) -> int:
        if i == 2:
            raise ValueError("client 2 broke")
        return i

    with pytest.raises(ValueError, match="client 2 broke"):
        run_clients(3, body)


def test_run_clients_timeout_does_not_wait_for_hung_clients():
    release = threading.Event()
    watchdog = threading.Timer(5.0, release.set)  # frees the clients if run_clients waits for them

    def hung(i: int) -> None:
        release.wait(60)

    watchdog.start()
    try:
        with pytest.raises(TimeoutError, match="2 of 2 clients"):
            run_clients(2, hung, timeout=0.2)
        # Returned while the clients were still hung: the timeout bounded the wait.
        assert not release.is_set()
    finally:
        watchdog.cancel()
        release.set()


class FakeSession:
    """Reads succeed or fail as scripted; the connection drops when the script says so."""

    ids = itertools.count(1)

    def __init__(self, script: list[str]) -> None:
        self.process = f"c{next(self.ids)}"
        self.script = script
        self.conn: object | None = object()
        self.reads = 0
        self.closed = False

    def connect(self):
        raise AssertionError("a broken session must be replaced, not reconnected under the same process id")

    def read(self):
        self.reads += 1
        step = self.script.pop(0) if self.script else "ok"
        if step == "drop":
            self.conn = None
        return SimpleNamespace(type=SimpleNamespace(value="ok" if step == "ok" else "fail"))

    def close(self) -> None:
        self.closed = True


class CountingBackground(Background):
    def __init__(self, *args, stop_after_pauses: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pauses = 0
        self.stop_after = stop_after_pauses

    def _pause(self) -> None:
        self.pauses += 1
        if self.pauses >= self.stop_after:
            self._stop.set()


def test_background_replaces_a_broken_session_with_a_new_one():
    made: list[FakeSession] = []

    def make() -> FakeSession:
        made.append(FakeSession(["ok", "drop"] if not made else ["fail"]))
        return made[-1]

    bg = CountingBackground(make, clients=1, stop_after_pauses=2)
    with bg:
        for t in bg._threads:
            t.join(timeout=10)
    assert len(made) == 2 and made[0].process != made[1].process
    assert all(s.closed for s in made)


def test_background_pauses_after_a_failed_read_on_an_open_connection():
    session = FakeSession(["fail"] * 10)
    bg = CountingBackground(lambda: session, clients=1, stop_after_pauses=3)
    with bg:
        for t in bg._threads:
            t.join(timeout=10)
    assert session.conn is not None
    assert session.reads == bg.pauses == 3  # one pause after every failed read, no spinning
