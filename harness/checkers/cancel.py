"""CANCEL-OWN-QUERY and CANCEL-NEVER-OTHERS: a cancel stops its sender's statement, and nobody else's.

Behind a pooling proxy a cancel names a *session* (PostgreSQL: the BackendKeyData the proxy gave;
MySQL: the connection id of the proxy's greeting), while the statement runs on whatever backend
connection that session holds at the moment; the backend it held a moment ago may be running another
client's statement by now.  So a proxy can fail in two ways: drop or misroute a cancel (the sender's
statement runs on), or deliver it by backend instead of by session (a stranger's statement stops).

Workload convention (``suites/conformance/test_cancel.py`` follows it):

* a *long statement* is a request whose invocation's extra holds :data:`SLEEP_KEY` (the seconds it
  sleeps on the server), sent with the dialect's
  :meth:`~harness.clients.dialects.base.Dialect.cancellable_sleep_sql`, whose recorded value is the
  sleep's own answer;
* a *cancel* is an op ``cancel`` of a process of its own whose invocation's extra names the client it
  was aimed at (:data:`~harness.clients.cancel.TARGET_KEY`); it is *aimed at a statement* when it was
  invoked while that client's long statement was in flight.

A statement is *stopped by a cancel* when it ends with one of the dialect's
:attr:`~harness.clients.dialects.base.Dialect.cancelled_codes` (PostgreSQL 57014; MySQL 1317, which
MariaDB 10.11 answers for ``SELECT SLEEP(n), ...`` under KILL QUERY), or answers the dialect's
:attr:`~harness.clients.dialects.base.Dialect.interrupted_sleep_value` (MySQL 8's lone ``SLEEP()``).
"""

from __future__ import annotations

from harness.checkers.base import CheckContext, Verdict, broken, completed_pairs, judge, seconds, unknown
from harness.clients.cancel import TARGET_KEY
from harness.clients.dialects import dialect_for
from harness.clients.dialects.base import Dialect
from harness.clients.outcomes import is_connection_level
from harness.history import History, Op, OpType

SLEEP_KEY = "sleep_s"
"""Extra of a long statement's invocation: how many seconds it sleeps on the server."""

Pair = tuple[Op, "Op | None"]


def _long_statements(history: History) -> list[Pair]:
    return [p for p in history.pairs() if SLEEP_KEY in p[0].extra and p[0].f != "cancel"]


def _cancels(history: History) -> list[Pair]:
    return [p for p in completed_pairs(history, f="cancel") if TARGET_KEY in p[0].extra]


def _aimed_at(statement: Pair, cancels: list[Pair]) -> list[Pair]:
    """The cancels aimed at ``statement``: at its client, invoked while it was in flight."""
    inv, comp = statement
    end = comp.time if comp is not None else float("inf")
    return [c for c in cancels if c[0].extra[TARGET_KEY] == inv.process and inv.time <= c[0].time <= end]


def stopped_by_cancel(completion: Op | None, dialect: Dialect) -> bool:
    """Whether a long statement ended the way a cancel ends one (see the module)."""
    if completion is None:
        return False
    if completion.type is OpType.OK:
        return dialect.interrupted_sleep_value is not None and completion.value == dialect.interrupted_sleep_value
    return completion.error is not None and completion.error.code in dialect.cancelled_codes


def _refused(cancel: Pair) -> bool:
    """A cancel the system under test answered with an error of its own (not a broken path)."""
    comp = cancel[1]
    return comp is not None and comp.type is not OpType.OK and not is_connection_level(comp.error)


def _ending(completion: Op | None) -> str:
    if completion is None:
        return "had not ended when the test did"
    if completion.type is OpType.OK:
        return f"completed with {completion.value!r}"
    error = completion.error
    return f"ended with {error.code}: {error.text}" if error is not None else "ended with no answer"


class CancelOwnQueryChecker:
    """CANCEL-OWN-QUERY: the longest time from a client's first cancel of its running statement to
    the statement's end; a statement a cancel did not stop breaks the guarantee whatever the figure."""

    guarantee_id = "CANCEL-OWN-QUERY"

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        if context.engine is None:
            return unknown(g, "the run's engine is not known, so neither is the cancel error to expect")
        dialect = dialect_for(context.engine)
        cancels = _cancels(history)
        targeted = [(s, aimed) for s in _long_statements(history) if (aimed := _aimed_at(s, cancels))]
        if not targeted:
            return unknown(g, f"no cancel was aimed at a running statement ({len(cancels)} cancels in the history)")
        delays: list[float] = []
        not_stopped: list[Op] = []
        undecided: list[str] = []
        for (inv, comp), aimed in targeted:
            delivered = [c for c in aimed if c[1] is not None and (c[1].type is OpType.OK or _refused(c))]
            if not delivered:
                undecided.append(f"no cancel aimed at {inv.process}'s statement reached the system under test "
                                 f"({_ending(aimed[0][1])})")
                continue
            if comp is None:
                undecided.append(f"{inv.process}'s cancelled statement had not ended when the test did")
                continue
            delays.append(seconds(comp.time - min(c[0].time for c in delivered)))
            if not stopped_by_cancel(comp, dialect):
                not_stopped.append(comp)
        figure = max(delays) if delays else None
        reason = (f"{len(targeted)} statements cancelled by their own clients, {len(delays) - len(not_stopped)} "
                  f"stopped with the cancel error"
                  + (f"; the slowest ended {figure:.2f} s after its first cancel" if figure is not None else ""))
        if not_stopped:
            ends = "; ".join(f"{o.process} {_ending(o)}" for o in not_stopped[:5])
            return broken(g, figure, f"{reason}; not stopped by their cancel: {ends}", not_stopped)
        if figure is not None and not g.holds(figure):
            return judge(g, figure, reason)
        if undecided or figure is None:
            return unknown(g, f"{reason}; {'; '.join(undecided[:5])}", figure=figure)
        return judge(g, figure, reason)


class CancelNeverOthersChecker:
    """CANCEL-NEVER-OTHERS: long statements no cancel was aimed at that did not complete normally."""

    guarantee_id = "CANCEL-NEVER-OTHERS"

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        if context.engine is None:
            return unknown(g, "the run's engine is not known, so neither is the cancel error to expect")
        dialect = dialect_for(context.engine)
        cancels = _cancels(history)
        delivered = [c for c in cancels if c[1] is not None and c[1].type is OpType.OK]
        bystanders = [s for s in _long_statements(history) if not _aimed_at(s, cancels)]
        if not bystanders:
            return unknown(g, "no statement ran that no cancel was aimed at: nobody could have been hit")
        stopped = [comp for _inv, comp in bystanders if comp is not None and stopped_by_cancel(comp, dialect)]
        failed = [comp for _inv, comp in bystanders
                  if comp is not None and comp.type is not OpType.OK and not stopped_by_cancel(comp, dialect)]
        running = [inv for inv, comp in bystanders if comp is None]
        stale = sum(1 for c in delivered if not any(_aimed_at(s, [c]) for s in _long_statements(history)))
        reason = (f"{len(delivered)} cancels delivered ({stale} after their client's statement had ended); "
                  f"{len(bystanders)} statements of others ran meanwhile, {len(stopped)} stopped as if cancelled"
                  + (f", {len(failed)} failed otherwise" if failed else ""))
        wrong = stopped + failed
        if wrong:
            ends = "; ".join(f"{o.process} {_ending(o)}" for o in wrong[:5])
            return judge(g, len(wrong), f"{reason}: {ends}", wrong)
        if not delivered:
            return unknown(g, f"{reason}: no cancel was delivered, so none could go astray", figure=0)
        if running:
            return unknown(g, f"{reason}; {len(running)} had not ended when the test did", figure=0)
        return judge(g, 0, reason)
