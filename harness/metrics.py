"""A proxy metric as the harness sees it: a named, dimensioned figure read at a known time.

Targets read their proxy's metrics from wherever the proxy reports them (the reference proxy's
Prometheus text, a CloudWatch namespace for an RDS Proxy) and hand them over in this one shape, so
the plugin samples them and the checkers judge them without knowing the source.  Names and
dimensions follow CloudWatch's for RDS Proxy: ``DatabaseConnections`` with ``{"Target": <instance>}``.

The samples a test took are kept in its run directory (``metrics/<test>.jsonl``, written by
:func:`write_samples`) so the report can draw the proxy's connections and pinned sessions over time:
JSON lines, the first a clock anchor like a history's, since the times are the same monotonic clock.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping

from harness.history import CLOCK_RECORD, ClockAnchor


@dataclasses.dataclass(frozen=True)
class MetricSample:
    """One reading of a proxy metric (CloudWatch name, e.g. ``DatabaseConnections``) at a time.

    ``time`` is the reader's monotonic clock in nanoseconds (comparable with history timestamps);
    ``dimensions`` follow CloudWatch's: ``{"Target": "instance-1"}`` for per-instance figures.
    """

    time: int
    name: str
    value: float
    dimensions: Mapping[str, str] = dataclasses.field(default_factory=dict)


def write_samples(path: str | os.PathLike[str], samples: Iterable[MetricSample], anchor: ClockAnchor) -> None:
    """Write ``samples`` as JSON lines after the clock anchor of the monotonic clock they were read on."""
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(anchor.to_record(), separators=(",", ":")) + "\n")
        fh.writelines(json.dumps({"time": s.time, "name": s.name, "value": s.value,
                                 "dimensions": dict(s.dimensions)}, separators=(",", ":")) + "\n" for s in samples)


def load_samples(path: str | os.PathLike[str]) -> tuple[list[MetricSample], ClockAnchor | None]:
    """Read a file of :func:`write_samples`; raises ``OSError`` or ``ValueError`` when it is damaged."""
    samples: list[MetricSample] = []
    anchor = None
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            d = json.loads(line)
            if d.get("type") == CLOCK_RECORD:
                anchor = anchor or ClockAnchor.from_record(d)
                continue
            samples.append(MetricSample(int(d["time"]), str(d["name"]), float(d["value"]),
                                        dict(d.get("dimensions") or {})))
    return samples, anchor
