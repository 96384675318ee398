"""What changed between two runs: verdicts that flipped, figures that moved, request latency.

A run is compared with another of the same target after a change (a proxy upgrade, a setting), or
two targets are compared on the same profile (the reference proxy against a pooler).  Everything
comes from the two run directories, like every report.

* A verdict *got worse* when it moved up the order true < unknown < false; that is what makes
  ``aurora-harness compare`` exit 1.  A guarantee judged in one run only is listed, never counted
  as worse (the other run did not select it).
* A figure *moved* when both runs have one and it changed by more than the tolerance, in percent of
  the first run's figure (a figure moving away from zero always counts).  Whether the move is for
  the better follows the guarantee's comparison: lower is better for an "at most" threshold.
* Latency is the p50 and p99 of every successful request (connects left out) per endpoint, pooled
  over all of a run's histories.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from reports.latency import percentile, request_latencies_ms
from reports.model import Report

RANK = {"true": 0, "unknown": 1, "false": 2}
DEFAULT_TOLERANCE_PCT = 10.0


@dataclasses.dataclass(frozen=True)
class Flip:
    guarantee: str
    before: str
    after: str

    @property
    def worse(self) -> bool:
        return RANK.get(self.after, 1) > RANK.get(self.before, 1)


@dataclasses.dataclass(frozen=True)
class Move:
    guarantee: str
    before: float
    after: float
    unit: str
    change_pct: float | None
    """``None`` when the first figure was zero (any change is infinitely many percent)."""
    better: bool | None


@dataclasses.dataclass(frozen=True)
class LatencyChange:
    endpoint: str
    p50: tuple[float | None, float | None]
    p99: tuple[float | None, float | None]
    requests: tuple[int, int]


@dataclasses.dataclass(frozen=True)
class Comparison:
    a: Report
    b: Report
    tolerance_pct: float
    headlines: tuple[str, str]
    flips: list[Flip]
    moves: list[Move]
    only_a: list[str]
    only_b: list[str]
    latency: list[LatencyChange]

    @property
    def worse(self) -> list[Flip]:
        return [f for f in self.flips if f.worse]

    def exit_status(self) -> int:
        """1 when a verdict got worse, else 0."""
        return 1 if self.worse else 0


def compare_reports(a: Report, b: Report, *, tolerance_pct: float = DEFAULT_TOLERANCE_PCT) -> Comparison:
    rows_a = {r.id: r for r in a.rows}
    rows_b = {r.id: r for r in b.rows}
    flips, moves = [], []
    for gid in [g for g in rows_a if g in rows_b]:
        ra, rb = rows_a[gid], rows_b[gid]
        if ra.valid != rb.valid:
            flips.append(Flip(gid, ra.valid, rb.valid))
        if isinstance(ra.figure, (int, float)) and isinstance(rb.figure, (int, float)) and ra.figure != rb.figure:
            change = abs(rb.figure - ra.figure) / abs(ra.figure) * 100 if ra.figure else None
            if change is None or change > tolerance_pct:
                better = {"at_most": rb.figure < ra.figure, "at_least": rb.figure > ra.figure}.get(rb.comparison or "")
                moves.append(Move(gid, float(ra.figure), float(rb.figure), rb.unit, change, better))
    return Comparison(a, b, tolerance_pct, (a.certification.headline, b.certification.headline), flips, moves,
                      [g for g in rows_a if g not in rows_b], [g for g in rows_b if g not in rows_a],
                      latency_changes(a, b))


def _histories(report: Report) -> list[Any]:
    return [h for h in (report.history(t["id"]) for t in report.tests) if h is not None]


def latency_changes(a: Report, b: Report) -> list[LatencyChange]:
    la, lb = request_latencies_ms(_histories(a)), request_latencies_ms(_histories(b))
    out = []
    for endpoint in sorted(set(la) | set(lb)):
        va, vb = la.get(endpoint, []), lb.get(endpoint, [])
        out.append(LatencyChange(endpoint, (_q(va, 0.5), _q(vb, 0.5)), (_q(va, 0.99), _q(vb, 0.99)),
                                 (len(va), len(vb))))
    return out


def _q(values: list[float], q: float) -> float | None:
    return percentile(values, q) if values else None


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} ms"


def _delta(pair: tuple[float | None, float | None]) -> str:
    before, after = pair
    if before is None or after is None:
        return ""
    sign = "+" if after >= before else "-"
    pct = f" ({(after - before) / before * 100:+.0f}%)" if before else ""
    return f"{sign}{abs(after - before):.2f} ms{pct}"


def describe(c: Comparison) -> dict[str, Any]:
    """The comparison as plain values: what the text and the HTML page both show."""
    def run_line(r: Report) -> str:
        run = r.run
        return (f"{r.run_dir}: {run.get('target')} {run.get('engine')} profile {run.get('profile')}, "
                f"seed {run.get('seed')}, started {run.get('started_at')}")

    return {
        "a": run_line(c.a), "b": run_line(c.b), "headlines": c.headlines, "tolerance": f"{c.tolerance_pct:g}",
        "flips": [{"id": f.guarantee, "before": f.before.upper(), "after": f.after.upper(),
                   "mark": "worse" if f.worse else "better"} for f in c.flips],
        "moves": [{"id": m.guarantee, "before": f"{m.before:.4g}", "after": f"{m.after:.4g}", "unit": m.unit,
                   "change": "from 0" if m.change_pct is None else f"{m.change_pct:.0f}%",
                   "mark": {True: "better", False: "worse", None: ""}[m.better]} for m in c.moves],
        "only_a": c.only_a, "only_b": c.only_b,
        "latency": [{"endpoint": x.endpoint, "p50_a": _ms(x.p50[0]), "p50_b": _ms(x.p50[1]),
                     "p50_delta": _delta(x.p50), "p99_a": _ms(x.p99[0]), "p99_b": _ms(x.p99[1]),
                     "p99_delta": _delta(x.p99), "requests": f"{x.requests[0]} / {x.requests[1]}"}
                    for x in c.latency],
        "worse": len(c.worse),
        "differ": [f"{key} ({c.a.run.get(key)} vs {c.b.run.get(key)})" for key in ("target", "engine", "profile")
                   if c.a.run.get(key) != c.b.run.get(key)],
    }


def render_text(c: Comparison) -> str:
    d = describe(c)
    lines = [f"A: {d['a']}", f"B: {d['b']}", f"headline: {d['headlines'][0]} -> {d['headlines'][1]}"]
    if d["differ"]:
        lines.append(f"note: the runs differ in {', '.join(d['differ'])}: their figures may not be comparable")
    lines.append("")
    lines.append("verdicts that flipped:" if d["flips"] else "verdicts that flipped: none")
    lines += [f"  {f['id']}: {f['before']} -> {f['after']} ({f['mark']})" for f in d["flips"]]
    lines.append(f"figures that moved more than {d['tolerance']}%:" if d["moves"]
                 else f"figures that moved more than {d['tolerance']}%: none")
    lines += [f"  {m['id']}: {m['before']} -> {m['after']} {m['unit']} ({m['change']}"
              + (f", {m['mark']})" if m["mark"] else ")") for m in d["moves"]]
    if d["only_a"]:
        lines.append(f"judged only in A: {', '.join(d['only_a'])}")
    if d["only_b"]:
        lines.append(f"judged only in B: {', '.join(d['only_b'])}")
    lines.append("request latency per endpoint (A -> B):" if d["latency"] else "request latency: no requests recorded")
    for x in d["latency"]:
        p50 = " ".join(filter(None, (f"p50 {x['p50_a']} -> {x['p50_b']}", x["p50_delta"])))
        p99 = " ".join(filter(None, (f"p99 {x['p99_a']} -> {x['p99_b']}", x["p99_delta"])))
        lines.append(f"  {x['endpoint']}: {p50}; {p99}; requests {x['requests']}")
    lines.append("")
    lines.append(f"{d['worse']} verdict{'s' if d['worse'] != 1 else ''} got worse" if d["worse"]
                 else "no verdict got worse")
    return "\n".join(lines)


def render_compare_html(c: Comparison) -> str:
    from reports.html import template

    return template("compare.html.j2").render(describe(c))
