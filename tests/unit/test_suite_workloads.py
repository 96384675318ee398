"""The suites' workload helpers: bounded client runs and the background load's reconnect rule."""

from __future__ import annotations

import itertools
import threading
from types import SimpleNamespace

import pytest

from suites.workloads import background_reads, run_clients


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


class FakeClient:
    """Reads succeed or fail as scripted; the connection drops when the script says so."""

    ids = itertools.count(1)

    def __init__(self, script: list[str]) -> None:
        self.process = f"c{next(self.ids)}"
        self.script = script
        self.connected = False
        self.connects = 0
        self.reads = 0
        self.closed = False

    def connect(self):
        if self.connects:
            raise AssertionError("a broken client must be replaced, not reconnected under the same process id")
        self.connects += 1
        self.connected = True
        return SimpleNamespace(type=SimpleNamespace(value="ok"), ok=True)

    def request(self, f, sql):
        assert (f, sql) == ("read", "SELECT who()")
        self.reads += 1
        step = self.script.pop(0) if self.script else "ok"
        if step == "drop":
            self.connected = False
        return SimpleNamespace(type=SimpleNamespace(value="ok" if step == "ok" else "fail"), ok=step == "ok")

    def close(self) -> None:
        self.closed = True


class FakeClients:
    """The suites' client factory, making scripted clients."""

    who = "who()"

    def __init__(self, make) -> None:
        self.make = make

    def __call__(self, endpoint, **options):
        assert endpoint == "writer" and options["connect"] is False
        return self.make()


def counting_background(make, *, stop_after_pauses: int):
    """Background reads whose pauses are counted, stopping the loop after ``stop_after_pauses``."""
    loop = background_reads(FakeClients(make), "writer", workers=1)
    loop.pauses = 0

    def pause(seconds: float) -> None:
        if seconds:
            loop.pauses += 1
            if loop.pauses >= stop_after_pauses:
                loop.stop_event.set()

    loop._pause = pause
    return loop


def test_background_replaces_a_broken_session_with_a_new_one():
    made: list[FakeClient] = []

    def make() -> FakeClient:
        made.append(FakeClient(["ok", "drop"] if not made else ["fail"]))
        return made[-1]

    bg = counting_background(make, stop_after_pauses=2)
    with bg:
        bg.join(timeout=10)
    assert len(made) == 2 and made[0].process != made[1].process
    assert all(s.closed for s in made)


def test_background_pauses_after_a_failed_read_on_an_open_connection():
    session = FakeClient(["fail"] * 10)
    bg = counting_background(lambda: session, stop_after_pauses=3)
    with bg:
        bg.join(timeout=10)
    assert session.connected
    assert session.reads == bg.pauses == 3  # one pause after every failed read, no spinning
