"""MariaDB global transaction id positions, as plain values.

MariaDB reports replication progress as a GTID list such as ``0-1-42,1-3-7``: for each
replication domain, the last transaction seen (``domain-server_id-seq_no``).  Within one domain
the sequence numbers only grow (the stand-ins run with ``gtid_strict_mode``), so "has this
server seen everything that one has?" is a per-domain comparison of sequence numbers.  Keeping
that comparison here, away from any server, lets failover pick "the most advanced reader" and
``wait_replicated`` decide "caught up" with code that is tested without a database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from harness.standins.base import StandinError


class GtidFormatError(StandinError):
    """A GTID list string that is not ``domain-server-seq[,domain-server-seq...]``."""


@dataclasses.dataclass(frozen=True, order=True)
class Gtid:
    """One global transaction id: its domain, the server that wrote it, and its sequence number."""

    domain: int
    server_id: int
    seq_no: int

    def __str__(self) -> str:
        return f"{self.domain}-{self.server_id}-{self.seq_no}"


@dataclasses.dataclass(frozen=True)
class GtidPosition:
    """The last transaction per domain, e.g. the value of ``@@gtid_slave_pos``.

    An empty position means "nothing replicated yet" and is covered by every position.
    """

    last: Mapping[int, Gtid] = dataclasses.field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> GtidPosition:
        """Read MariaDB's comma-separated list; ``None`` and ``""`` give the empty position."""
        last: dict[int, Gtid] = {}
        for part in (text or "").replace("\n", "").split(","):
            part = part.strip()
            if not part:
                continue
            fields = part.split("-")
            if len(fields) != 3 or not all(f.isdigit() for f in fields):
                raise GtidFormatError(f"not a GTID: {part!r} in {text!r} (expected domain-server-seq)")
            gtid = Gtid(*(int(f) for f in fields))
            if gtid.domain in last:
                raise GtidFormatError(f"domain {gtid.domain} appears twice in {text!r}")
            last[gtid.domain] = gtid
        return cls(last)

    def seq_no(self, domain: int) -> int:
        """Sequence number reached in ``domain`` (0 when nothing happened there)."""
        gtid = self.last.get(domain)
        return gtid.seq_no if gtid else 0

    def covers(self, other: GtidPosition) -> bool:
        """True when this position has reached ``other`` in every domain ``other`` knows."""
        return all(self.seq_no(d) >= g.seq_no for d, g in other.last.items())

    def behind(self, other: GtidPosition) -> int:
        """How many transactions this position lacks compared with ``other`` (summed over domains)."""
        return sum(max(0, g.seq_no - self.seq_no(d)) for d, g in other.last.items())

    def __bool__(self) -> bool:
        return bool(self.last)

    def __str__(self) -> str:
        return ",".join(str(self.last[d]) for d in sorted(self.last))


def most_advanced(positions: Mapping[str, GtidPosition], prefer: Iterable[str] = ()) -> str:
    """The key whose position covers every other one; ties go to the first of ``prefer``, then to
    the first key in order.

    With strict per-domain ordering and a single writer at a time, some position always covers
    the rest; if none does (diverged servers), the one with the most transactions wins so that a
    caller still gets an answer, and the divergent readers are rebuilt by the caller.
    """
    if not positions:
        raise StandinError("no positions to compare")
    preferred = [k for k in prefer if k in positions]
    order = preferred + [k for k in positions if k not in preferred]
    covering = [k for k in order if all(positions[k].covers(p) for p in positions.values())]
    if covering:
        return covering[0]
    empty = GtidPosition()
    return max(order, key=lambda k: empty.behind(positions[k]))
