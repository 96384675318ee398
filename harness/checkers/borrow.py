"""BORROW-TIMEOUT: a client that cannot get a backend connection gets RDS Proxy's error, on time.

Three things are checked on the history's invocation/completion pairs:

1. *Text*: every error that looks like a borrow timeout (MySQL errno 9501, or text mentioning
   "timed-out waiting") carries exactly the documented text - PostgreSQL
   ``Timed-out waiting to acquire database connection.`` and MySQL errno 9501 with
   ``Timed-out waiting to acquire database connection``.  Clients and tooling match on it.
2. *Time*: such an error arrives ConnectionBorrowTimeout after the request was sent, give or take
   the guarantee's threshold (seconds).  Earlier means the proxy gave up too soon; later means it
   kept the client waiting past its promise.
3. *Expectation*: requests the workload marked ``extra={"expect": "borrow_timeout"}`` at
   invocation (sent while the pool was known to be exhausted) must end with that error.  A
   request marked ``"borrow_timeout_if_refused"`` must end with it if it fails at all: a client's
   connect, which a proxy may or may not serve without a backend connection (PostgreSQL sessions
   borrow one at login, MySQL ones may not), yet which must not be refused with any other error
   (a proxy answering an exhausted pool with its "too many connections" would otherwise go unseen).

The figure is the largest deviation from the configured timeout, in seconds.
"""

from __future__ import annotations

from harness.checkers.base import CheckContext, Verdict, broken, judge, seconds, unknown
from harness.history import History, Op, OpError, OpType

PG_TEXT = "Timed-out waiting to acquire database connection."
MYSQL_TEXT = "Timed-out waiting to acquire database connection"
MYSQL_ERRNO = "9501"
DOCUMENTED_ERRORS: dict[str, tuple[str | None, str]] = {
    "postgres": (None, PG_TEXT),
    "mysql": (MYSQL_ERRNO, MYSQL_TEXT),
}
"""Each engine's borrow-timeout error as RDS Proxy documents it: (error code that must match, or
None when only the text is documented; exact text)."""
EXPECT_TIMEOUT = "borrow_timeout"
EXPECT_TIMEOUT_IF_REFUSED = "borrow_timeout_if_refused"
"""The ``expect`` marks a workload puts in a request's invocation extra (see the module)."""
DEFAULT_BORROW_TIMEOUT_S = 120.0
"""RDS Proxy's default ConnectionBorrowTimeout, used when the context does not say."""


def looks_like_borrow_timeout(error: OpError | None) -> bool:
    if error is None:
        return False
    return error.code == MYSQL_ERRNO or "timed-out waiting" in error.text.lower()


def has_documented_text(error: OpError, engine: str | None) -> bool:
    """Whether ``error`` is the engine's documented borrow-timeout error (any engine's, when the
    engine is not known)."""
    text = error.text.strip()
    candidates = [DOCUMENTED_ERRORS[engine]] if engine in DOCUMENTED_ERRORS else DOCUMENTED_ERRORS.values()
    return any(text == documented and (code is None or error.code == code) for code, documented in candidates)


def documented_description(engine: str | None) -> str:
    """The engine's documented borrow-timeout error in words (every engine's, when it is not known)."""
    errors = [DOCUMENTED_ERRORS[engine]] if engine in DOCUMENTED_ERRORS else DOCUMENTED_ERRORS.values()
    return " / ".join(f"{f'errno {code} ' if code else ''}{text!r}" for code, text in errors)


class BorrowTimeoutChecker:
    """BORROW-TIMEOUT: wrong error texts, early or late timeouts, and expected timeouts that did not happen."""

    guarantee_id = "BORROW-TIMEOUT"

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        timeout_s = context.borrow_timeout_s
        note = ""
        if timeout_s is None:
            timeout_s, note = DEFAULT_BORROW_TIMEOUT_S, " (timeout not given; RDS default 120 s assumed)"
        timeouts: list[tuple[Op, Op]] = []
        expected_missing: list[Op] = []
        expected = 0
        for inv, comp in history.pairs():
            is_timeout = (comp is not None and comp.type is not OpType.OK
                          and looks_like_borrow_timeout(comp.error))
            if is_timeout:
                timeouts.append((inv, comp))
            expect = inv.extra.get("expect")
            if expect == EXPECT_TIMEOUT or (expect == EXPECT_TIMEOUT_IF_REFUSED and comp is not None
                                            and comp.type is not OpType.OK):
                expected += 1
                if not is_timeout:
                    expected_missing.append(comp if comp is not None else inv)
        if not timeouts and not expected:
            return unknown(g, "no request ended in a borrow timeout and none was expected to")
        wrong_text = [c for _, c in timeouts if not has_documented_text(c.error, context.engine)]
        deviations = [(abs(seconds(c.time - i.time) - timeout_s), c) for i, c in timeouts]
        worst = max((d for d, _ in deviations), default=0.0)
        off_time = [c for d, c in deviations if d > g.threshold]
        reason = (f"{len(timeouts)} borrow timeouts against a {timeout_s:g} s timeout{note}; "
                  f"worst deviation {worst:.3f} s")
        if wrong_text:
            return broken(g, worst, f"{reason}; {len(wrong_text)} with a text other than "
                                    f"{documented_description(context.engine)}", wrong_text)
        if expected_missing:
            return broken(g, worst, f"{reason}; {len(expected_missing)} of {expected} requests sent to an "
                                    "exhausted pool did not end in a borrow timeout", expected_missing)
        return judge(g, worst, reason, off_time)
