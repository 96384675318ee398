"""A session keeps its own state: what a client set, it sees on every later request.

RDS Proxy multiplexes only sessions it can move safely; a session that changed its state (a SET, a
temporary table, an SQL prepared statement, a MySQL user variable) is pinned, so every later
request of that client meets the state it made.  A pooler that moves such a session anyway loses
it: PgBouncer in transaction mode, or pgpool-II load balancing a session's reads over backends that
never saw its SET.  ISOLATION-NO-SESSION-LEAK cannot see that (nothing of *another* client's shows);
this checker looks from the other side.

The ops are the session-state vocabulary of :mod:`harness.checkers.state_ops`.  For each process,
walking its requests in order:

* an ok ``set_state`` makes an *expectation*: the setting's value, or that the object exists (an
  advisory lock that was not granted makes none); a ``set_state`` whose outcome is unknown (info,
  or never completed) drops the expectation for that name, since nobody knows what the session
  holds; a definitely failed one changes nothing;
* a ``connect`` (a new session under the same process id) drops every expectation;
* an ok ``read_state`` of a name with an expectation is an *own-state read*; it saw its state when
  it observed the expected value (or the object).  Reads the server could not make (``unjudged``)
  and reads that failed are not observations; the reason counts the failed ones.

When no client got as far as reading its own state back, the verdict is unknown and says how many
attempts to make state failed and why (a pooler that refuses the transactions the state is made in,
as PgBouncer's statement mode does, leaves nothing to judge here; TRANSACTION-ONE-BACKEND judges
that refusal).

The figure is judged per client, as a client experiences it: each client's share of own-state
reads that saw its state, and the figure is the lowest of those shares in percent (the threshold is
100 %: one read that missed is a session that lost what it made).  With no own-state read at all
the verdict is unknown.
"""

from __future__ import annotations

from collections import defaultdict

from harness.checkers.base import CheckContext, Verdict, judge, unknown
from harness.checkers.state_ops import READ_FS, SET_FS, hashable, normalised, state_key, unmade_observation
from harness.history import History, Op, OpType

__all__ = ["OwnStateChecker"]


class OwnStateChecker:
    """SESSION-OWN-STATE: own-state reads that did not see the state the same session made."""

    guarantee_id = "SESSION-OWN-STATE"

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        expected: dict[object, dict[tuple[str, str], object]] = defaultdict(dict)
        seen: dict[object, int] = defaultdict(int)
        missed: dict[object, list[Op]] = defaultdict(list)
        failed_reads = 0
        failed_sets: list[Op] = []
        for inv, done in history.pairs():
            process = inv.process
            if inv.f == "connect":
                expected.pop(process, None)
                continue
            if inv.f not in SET_FS | READ_FS:
                continue
            if inv.f in SET_FS:
                self._after_set(expected[process], inv, done)
                if done is None or done.type is not OpType.OK:
                    failed_sets.append(done or inv)
                continue
            if done is None or done.type is not OpType.OK:
                failed_reads += 1 if self._names_own(expected[process], inv) else 0
                continue
            o = normalised(done)
            if not isinstance(o.value, dict) or unmade_observation(o) is not None:
                continue
            name = (str(o.value.get("kind")), str(o.value.get("name")))
            if name not in expected[process]:
                continue
            observed = o.value.get("value")
            want = expected[process][name]
            if (observed is True) if want is True else (observed is not None and hashable(observed) == want):
                seen[process] += 1
            else:
                missed[process].append(done)
        clients = set(seen) | set(missed)
        if not clients:
            reason = "no client read session state it had set itself earlier in the same session"
            if failed_sets:
                first = failed_sets[0]
                why = first.error.text if first.error is not None else "no answer"
                reason += f"; {len(failed_sets)} attempts to set state failed (first: {why})"
            return unknown(g, reason, evidence=failed_sets)
        shares = {p: 100.0 * seen[p] / (seen[p] + len(missed[p])) for p in clients}
        reads = sum(seen.values()) + sum(len(m) for m in missed.values())
        losers = sorted((p for p in clients if missed[p]), key=str)
        reason = (f"{reads} reads of a client's own session state by {len(clients)} clients; "
                  f"{len(losers)} clients did not see their own state")
        evidence = [o for p in losers for o in missed[p]]
        if losers:
            kinds = sorted({str(o.value.get("kind")) for o in evidence if isinstance(o.value, dict)})
            reason += (f" in {len(evidence)} reads (kinds: {', '.join(kinds)}; lowest share "
                       f"{min(shares.values()):.0f} %, client {losers[0]})")
        if failed_reads:
            reason += f"; {failed_reads} reads of own state failed and were not judged"
        return judge(g, min(shares.values()), reason, evidence)

    @staticmethod
    def _after_set(expected: dict[tuple[str, str], object], inv: Op, done: Op | None) -> None:
        """Update a session's expectations after one of its ``set_state`` requests."""
        intended = normalised(inv)
        if not isinstance(intended.value, dict):
            return
        name = (str(intended.value.get("kind")), str(intended.value.get("name")))
        if done is None or done.type is OpType.INFO:
            expected.pop(name, None)  # it may or may not have happened
            return
        if done.type is not OpType.OK:
            return  # a definite failure changed nothing
        made = normalised(done)
        key = state_key(made, made_only=True)
        if key is None:
            expected.pop(name, None)
        else:
            expected[(key[0], key[1])] = key[2]

    @staticmethod
    def _names_own(expected: dict[tuple[str, str], object], inv: Op) -> bool:
        v = normalised(inv).value
        return isinstance(v, dict) and (str(v.get("kind")), str(v.get("name"))) in expected
