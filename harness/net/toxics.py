"""Toxics: what the TCP relay does to the bytes and connections passing through it.

Modelled on Toxiproxy's toxics, each is a small frozen dataclass with typed, validated parameters,
registered by name so a fault schedule can be written as data (``toxic_from_dict``).  There are
three kinds, by what they act on:

* *shaping* toxics change when and in which pieces bytes are delivered, never their content or
  order: :class:`Latency`, :class:`Bandwidth`, :class:`Slicer`, and :class:`LimitData` (which also
  ends the connection after N bytes).  Their :meth:`shape` is pure: given a piece of data, its
  per-connection state, and the relay's random generator, it returns the pieces to deliver and the
  earliest time for each - so they are tested without sockets;
* *holding* toxics stop delivery in their direction while present: :class:`Blackhole` (and
  :class:`Bandwidth` with rate 0).  Bytes are kept, not dropped, and flow again when the toxic is
  removed - like a network partition that heals and lets TCP retransmit;
* *connection* toxics act on whole connections: :class:`ResetPeer` (TCP RST to both sides, after
  an optional delay), :class:`Blackhole` with ``timeout_ms`` (close after holding that long) and
  :class:`Down` (the relay stops listening and closes every connection).

Directions follow Toxiproxy: ``upstream`` is client to server, ``downstream`` server to client.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import random
from typing import Any, ClassVar

from harness.errors import HarnessError


class RelayError(HarnessError):
    """Root of errors from the TCP relay and its toxics."""


class ToxicError(RelayError, ValueError):
    """A toxic with bad parameters, an unknown type, or a name clash."""


class Stream(str, enum.Enum):
    """Which direction(s) of a connection a toxic applies to."""

    UPSTREAM = "upstream"
    DOWNSTREAM = "downstream"
    BOTH = "both"

    def covers(self, direction: Stream) -> bool:
        return self is Stream.BOTH or self is direction


@dataclasses.dataclass
class Piece:
    """Bytes to deliver no earlier than ``not_before`` (event-loop time, seconds).

    ``arrival`` is when the relay read them, so latency counts from arrival and not from whenever
    an earlier toxic let them go.  ``close_after`` asks the relay to close the connection once this
    piece is written.
    """

    data: bytes
    arrival: float
    not_before: float
    close_after: bool = False


@dataclasses.dataclass(frozen=True)
class Toxic:
    """Base of all toxics.  ``name`` identifies it in the relay (default: ``<type>_<stream>``)."""

    TYPE: ClassVar[str] = ""
    name: str = ""
    stream: Stream = Stream.BOTH

    def __post_init__(self) -> None:
        object.__setattr__(self, "stream", _stream(self.stream))
        if not self.name:
            object.__setattr__(self, "name", f"{self.TYPE}_{self.stream.value}")
        if not isinstance(self.name, str):
            raise ToxicError(f"toxic name must be a string, got {self.name!r}")
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ToxicError` for parameters that make no sense."""

    def holds(self) -> bool:
        """Whether delivery in this toxic's direction(s) stops while it is present."""
        return False

    def new_state(self) -> Any:
        """Per-connection, per-direction state for :meth:`shape` (``None`` when none is needed)."""
        return None

    def shape(self, piece: Piece, state: Any, rng: random.Random) -> list[Piece]:
        """The pieces to deliver in place of ``piece``; the default passes it through."""
        return [piece]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["stream"] = self.stream.value
        d["type"] = self.TYPE
        return d


def _stream(s: Any) -> Stream:
    try:
        return Stream(s)
    except ValueError:
        raise ToxicError(f"stream must be upstream, downstream or both, got {s!r}") from None


def _non_negative(toxic: Toxic, *, integer: bool = False, **values: float) -> None:
    kinds = (int,) if integer else (int, float)
    for field, v in values.items():
        if isinstance(v, bool) or not isinstance(v, kinds) or not math.isfinite(v) or v < 0:
            what = "integer" if integer else "number"
            raise ToxicError(f"{toxic.TYPE}: {field} must be a non-negative {what}, got {v!r}")


@dataclasses.dataclass(frozen=True)
class Latency(Toxic):
    """Delay every piece by ``latency_ms`` plus or minus up to ``jitter_ms`` (uniform), counted from
    when the relay read it, so a stream is delayed rather than slowed down."""

    TYPE: ClassVar[str] = "latency"
    latency_ms: float = 0.0
    jitter_ms: float = 0.0

    def validate(self) -> None:
        _non_negative(self, latency_ms=self.latency_ms, jitter_ms=self.jitter_ms)

    def shape(self, piece: Piece, state: Any, rng: random.Random) -> list[Piece]:
        delay_ms = self.latency_ms
        if self.jitter_ms:
            delay_ms = max(0.0, delay_ms + rng.uniform(-self.jitter_ms, self.jitter_ms))
        piece.not_before = max(piece.not_before, piece.arrival + delay_ms / 1000.0)
        return [piece]


@dataclasses.dataclass
class _BandwidthState:
    next_free: float = -math.inf


@dataclasses.dataclass(frozen=True)
class Bandwidth(Toxic):
    """Deliver at most ``rate_kbps`` kilobytes (1000 bytes) per second; rate 0 holds all data."""

    TYPE: ClassVar[str] = "bandwidth"
    rate_kbps: float = 0.0
    PIECES_PER_SECOND: ClassVar[int] = 20

    def validate(self) -> None:
        _non_negative(self, rate_kbps=self.rate_kbps)

    def holds(self) -> bool:
        return self.rate_kbps == 0

    def new_state(self) -> _BandwidthState:
        return _BandwidthState()

    def shape(self, piece: Piece, state: _BandwidthState, rng: random.Random) -> list[Piece]:
        if self.rate_kbps == 0:
            return [piece]
        rate = self.rate_kbps * 1000.0
        size = max(1, int(rate / self.PIECES_PER_SECOND))
        out: list[Piece] = []
        for i in range(0, len(piece.data), size):
            part = piece.data[i:i + size]
            start = max(piece.not_before, state.next_free)
            state.next_free = start + len(part) / rate
            out.append(Piece(part, piece.arrival, state.next_free))
        if out:
            out[-1].close_after = piece.close_after
        return out or [piece]


@dataclasses.dataclass(frozen=True)
class Slicer(Toxic):
    """Cut data into pieces of about ``average_size`` bytes (plus or minus ``size_variation``) sent
    ``delay_us`` apart: exercises a peer's reassembly of messages split across reads."""

    TYPE: ClassVar[str] = "slicer"
    average_size: int = 1
    size_variation: int = 0
    delay_us: int = 0

    def validate(self) -> None:
        _non_negative(self, integer=True, average_size=self.average_size,
                      size_variation=self.size_variation, delay_us=self.delay_us)
        if self.average_size < 1:
            raise ToxicError("slicer: average_size must be at least 1")
        if self.size_variation >= self.average_size:
            raise ToxicError("slicer: size_variation must be smaller than average_size")

    def shape(self, piece: Piece, state: Any, rng: random.Random) -> list[Piece]:
        out: list[Piece] = []
        at, t = 0, piece.not_before
        while at < len(piece.data):
            size = self.average_size + rng.randint(-self.size_variation, self.size_variation)
            out.append(Piece(piece.data[at:at + size], piece.arrival, t))
            at += size
            t += self.delay_us / 1e6
        if out:
            out[-1].close_after = piece.close_after
        return out or [piece]


@dataclasses.dataclass
class _LimitState:
    passed: int = 0


@dataclasses.dataclass(frozen=True)
class LimitData(Toxic):
    """Let ``bytes`` bytes through (counted per connection from when the toxic applies), then
    close the connection."""

    TYPE: ClassVar[str] = "limit_data"
    bytes: int = 0

    def validate(self) -> None:
        _non_negative(self, integer=True, bytes=self.bytes)

    def new_state(self) -> _LimitState:
        return _LimitState()

    def shape(self, piece: Piece, state: _LimitState, rng: random.Random) -> list[Piece]:
        room = self.bytes - state.passed
        if room <= 0:
            return [Piece(b"", piece.arrival, piece.not_before, close_after=True)]
        if len(piece.data) < room:
            state.passed += len(piece.data)
            return [piece]
        state.passed = self.bytes
        return [Piece(piece.data[:room], piece.arrival, piece.not_before, close_after=True)]


@dataclasses.dataclass(frozen=True)
class Blackhole(Toxic):
    """Deliver nothing and close nothing: the connection looks alive but silent (Toxiproxy's
    ``timeout``).  With ``timeout_ms`` > 0 the connection is closed after being held that long."""

    TYPE: ClassVar[str] = "blackhole"
    timeout_ms: float = 0.0

    def validate(self) -> None:
        _non_negative(self, timeout_ms=self.timeout_ms)

    def holds(self) -> bool:
        return True


@dataclasses.dataclass(frozen=True)
class ResetPeer(Toxic):
    """Reset every connection (TCP RST to client and server, by SO_LINGER 0) after ``timeout_ms``
    from when it became subject to the toxic.  Acts on whole connections whatever ``stream`` says."""

    TYPE: ClassVar[str] = "reset_peer"
    timeout_ms: float = 0.0

    def validate(self) -> None:
        _non_negative(self, timeout_ms=self.timeout_ms)


@dataclasses.dataclass(frozen=True)
class Down(Toxic):
    """The relay refuses new connections (it stops listening) and closes existing ones; removing
    the toxic listens again on the same port."""

    TYPE: ClassVar[str] = "down"


TOXIC_TYPES: dict[str, type[Toxic]] = {t.TYPE: t for t in (
    Latency, Bandwidth, Slicer, LimitData, Blackhole, ResetPeer, Down)}
"""Every toxic class by its type name."""


def toxic_from_dict(d: dict[str, Any]) -> Toxic:
    """Build a toxic from ``{"type": "latency", "latency_ms": 100, ...}``, rejecting unknown fields."""
    if not isinstance(d, dict) or "type" not in d:
        raise ToxicError(f"a toxic needs a 'type' (one of {', '.join(sorted(TOXIC_TYPES))}): {d!r}")
    cls = TOXIC_TYPES.get(d["type"])
    if cls is None:
        raise ToxicError(f"unknown toxic type {d['type']!r}; known: {', '.join(sorted(TOXIC_TYPES))}")
    fields = {f.name for f in dataclasses.fields(cls)}
    params = {k: v for k, v in d.items() if k != "type"}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise ToxicError(f"{cls.TYPE}: unknown parameter(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(sorted(fields))}")
    return cls(**params)
