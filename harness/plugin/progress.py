"""Progress of a certification run, as lines a person can follow instead of pytest's dots.

A full profile runs for many minutes, and pytest's dots say neither where the run is nor how long
is left; worse, the plugin's ``[verdict]`` lines break into the dots.  So while the suites run
against a target, each test ends with one line of its own: how many tests are done out of how many,
the time since the run began, an estimate of what is left, the test and its outcome and seconds;
a line naming the suite file comes before its first test.

The estimate is the mean seconds of the tests done so far times the tests left: crude when the tests
differ as much as a storm and a unit check do, but it moves the right way and costs nothing.  No I/O
here: the clock is injected and the lines are returned, the plugin writes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def clock_text(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` past an hour)."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def suite_of(nodeid: str) -> str:
    """The file part of a test id (``chaos/test_failover.py``)."""
    return nodeid.split("::", 1)[0]


class Progress:
    """Counts tests as they end and words the lines (see the module docstring)."""

    def __init__(self, total: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self._clock = clock
        self._started = clock()
        self._done = 0
        self._suite: str | None = None

    def starting(self, nodeid: str, tests_in_suite: int) -> str | None:
        """The suite's heading when ``nodeid`` is the first test of a new suite file, else None."""
        suite = suite_of(nodeid)
        if suite == self._suite:
            return None
        self._suite = suite
        return f"-- {suite} ({tests_in_suite} test{'s' if tests_in_suite != 1 else ''})"

    def finished(self, nodeid: str, outcome: str, seconds: float) -> str:
        """Count one test as done and word its line."""
        self._done += 1
        elapsed = self._clock() - self._started
        left = self.total - self._done
        estimate = f"~{clock_text(elapsed / self._done * left)} left" if left else "last test"
        width = len(str(self.total))
        name = nodeid.split("::", 1)[1] if "::" in nodeid else nodeid
        return (f"[{self._done:>{width}}/{self.total} {clock_text(elapsed)} elapsed, {estimate}] "
                f"{name} {outcome.upper()} ({seconds:.1f} s)")
