"""Requests a workload needed served: a failure among them counts, it is never passed over.

A checker that judges only the requests that succeeded would pass a proxy that refused most of its
clients, on the strength of the few it served.  So a suite marks the requests (and connects) that a
healthy proxy must serve, with no fault active, by invoking them with ``extra={"expect": "served"}``
(:data:`EXPECT_SERVED`); a checker folds those that did not complete ok into its verdict
(:func:`answer_for_unserved`):

* one that waited out the proxy's borrow timeout (RDS Proxy's documented error, MySQL errno 9501)
  met a limit the proxy states: every backend of its pool was busy.  That is the pool's business,
  so the guarantee under judgement is *unknown* for those requests, with the count and the reason;
* any other failure (a refused connection, an error, a request still unanswered at the client's
  deadline) counts *against* the guarantee: the verdict is false, with those requests as evidence.

Requests made while a fault is active are not marked, so failovers and crashes keep their own
guarantees (FAILOVER-*) for what they break.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from harness.checkers.base import Validity, Verdict, broken, completed_pairs, unknown
from harness.checkers.borrow import looks_like_borrow_timeout
from harness.guarantees import Guarantee
from harness.history import History, Op, OpType

EXPECT_SERVED = "served"
"""``extra["expect"]`` of an invocation a healthy proxy must answer ok."""


def expected_served(history: History, *,
                    endpoint: str | Iterable[str] | None = None) -> list[tuple[Op, Op | None]]:
    """Every request invoked with ``expect = served`` (through ``endpoint``), with its completion."""
    return [(i, c) for i, c in completed_pairs(history, endpoint=endpoint) if i.extra.get("expect") == EXPECT_SERVED]


def unserved(history: History, *, endpoint: str | Iterable[str] | None = None) -> list[tuple[Op, Op | None]]:
    """Requests invoked with ``expect = served`` (through ``endpoint``) that did not complete ok:
    failed, indeterminate, or never completed."""
    return [(i, c) for i, c in expected_served(history, endpoint=endpoint) if c is None or c.type is not OpType.OK]


def _error_summary(pairs: list[tuple[Op, Op | None]]) -> str:
    """The commonest errors, as ``text (count)``."""
    texts = Counter(" ".join((c.error.text if c is not None and c.error else "no answer").split())[:80]
                    for _, c in pairs)
    return "; ".join(f"{t} ({n})" for t, n in texts.most_common(3))


def answer_for_unserved(g: Guarantee, verdict: Verdict, pairs: list[tuple[Op, Op | None]], what: str) -> Verdict:
    """``verdict`` also answering for ``pairs`` (from :func:`unserved`); ``what`` names them
    (``"writer-endpoint requests"``)."""
    if not pairs:
        return verdict
    limited = [(i, c) for i, c in pairs if c is not None and looks_like_borrow_timeout(c.error)]
    failed = [(i, c) for i, c in pairs if c is None or not looks_like_borrow_timeout(c.error)]
    if failed:
        said = (f"{len(failed)} {what} the workload needed were not served ({_error_summary(failed)})"
                + (f", {len(limited)} more waited out the borrow timeout" if limited else ""))
        reason = f"{verdict.reason}; {said}" if verdict.reason else said
        return broken(g, verdict.figure, reason, [c or i for i, c in failed])
    said = (f"{len(limited)} {what} waited out the proxy's borrow timeout (every backend of its pool was busy), "
            f"so they were not judged")
    if verdict.valid is Validity.FALSE:
        return Verdict(verdict.guarantee_id, verdict.valid, verdict.figure, verdict.threshold, verdict.unit,
                       f"{verdict.reason}; {said}", verdict.evidence)
    return unknown(g, f"{verdict.reason}; {said}" if verdict.reason else said, figure=verdict.figure,
                   evidence=[c for _, c in limited if c is not None])
