"""A multi-statement transaction runs whole on one backend connection.

RDS Proxy multiplexes at transaction level: every statement between BEGIN and COMMIT (or ROLLBACK)
runs on the backend connection the transaction started on, so the transaction sees its own
uncommitted writes and ends as one.  A pooler that moves a client between statements breaks that
(the write lands in one session, the read in another, the ROLLBACK in a third that has nothing to
undo), and one that refuses transactions outright (PgBouncer in statement mode) does not keep the
promise either: a refused transaction is evidence that it does not hold, never a reason to judge
nothing.

Conventions: every statement of one transaction is its own request, so that each records who
served it.  Its invocation's ``extra`` holds ``txn`` (an id unique in the run) and ``step``:

* ``begin`` - the BEGIN / START TRANSACTION, naming its backend when the request also read who served it;
* ``write`` - an insert of the transaction's own row, naming ``node`` and ``extra["backend"]``;
* ``read_own`` - a read of that row inside the transaction; its value is how many it saw (1 expected);
* ``read`` - any other read inside the transaction, naming its backend;
* ``commit`` / ``rollback`` - the end (it returns no row, so it names no backend).

After the transaction, an op ``f="txn_outcome"`` with the same ``txn`` and ``extra["ended"]``
(``commit`` / ``rollback``) reads whether the row is there now: the committed row must be, the
rolled-back one must not.

A transaction is *broken* when any of its statements failed or its outcome is unknown (refused,
cut off), when its statements were served by more than one (instance, backend) pair, when a
``read_own`` saw nothing, or when the outcome read contradicts how it ended.  It is *judged* when
it is broken or at least two of its statements named their backend; the figure is the number of
broken transactions, and a history with none judged is unknown.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from harness.checkers.base import CheckContext, Verdict, judge, unknown
from harness.history import History, Op, OpType

__all__ = ["STEPS", "OneBackendChecker"]

STEPS = ("begin", "write", "read_own", "read", "commit", "rollback")
ENDS = ("commit", "rollback")


@dataclasses.dataclass
class _Transaction:
    statements: list[tuple[Op, Op | None]] = dataclasses.field(default_factory=list)
    outcome: tuple[Op, Op | None] | None = None

    def ended(self) -> str | None:
        for inv, _ in self.statements:
            if inv.extra.get("step") in ENDS:
                return str(inv.extra["step"])
        return None

    def fault(self) -> tuple[str, Op] | None:
        """Why this transaction did not run whole on one backend (and the op that shows it), or None."""
        for inv, done in self.statements:
            if done is None or done.type is not OpType.OK:
                step = inv.extra.get("step")
                error = done.error.text if done is not None and done.error is not None else "no answer"
                return f"refused or failed at {step} ({error})", done or inv
        served = [(done.node, str(done.extra["backend"])) for _, done in self.statements
                  if done is not None and done.extra.get("backend") is not None]
        if len(set(served)) > 1:
            moved = next(done for _, done in self.statements
                         if done is not None and done.extra.get("backend") is not None
                         and (done.node, str(done.extra["backend"])) != served[0])
            return f"ran on {len(set(served))} backends", moved
        for inv, done in self.statements:
            if inv.extra.get("step") == "read_own" and done is not None and not done.value:
                return "did not see its own uncommitted write", done
        if self.outcome is not None:
            inv, done = self.outcome
            ended = inv.extra.get("ended") or self.ended()
            if done is not None and done.type is OpType.OK:
                if ended == "rollback" and done.value:
                    return "its rolled-back write is visible", done
                if ended == "commit" and not done.value:
                    return "its committed write is missing", done
        return None

    def identified(self) -> int:
        return sum(1 for _, done in self.statements if done is not None and done.extra.get("backend") is not None)


class OneBackendChecker:
    """TRANSACTION-ONE-BACKEND: transactions that did not run whole on one backend connection."""

    guarantee_id = "TRANSACTION-ONE-BACKEND"

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        transactions: dict[tuple[object, str], _Transaction] = {}
        for inv, done in history.pairs():
            txn = inv.extra.get("txn")
            if txn is None:
                continue
            t = transactions.setdefault((inv.process, str(txn)), _Transaction())
            if inv.f == "txn_outcome":
                t.outcome = (inv, done)
            elif inv.extra.get("step") in STEPS:
                t.statements.append((inv, done))
        broken: list[tuple[str, Op]] = []
        judged = 0
        ends: Counter[str] = Counter()
        for t in transactions.values():
            fault = t.fault()
            if fault is None and t.identified() < 2:
                continue
            judged += 1
            ends[t.ended() or "unfinished"] += 1
            if fault is not None:
                broken.append(fault)
        if not judged:
            return unknown(g, "no multi-statement transaction with two or more statements naming their "
                              "backend, and none refused")
        reason = (f"{judged} transactions judged ({', '.join(f'{n} {e}' for e, n in sorted(ends.items()))}), "
                  f"{len(broken)} did not run whole on one backend")
        if broken:
            why = Counter(w.split(" (")[0] for w, _ in broken)
            reason += ": " + "; ".join(f"{n} {w}" for w, n in why.most_common())
        return judge(g, float(len(broken)), reason, [op for _, op in broken])
