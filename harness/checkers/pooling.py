"""Pool guarantees: the per-instance backend cap, and transaction-level multiplexing.

Conventions the workload follows so these checkers can judge it:

* Backend counts come either from ok ops ``f="backend_count"`` with ``node`` = the instance and
  ``value`` = the number of the proxy's backend connections the harness counted on it directly
  (``pg_stat_activity`` / ``information_schema.PROCESSLIST``; ``value`` None is a sample the server
  could not take, named in the reason and never counted), or from proxy metric samples named
  ``DatabaseConnections`` with a ``Target`` dimension (the instance id).  When the history has
  ``backend_count`` ops only they are used: a count taken from the server is independent of the
  proxy under test, whose own gauge could understate what it holds.
* Every client request that can tell which backend connection served it records that id in
  ``extra["backend"]`` (``pg_backend_pid()`` / ``CONNECTION_ID()``) and the instance in ``node``.
  A process is one client connection.  A process that ran a pinning statement (an ok op with
  ``f="pin_trigger"``) is left out of the multiplexing check: it is meant to stay put.
* Connects and requests the workload needed served (:mod:`harness.checkers.served`) that failed
  count against multiplexing: many clients sharing few backends is only shown by serving them all.
"""

from __future__ import annotations

from collections import defaultdict

from harness.checkers.base import CheckContext, Verdict, judge, unknown
from harness.checkers.served import answer_for_unserved, unserved
from harness.history import History, Op, OpType

BACKEND_COUNT_METRIC = "DatabaseConnections"


class BackendCapChecker:
    """POOL-BACKEND-CAP: the largest backend count seen on any instance, as a percentage of its cap."""

    guarantee_id = "POOL-BACKEND-CAP"

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        if not context.pool_cap:
            return unknown(g, "the pool cap per instance is not known (context.pool_cap)")
        samples: list[tuple[str, float, Op | None]] = []
        absent = 0
        for o in history.ops(f="backend_count", type=OpType.OK):
            if o.node is not None and isinstance(o.value, (int, float)) and not isinstance(o.value, bool):
                samples.append((o.node, float(o.value), o))
            elif o.value is None:
                absent += 1
        source = "counted on the servers"
        if absent:
            source += (f" ({absent} samples absent: the server could not tell the proxy's connections "
                       "from others)")
        if not samples:
            source = "from the proxy's DatabaseConnections gauge" + (
                f" ({absent} server samples absent: the server could not tell the proxy's connections "
                "from others)" if absent else "")
            for m in context.metrics:
                if m.name == BACKEND_COUNT_METRIC and "Target" in m.dimensions:
                    samples.append((m.dimensions["Target"], m.value, None))
        samples = [s for s in samples if s[0] in context.pool_cap]
        if not samples:
            return unknown(g, "no backend-count samples for instances with a known cap "
                              "(DatabaseConnections metric or backend_count ops)"
                           + (f"; {absent} server samples absent: the server could not tell the proxy's "
                              "connections from others" if absent else ""))
        worst_pct, worst = -1.0, samples[0]
        over: list[Op] = []
        for node, count, op in samples:
            cap = context.pool_cap[node]
            pct = 100.0 * count / cap if cap > 0 else (0.0 if count == 0 else float("inf"))
            if pct > worst_pct:
                worst_pct, worst = pct, (node, count, op)
            if count > cap and op is not None:
                over.append(op)
        node, count, _ = worst
        reason = (f"{len(samples)} samples {source}; peak {count:g} backend connections on {node} "
                  f"against a cap of {context.pool_cap[node]}")
        return judge(g, worst_pct, reason, over)


class MultiplexingChecker:
    """POOL-MULTIPLEXING: the most distinct backend connections one unpinned client was served by."""

    guarantee_id = "POOL-MULTIPLEXING"

    def check(self, history: History, context: CheckContext) -> Verdict:
        return answer_for_unserved(context.guarantee(self.guarantee_id), self._spread(history, context),
                                   unserved(history), "client connects and requests")

    def _spread(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        pinned = {o.process for o in history.ops(f="pin_trigger", type=OpType.OK)}
        seen: dict[object, set[tuple[str | None, str]]] = defaultdict(set)
        requests: dict[object, int] = defaultdict(int)
        for o in history.ops(type=OpType.OK):
            backend = o.extra.get("backend")
            if backend is None or o.process in pinned:
                continue
            seen[o.process].add((o.node, str(backend)))
            requests[o.process] += 1
        eligible = {p: s for p, s in seen.items() if requests[p] >= 2}
        if not eligible:
            return unknown(g, "no unpinned client recorded its backend id on two or more requests")
        best_process, best = max(eligible.items(), key=lambda kv: len(kv[1]))
        reason = (f"{len(eligible)} clients with two or more requests; client {best_process!r} was "
                  f"served by {len(best)} backend connections")
        return judge(g, float(len(best)), reason)
