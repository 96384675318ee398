"""The report's plots, drawn from a run's histories with matplotlib as inline SVG.

What a reader of a chaos run looks for first: latency over time through each endpoint with the
fault windows shaded, throughput and errors (coloured by kind) over time, what happened when in each
failover, the backend connections against the pool cap (counted on the instance by the test, or as
the proxy reports them) and the proxy's pinned sessions.  Each plot is made only when its history or
metrics hold what it needs, so a short conformance test does not get an empty chart.

matplotlib is imported inside the functions that draw: it takes a second to import, and nothing but
a report page needs it (the harness and its command line never import it).  Figures are made with
``matplotlib.figure.Figure`` directly, never pyplot: no global state, no GUI backend.

Times are seconds since the history's first record; with a clock anchor the axis names the wall
clock time of that zero, so a plot lines up with the proxy's and the database's logs.
"""

from __future__ import annotations

import dataclasses
import io
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from harness.history import FaultWindow, History, Op, OpType
from harness.metrics import MetricSample
from reports.evidence import wall_text
from reports.latency import client_pairs, percentile
from reports.model import Report

BINS = 120
"""Time bins per plot: a line of at most this many points per series keeps the SVG small."""
MIN_REQUESTS = 20
"""A history with fewer client requests than this gets no latency or throughput plot."""
WRITE_OPS = frozenset({"write", "txn", "insert", "update"})
READ_OPS = frozenset({"read", "select"})
FAILOVER_FAULTS = ("failover", "crash", "reboot")


@dataclasses.dataclass(frozen=True)
class Plot:
    """One figure of the page: what it shows (``kind``), the test whose history it came from, the SVG."""

    kind: str
    test: str
    title: str
    svg: str


def plots_of_run(report: Report) -> list[Plot]:
    """Every plot the run's histories allow, test by test in run order."""
    out: list[Plot] = []
    for test in report.tests:
        history = report.history(test["id"])
        if history is not None and len(history):
            for draw in (latency_plot, throughput_plot, failover_plots, backends_plot):
                out.extend(draw(test["id"], history))
        samples, anchor = report.metrics(test["id"])
        if samples:
            if history is None or not len(history):  # metrics without a history: their own anchor
                history = History((), anchor=anchor)
            out.extend(proxy_metric_plots(test["id"], samples, history, test.get("guarantees") or []))
    return out


# -- the data behind each plot -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Timebase:
    """Seconds since the history's first record (or ``origin`` for an empty one), and the axis label."""

    origin: int
    label: str

    @classmethod
    def of(cls, history: History, origin: int | None = None) -> Timebase:
        """The history's first record is zero (``origin`` when the history is empty)."""
        origin = history[0].time if len(history) else origin or 0
        if history.anchor is not None:
            return cls(origin, f"seconds since {wall_text(history.anchor, origin)} UTC")
        return cls(origin, "seconds since the history's first record")

    def s(self, t: int) -> float:
        return (t - self.origin) / 1e9


def error_kind(op: Op) -> str:
    """``fail 57P01`` / ``info timeout``: how a request went wrong, for the colours of the error bars."""
    code = op.error.code if op.error is not None and op.error.code else "no code"
    return f"{op.type.value} {code}"


def binned(points: list[tuple[float, float]], lo: float, hi: float) -> Iterator[tuple[float, list[float]]]:
    """Values grouped into ``BINS`` equal time bins over [lo, hi], as (bin middle, values)."""
    width = max((hi - lo) / BINS, 1e-3)
    bins: dict[int, list[float]] = defaultdict(list)
    for t, v in points:
        bins[min(int((t - lo) / width), BINS - 1)].append(v)
    for b in sorted(bins):
        yield lo + (b + 0.5) * width, bins[b]


# -- drawing ----------------------------------------------------------------------------------------------
def _figure(height: float = 3.2, *, left: float = 0.08) -> Any:
    """A 10-inch-wide figure with fixed margins: room for the axis labels below and the legend on the
    right.  Fixed, not matplotlib's constrained layout, which took 40 % of the time to draw a run."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, height))
    fig.subplots_adjust(left=left, right=0.8, bottom=0.6 / height, top=1 - 0.4 / height)
    return fig


def _svg(fig: Any, salt: str) -> str:
    """The figure as an ``<svg>`` element to put straight into the page (no XML prolog or doctype).
    Text stays text (searchable, small); the salt makes ids unique per plot and stable across runs."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _shade(ax: Any, windows: list[FaultWindow], tb: Timebase, end_s: float) -> None:
    """Grey bands for the fault windows, one legend entry per fault name."""
    named: set[str] = set()
    for w in windows:
        lo, hi = tb.s(w.start), tb.s(w.end) if w.end is not None else end_s
        ax.axvspan(lo, max(hi, lo + 1e-3), color="0.6", alpha=0.3, lw=0,
                   label=f"fault: {w.name}" if w.name not in named else None)
        named.add(w.name)


def latency_plot(test: str, history: History) -> list[Plot]:
    """p50 and p99 latency per time bin, one colour per endpoint (direct connections included)."""
    pairs = client_pairs(history)
    if len(pairs) < MIN_REQUESTS:
        return []
    tb = Timebase.of(history)
    end_s = tb.s(history.end_time or history[0].time)
    by_endpoint: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for inv, comp in pairs:
        if comp.type is OpType.OK:
            by_endpoint[inv.endpoint or "-"].append((tb.s(comp.time), (comp.time - inv.time) / 1e6))
    if not by_endpoint:
        return []
    fig = _figure()
    ax = fig.add_subplot()
    _shade(ax, history.fault_windows(), tb, end_s)
    for endpoint, points in sorted(by_endpoint.items()):
        rows = list(binned(points, 0.0, end_s))
        xs = [x for x, _ in rows]
        (line,) = ax.plot(xs, [percentile(v, 0.5) for _, v in rows], lw=1.2, label=f"{endpoint} p50")
        ax.plot(xs, [percentile(v, 0.99) for _, v in rows], lw=0.9, ls="--", color=line.get_color(),
                label=f"{endpoint} p99")
    ax.set_yscale("log")
    ax.set_xlabel(tb.label)
    ax.set_ylabel("latency (ms, log)")
    ax.set_title("Latency over time per endpoint (successful requests)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return [Plot("latency", test, "Latency over time per endpoint, fault windows shaded", _svg(fig, f"{test}-latency"))]


def throughput_plot(test: str, history: History) -> list[Plot]:
    """Successful requests per second, and errors per second stacked by kind, over time."""
    pairs = client_pairs(history)
    if len(pairs) < MIN_REQUESTS:
        return []
    tb = Timebase.of(history)
    end_s = tb.s(history.end_time or history[0].time)
    width = max(end_s / BINS, 1e-3)
    ok: dict[int, int] = defaultdict(int)
    errors: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for _, comp in pairs:
        b = min(int(tb.s(comp.time) / width), BINS - 1)
        if comp.type is OpType.OK:
            ok[b] += 1
        else:
            errors[error_kind(comp)][b] += 1
    fig = _figure()
    ax = fig.add_subplot()
    _shade(ax, history.fault_windows(), tb, end_s)
    xs = [(b + 0.5) * width for b in range(BINS)]
    ax.plot(xs, [ok.get(b, 0) / width for b in range(BINS)], color="tab:blue", lw=1.2, label="ok")
    bottom = [0.0] * BINS
    colours = ["tab:red", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"]
    for n, (kind, counts) in enumerate(sorted(errors.items())):
        heights = [counts.get(b, 0) / width for b in range(BINS)]
        ax.bar(xs, heights, width=width, bottom=bottom, color=colours[n % len(colours)], label=kind)
        bottom = [a + h for a, h in zip(bottom, heights, strict=True)]
    ax.set_xlabel(tb.label)
    ax.set_ylabel("requests per second")
    ax.set_title("Throughput and errors over time (errors by outcome and code)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return [Plot("throughput", test, "Throughput and errors over time, errors coloured by kind",
                 _svg(fig, f"{test}-throughput"))]


def failover_moments(history: History, window: FaultWindow) -> list[tuple[str, int]]:
    """(label, time) of what happened in one failover, in time order: the trigger, the promotion
    seen, the fault's end, per endpoint the first successful write and read once service was back (the
    first ok invoked after the first error that followed the trigger, errors of kinds the workload
    had before it with no fault on left out; without errors, the first ok after the trigger), and each
    idle-client probe."""
    moments: list[tuple[str, int]] = [(f"trigger ({window.name})", window.start)]
    promoted = next((o for o in history.events("new_writer") if o.time >= window.start), None)
    if promoted is not None:
        moments.append((f"promotion seen ({promoted.value})", promoted.time))
    if window.end is not None:
        moments.append((f"{window.name} ended", window.end))
    requests: dict[tuple[str, str], list[tuple[Op, Op]]] = defaultdict(list)
    usual: set[str] = set()  # errors the workload had with no fault on (deliberate ones): not the outage
    windows = history.fault_windows()
    for inv, comp in client_pairs(history):  # in invocation order
        if inv.time < window.start:
            if comp.type is not OpType.OK and not any(w.overlaps(inv.time, comp.time) for w in windows):
                usual.add(error_kind(comp))
            continue
        if inv.f == "idle_probe":
            moments.append((f"idle probe {comp.type.value} ({inv.process})", comp.time))
        elif inv.f in WRITE_OPS or inv.f in READ_OPS:
            requests[("write" if inv.f in WRITE_OPS else "read", inv.endpoint or "-")].append((inv, comp))
    for (kind, endpoint), pairs in sorted(requests.items()):
        errors = [comp.time for _, comp in pairs if comp.type is not OpType.OK and error_kind(comp) not in usual]
        since = min(errors) if errors else window.start
        back = next((comp.time for inv, comp in pairs if comp.type is OpType.OK and inv.time >= since), None)
        if back is not None:
            moments.append((f"first {kind} ok via {endpoint} ({'after errors' if errors else 'no errors'})", back))
    return sorted(moments, key=lambda m: m[1])


def failover_plots(test: str, history: History) -> list[Plot]:
    """One timeline per failover (or crash) window of the history."""
    windows = [w for w in history.fault_windows() if any(name in w.name for name in FAILOVER_FAULTS)]
    out = []
    for number, window in enumerate(windows, start=1):
        moments = failover_moments(history, window)
        fig = _figure(height=0.45 * len(moments) + 1.2, left=0.3)
        ax = fig.add_subplot()
        ys = list(range(len(moments)))[::-1]
        xs = [(t - window.start) / 1e9 for _, t in moments]
        if window.end is not None:
            ax.axvspan(0, (window.end - window.start) / 1e9, color="0.6", alpha=0.3, lw=0)
        ax.hlines(ys, 0, xs, color="0.7", lw=0.8)
        ax.plot(xs, ys, "o", color="tab:red")
        for x, y in zip(xs, ys, strict=True):
            ax.annotate(f"{x:+.3f} s", (x, y), textcoords="offset points", xytext=(6, -3), fontsize="small")
        ax.set_yticks(ys, [label for label, _ in moments])
        when = f" at {wall_text(history.anchor, window.start)} UTC" if history.anchor is not None else ""
        ax.set_xlabel(f"seconds since the trigger{when}")
        ax.set_title(f"Failover {number}: {window.name}")
        ax.margins(x=0.15)
        out.append(Plot("failover", test, f"Failover {number} timeline: trigger, promotion, first writes and reads, "
                        "idle probes", _svg(fig, f"{test}-failover-{number}")))
    return out


def backends_plot(test: str, history: History) -> list[Plot]:
    """Backend connections counted on each instance over time, against its pool cap when recorded."""
    samples: dict[str, list[tuple[float, float]]] = defaultdict(list)
    tb = Timebase.of(history)
    for inv, comp in client_pairs(history):
        if inv.f == "backend_count" and comp.type is OpType.OK and isinstance(comp.value, (int, float)):
            samples[comp.node or inv.endpoint or "-"].append((tb.s(comp.time), float(comp.value)))
    if not samples:
        return []
    caps: dict[str, Any] = {}
    for e in history.events("pool_cap"):
        caps.update(e.value if isinstance(e.value, dict) else {})
    fig = _figure()
    ax = fig.add_subplot()
    _shade(ax, history.fault_windows(), tb, tb.s(history.end_time or history[0].time))
    for node, points in sorted(samples.items()):
        (line,) = ax.step([t for t, _ in points], [v for _, v in points], where="post", label=f"{node} backends")
        if isinstance(caps.get(node), (int, float)):
            ax.axhline(caps[node], color=line.get_color(), ls="--", lw=1, label=f"{node} pool cap {caps[node]}")
    ax.set_ylim(bottom=0)
    ax.set_xlabel(tb.label)
    ax.set_ylabel("backend connections")
    ax.set_title("Backend connections over time against the pool cap")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return [Plot("backends", test, "Backend connections over time against the pool cap", _svg(fig, f"{test}-backends"))]




CONNECTIONS = "DatabaseConnections"
CAP = "MaxDatabaseConnectionsAllowed"
PINNED = "DatabaseConnectionsCurrentlySessionPinned"
CONNECTION_FAMILIES = ("POOL-", "FAILOVER-", "STORM-", "BORROW-")
"""Guarantees whose tests get the proxy's connections plot (for others it is a flat line)."""


def _series(samples: list[MetricSample], name: str, tb: Timebase) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for s in samples:
        if s.name == name:
            out[s.dimensions.get("Target", "-")].append((tb.s(s.time), s.value))
    return dict(out)


def proxy_metric_plots(test: str, samples: list[MetricSample], history: History,
                       guarantees: list[str]) -> list[Plot]:
    """From the proxy's own metrics: backend connections per instance against the cap it reports (for
    tests of pooling, failover, storms and borrow timeouts), and pinned sessions whenever any were.
    The history (possibly empty, with the metrics' anchor) gives the time axis and the fault windows."""
    tb = Timebase.of(history, origin=min(s.time for s in samples))
    end_s = max(tb.s(s.time) for s in samples)
    windows = history.fault_windows()
    out = []
    connections = _series(samples, CONNECTIONS, tb)
    if connections and any(g.startswith(CONNECTION_FAMILIES) for g in guarantees):
        caps = _series(samples, CAP, tb)
        fig = _figure()
        ax = fig.add_subplot()
        _shade(ax, windows, tb, end_s)
        for target, points in sorted(connections.items()):
            (line,) = ax.step([t for t, _ in points], [v for _, v in points], where="post",
                              label=f"{target} connections")
            if caps.get(target):
                ax.step([t for t, _ in caps[target]], [v for _, v in caps[target]], where="post", ls="--", lw=1,
                        color=line.get_color(), label=f"{target} cap")
        ax.set_ylim(bottom=0)
        ax.set_xlabel(tb.label)
        ax.set_ylabel("backend connections")
        ax.set_title("Backend connections as the proxy reports them, against its cap")
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
        out.append(Plot("proxy-connections", test, "Backend connections over time (proxy metrics) against the cap",
                        _svg(fig, f"{test}-proxy-connections")))
    pinned = _series(samples, PINNED, tb)
    if any(v > 0 for points in pinned.values() for _, v in points):
        fig = _figure()
        ax = fig.add_subplot()
        _shade(ax, windows, tb, end_s)
        for target, points in sorted(pinned.items()):
            ax.step([t for t, _ in points], [v for _, v in points], where="post", label=f"{target} pinned")
        ax.set_ylim(bottom=0)
        ax.set_xlabel(tb.label)
        ax.set_ylabel("pinned sessions")
        ax.set_title("Sessions pinned to a backend over time (proxy metrics)")
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
        out.append(Plot("pinned", test, "Pinned sessions over time (proxy metrics)", _svg(fig, f"{test}-pinned")))
    return out
