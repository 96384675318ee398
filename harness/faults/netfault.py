"""Network faults between the proxy and one database instance, through that instance's TCP relay.

The reference target places a :class:`~harness.net.relay.RelayServer` in front of every instance
and points the proxy at the relays, so a toxic on one relay damages exactly the proxy's traffic to
that instance (its client connections and its health checks alike).  Each fault here installs one
toxic when it starts and removes it when it stops; the relay applies changes between chunks, so no
byte in flight is lost either way.

The instance is the writer by default, chosen when the fault starts: after a failover "the writer"
is another instance, and the start event names the one that was hit.  Fault names follow the
checkers: ``blackhole`` is the silent fault NETFAULT-SILENT-DETECTED measures.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from harness.faults.base import Fault, FaultError, check_instance, check_number, pick_instance
from harness.faults.registry import register
from harness.history import Recorder
from harness.net.toxics import (
    Bandwidth,
    Blackhole,
    Down,
    Latency,
    LimitData,
    RelayError,
    ResetPeer,
    Slicer,
    Stream,
    Toxic,
)
from harness.targets.base import Capability, Target

_STREAMS = {s.value for s in Stream}


@dataclasses.dataclass
class NetworkFault(Fault):
    """Base of the relay faults: ``instance`` (default the writer at start) and ``stream`` direction."""

    requires = Capability.NETWORK_FAULTS
    instance: str | None = None
    stream: str = "both"

    def validate(self) -> None:
        check_instance(self.name, self.instance)
        if self.stream not in _STREAMS:
            raise FaultError(f"{self.name}: stream must be one of {', '.join(sorted(_STREAMS))}, "
                             f"got {self.stream!r}")
        try:
            self.toxic()
        except RelayError as e:  # the toxic's own checks, reported as a fault spec error
            raise FaultError(f"{self.name}: {e}") from None

    def toxic(self) -> Toxic:
        """The toxic this fault installs."""
        raise NotImplementedError

    @property
    def toxic_name(self) -> str:
        return f"fault-{self.name}"

    def choose(self, target: Target) -> dict[str, Any]:
        return {"instance": pick_instance(target, self.instance, "writer")}

    def apply(self, target: Target, recorder: Recorder, chosen: dict[str, Any]) -> None:
        target.relay(chosen["instance"]).add_toxic(self.toxic())

    def heal(self, target: Target, recorder: Recorder, chosen: dict[str, Any]) -> None:
        relay = target.relay(chosen["instance"])
        if any(t.name == self.toxic_name for t in relay.toxics()):
            relay.remove_toxic(self.toxic_name)


@register("latency")
@dataclasses.dataclass
class LatencyFault(NetworkFault):
    """Delay every chunk by ``latency_ms`` +/- ``jitter_ms``."""

    latency_ms: float = 100.0
    jitter_ms: float = 0.0

    def validate(self) -> None:
        check_number(self.name, "latency_ms", self.latency_ms, high=600_000)
        check_number(self.name, "jitter_ms", self.jitter_ms, high=600_000)
        super().validate()

    def toxic(self) -> Toxic:
        return Latency(name=self.toxic_name, stream=Stream(self.stream), latency_ms=self.latency_ms,
                       jitter_ms=self.jitter_ms)


@register("bandwidth")
@dataclasses.dataclass
class BandwidthFault(NetworkFault):
    """Cap throughput at ``rate_kbps`` kilobytes per second (0 holds all traffic, silently)."""

    rate_kbps: float = 64.0

    def validate(self) -> None:
        check_number(self.name, "rate_kbps", self.rate_kbps)
        super().validate()

    def toxic(self) -> Toxic:
        return Bandwidth(name=self.toxic_name, stream=Stream(self.stream), rate_kbps=self.rate_kbps)


@register("reset_peer")
@dataclasses.dataclass
class ResetPeerFault(NetworkFault):
    """Reset every connection (TCP RST both ways) after ``timeout_ms``; new ones too while active."""

    timeout_ms: float = 0.0

    def validate(self) -> None:
        check_number(self.name, "timeout_ms", self.timeout_ms, high=3_600_000)
        super().validate()

    def toxic(self) -> Toxic:
        return ResetPeer(name=self.toxic_name, stream=Stream(self.stream), timeout_ms=self.timeout_ms)


@register("blackhole")
@dataclasses.dataclass
class BlackholeFault(NetworkFault):
    """Silently hold all traffic (no reset, no FIN) until healed; ``timeout_ms`` > 0 closes after that."""

    timeout_ms: float = 0.0

    def validate(self) -> None:
        check_number(self.name, "timeout_ms", self.timeout_ms, high=3_600_000)
        super().validate()

    def toxic(self) -> Toxic:
        return Blackhole(name=self.toxic_name, stream=Stream(self.stream), timeout_ms=self.timeout_ms)


@register("slicer")
@dataclasses.dataclass
class SlicerFault(NetworkFault):
    """Cut data into pieces of ``average_size`` +/- ``size_variation`` bytes, ``delay_us`` apart."""

    average_size: int = 16
    size_variation: int = 8
    delay_us: int = 0

    def validate(self) -> None:
        check_number(self.name, "average_size", self.average_size, low=1, high=1 << 20, integer=True)
        check_number(self.name, "size_variation", self.size_variation, high=1 << 20, integer=True)
        check_number(self.name, "delay_us", self.delay_us, high=10_000_000, integer=True)
        super().validate()

    def toxic(self) -> Toxic:
        return Slicer(name=self.toxic_name, stream=Stream(self.stream), average_size=self.average_size,
                      size_variation=self.size_variation, delay_us=self.delay_us)


@register("limit_data")
@dataclasses.dataclass
class LimitDataFault(NetworkFault):
    """Close each connection once ``bytes`` bytes have passed in the chosen direction."""

    bytes: int = 1024

    def validate(self) -> None:
        check_number(self.name, "bytes", self.bytes, high=1 << 40, integer=True)
        super().validate()

    def toxic(self) -> Toxic:
        return LimitData(name=self.toxic_name, stream=Stream(self.stream), bytes=self.bytes)


@register("down")
@dataclasses.dataclass
class DownFault(NetworkFault):
    """The instance's relay stops listening and closes every connection: the instance is unreachable."""

    def toxic(self) -> Toxic:
        return Down(name=self.toxic_name, stream=Stream(self.stream))
