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

__all__ = ["EventKind", "Observation", "Probe", "ProbeConstructor", "ProbeFactory", "ProbeFailed", "ProbeResult",
           "RoundOutcome", "TopologyCore", "TopologyError", "TopologyEvent", "TopologyMonitor", "monitor_for_config"]


def monitor_for_config(config: ProxyConfig, open_probe: ProbeConstructor, router: Router | None,
                       metrics: ProxyMetrics | None, clock: Clock | None = None) -> TopologyMonitor:
    """The monitor for a configuration's instances, with the engine's probe and [monitor] settings."""
    user, password = config.monitor_credentials()
    settings = config.monitor

    def probe(address: InstanceAddress) -> Probe:
        return open_probe(address, user=user, password=password, database=settings.database,
                          connect_timeout=settings.connect_timeout, query_timeout=settings.query_timeout)

    return TopologyMonitor([i.address for i in config.instances], probe, router, metrics, clock,
                           interval=settings.interval, fast_interval=settings.fast_interval,
                           poll_timeout=settings.connect_timeout + settings.query_timeout)
