"""What every benchmark's result document shares: paths as addresses, ratios, the storm section, the file.

A benchmark measures the same thing over several *paths* (direct, a peer, the reference proxy)
and prints ratios between them; each path is a :class:`~harness.standins.base.ConnectionParams`
plus, for the storm, the pid of the process whose memory is watched.  The storm section and the
JSON file look the same for every engine, so reports and readers need one shape only.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from harness.bench.rss import PeakRss
from harness.clients.address import Address
from harness.faults.storm import run_storm
from harness.standins.base import ConnectionParams
from harness.targets.base import IDENTITY_QUERIES


def address(engine: str, path: str, params: ConnectionParams) -> Address:
    """A recording client's address for one benchmark path, labelled with the path's name."""
    return Address(engine, path, params.host, params.port, params.user, params.password, params.database,
                   IDENTITY_QUERIES[engine])


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b`` to three places, or None when either side is missing or zero."""
    return round(a / b, 3) if a and b else None


def storm_section(engine: str, paths: dict[str, tuple[ConnectionParams, int | None]], clients: int,
                  say: Callable[[str], None]) -> dict[str, Any]:
    """A connection storm of ``clients`` through each path, with the peak RSS of the path's process."""
    section: dict[str, Any] = {}
    for path, (params, pid) in paths.items():
        if pid is None:
            raise ValueError(f"the {path} process is not running: no storm through it")
        say(f"storm of {clients} clients via {path} ...")
        with PeakRss(pid) as rss:
            outcome = run_storm(address(engine, path, params), clients)
        section[path] = {**outcome.as_dict(), "peak_rss_mb": round(rss.peak_mb, 1)}
    return section


def storm_lines(section: dict[str, Any]) -> list[str]:
    """One table line per storm: clients served and failed, duration, peak RSS and the errors seen."""
    return [f"storm {s['clients']} clients via {path:<10} ok={s['ok']} failed={s['failed']} "
            f"in {s['seconds']:.1f}s, peak RSS {s['peak_rss_mb']} MB"
            + (f", errors: {s['errors']}" if s["errors"] else "")
            for path, s in section.items()]


def write(results: dict[str, Any], path: str) -> None:
    """The document as JSON at ``path`` (directories created), replaced atomically, with its finish time."""
    results = {**results, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
