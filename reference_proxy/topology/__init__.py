"""Topology monitoring: who is writer, which readers answer and how far behind they are.

* :mod:`.events` - observations, events and the errors of this package.
* :mod:`.core` - the decisions, without I/O (tested with a fake clock).
* :mod:`.availability` - AvailabilityPercentage per target role.
* :mod:`.monitor` - the asyncio loop that polls and applies decisions.

Engine-neutral: what is asked of an instance, and how, is the engine's probe
(``engines/<name>/probe.py``).  :func:`monitor_for_config` builds a monitor from the proxy's
configuration and the engine's :class:`ProbeConstructor`.
"""

from __future__ import annotations

from collections.abc import Callable

from reference_proxy.config import ProxyConfig
from reference_proxy.contracts import Clock, InstanceAddress
from reference_proxy.metrics import ProxyMetrics
from reference_proxy.routing import Router
from reference_proxy.topology.core import RoundOutcome, TopologyCore
from reference_proxy.topology.events import (
    EventKind,
    Observation,
    ProbeFailed,
    ProbeResult,
    TopologyError,
    TopologyEvent,
)
from reference_proxy.topology.monitor import Probe, ProbeConstructor, ProbeFactory, TopologyMonitor


class LoginFollowingProbe:
    """A probe whose login is asked for afresh each time it must connect: the engine's probe keeps
    the login it was opened with, so after a failed poll it is replaced by one opened with the login
    current then (a rotated secret's)."""

    def __init__(self, address: InstanceAddress, login: Callable[[], tuple[str, str] | None],
                 open_with: Callable[[InstanceAddress, str, str], Probe]) -> None:
        self._address = address
        self._login = login
        self._open_with = open_with
        self._probe: Probe | None = None

    async def poll(self) -> ProbeResult:
        if self._probe is None:
            current = self._login()
            if current is None:
                raise ProbeFailed(f"{self._address.id}: the monitor has no login yet (no secret was read)")
            self._probe = self._open_with(self._address, *current)
        try:
            return await self._probe.poll()
        except ProbeFailed:
            await self.close()
            raise

    async def close(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            await probe.close()

__all__ = ["EventKind", "LoginFollowingProbe", "Observation", "Probe", "ProbeConstructor", "ProbeFactory",
           "ProbeFailed", "ProbeResult", "RoundOutcome", "TopologyCore", "TopologyError", "TopologyEvent", "TopologyMonitor", "monitor_for_config"]


def monitor_for_config(config: ProxyConfig, open_probe: ProbeConstructor, router: Router | None,
                       metrics: ProxyMetrics | None, clock: Clock | None = None, *,
                       login: Callable[[], tuple[str, str] | None] | None = None) -> TopologyMonitor:
    """The monitor for a configuration's instances, with the engine's probe and [monitor] settings.

    The monitor logs in as :meth:`ProxyConfig.monitor_credentials` says; when only secrets hold
    logins, ``login()`` gives the current one (None: none read yet), asked again whenever a probe
    must reconnect, so the monitor follows a rotated secret."""
    fixed = config.monitor_credentials()
    settings = config.monitor

    def open_with(address: InstanceAddress, user: str, password: str) -> Probe:
        return open_probe(address, user=user, password=password, database=settings.database,
                          connect_timeout=settings.connect_timeout, query_timeout=settings.query_timeout)

    def probe(address: InstanceAddress) -> Probe:
        if fixed is not None:
            return open_with(address, *fixed)
        return LoginFollowingProbe(address, lambda: login() if login is not None else None, open_with)

    if config.testing.on("slow_topology_monitor"):  # unsafe on purpose: reference_proxy.failpoints
        return TopologyMonitor([i.address for i in config.instances], probe, router, metrics, clock,
                               interval=SLOW_MONITOR_INTERVAL, fast_interval=SLOW_MONITOR_INTERVAL,
                               poll_timeout=settings.connect_timeout + settings.query_timeout,
                               takes_hints=False, one_round_late=True)
    return TopologyMonitor([i.address for i in config.instances], probe, router, metrics, clock,
                           interval=settings.interval, fast_interval=settings.fast_interval,
                           poll_timeout=settings.connect_timeout + settings.query_timeout)


SLOW_MONITOR_INTERVAL = 10.0
"""Seconds between the rounds of the ``slow_topology_monitor`` failpoint's monitor."""
