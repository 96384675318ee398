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
        return answer.load

    def _end(self) -> tuple[int, float] | None:
        """End the run with one quit only.

        Answering None in a headless run makes Locust quit from inside the shape's greenlet, and then
        quit again from its main greenlet once the shape's has ended: the two stops race, users are
        stopped twice, and a request a user completes after the history was closed is counted by
        Locust but missing from the history.  Ending the shape's greenlet instead (GreenletExit is a
        normal end for gevent) leaves the one quit to the main greenlet.  With the web UI, None only
        stops the users, from the shape's greenlet, which is safe."""
        ns = self.runner.environment.parsed_options if self.runner is not None else None
        if getattr(ns, "headless", False):
            raise gevent.GreenletExit
        return None


def shape_for(name: str) -> type[ProfileShape]:
    """A concrete shape class for profile ``name`` (what a profile's locustfile exposes)."""
    chosen = profile(name)
    return type(f"{name.title().replace('_', '')}Shape", (ProfileShape,), {"abstract": False, "profile": chosen})
