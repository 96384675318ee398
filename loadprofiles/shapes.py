"""Locust ``LoadTestShape`` classes for the profiles: a thin wrapper around :mod:`loadprofiles.stages`.

A shape reads the run's common options (``--users``, ``--spawn-rate``, ``--run-time``; the profile's
defaults when they are not given), builds its profile's :class:`~loadprofiles.stages.ShapeDriver` at
the first tick, and on every tick returns the driver's load and hands the due fault actions to this
process's :class:`~loadprofiles.runtime.LoadProcess`.  Shapes run on the master (or the single local
runner) only, so faults are scheduled from one place however many workers there are.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gevent
from locust import LoadTestShape

from loadprofiles.profiles import Profile, profile
from loadprofiles.runtime import load_process
from loadprofiles.stages import ShapeDriver, parse_duration


class ProfileShape(LoadTestShape):
    """The shape of :attr:`profile` (set by :func:`shape_for`)."""

    abstract = True
    use_common_options = True
    profile: ClassVar[Profile]

    def __init__(self) -> None:
        super().__init__()
        self.driver: ShapeDriver | None = None
        self._ending = False
        self._last_load: tuple[int, float] | None = None

    def _common(self) -> tuple[int, float, float]:
        ns: Any = self.runner.environment.parsed_options if self.runner is not None else None
        users = getattr(ns, "num_users", None) or self.profile.default_users
        rate = getattr(ns, "spawn_rate", None) or float(users)
        run_time = parse_duration(getattr(ns, "run_time", None), self.profile.default_run_time_s)
        return int(users), float(rate), run_time

    def tick(self) -> tuple[int, float] | None:
        if self.driver is None:
            self.driver = ShapeDriver(*self.profile.plan(*self._common()))
        answer = self.driver.tick(self.get_run_time())
        if answer.actions and self.runner is not None:
            load = load_process(self.runner.environment)
            for action in answer.actions:
                load.carry_out(action)
        if answer.load is None:
            return self._end()
        self._last_load = answer.load
        return answer.load

    def _end(self) -> tuple[int, float] | None:
        """End the run from outside the runner's greenlets.

        Answering None makes Locust quit from inside the shape's greenlet, which the quit itself kills
        part-way while users are still finishing their requests; a request completed after that is
        counted by Locust but missing from the history.  So the shape asks for the same quit (or, with
        the web UI, the same stop) from a greenlet of its own and keeps the last load meanwhile."""
        if self.runner is None:
            return None
        if not self._ending:
            self._ending = True
            ns = self.runner.environment.parsed_options
            gevent.spawn(self.runner.quit if getattr(ns, "headless", False) else self.runner.stop)
        return self._last_load


def shape_for(name: str) -> type[ProfileShape]:
    """A concrete shape class for profile ``name`` (what a profile's locustfile exposes)."""
    chosen = profile(name)
    return type(f"{name.title().replace('_', '')}Shape", (ProfileShape,), {"abstract": False, "profile": chosen})
