"""Verdicts, the checker protocol, and the rules for combining verdicts.

A checker is a pure function from a history (plus what the run knew: metrics samples, the pool
cap, a direct-connection baseline...) to a :class:`Verdict` about one guarantee.  Verdicts are
three-valued, as in Jepsen: ``TRUE`` (held), ``FALSE`` (broken, with the ops that broke it as
evidence) and ``UNKNOWN`` (the history cannot tell - it lacks what the checker needs, or the checker
itself failed).  Combining ranks FALSE over UNKNOWN over TRUE, so one broken promise fails a run and
an unprovable one keeps it from passing.
"""

from __future__ import annotations

import dataclasses
import enum
import traceback
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from harness import guarantees as _guarantees
from harness.errors import HarnessError
from harness.guarantees import Guarantee
from harness.history import History, Op
from harness.metrics import MetricSample

MAX_EVIDENCE = 20
"""Verdicts keep at most this many evidence ops; the reason says how many there were."""


class CheckerError(HarnessError):
    """Root of errors raised by checkers; :func:`check_safe` turns any error into UNKNOWN."""


class Validity(str, enum.Enum):
    """The three outcomes of a check."""

    TRUE = "true"
    FALSE = "false"
    UNKNOWN = "unknown"


_RANK = {Validity.TRUE: 0, Validity.UNKNOWN: 1, Validity.FALSE: 2}


@dataclasses.dataclass(frozen=True)
class CheckContext:
    """What a run knew besides its history.  Every field is optional; checkers that need a missing
    one return UNKNOWN saying which.

    * ``catalogue``      - guarantees with the thresholds in force (see ``load_thresholds``);
    * ``metrics``        - proxy metric samples taken during the run (read through the target);
    * ``pool_cap``       - per-instance backend cap (max_connections x MaxConnectionsPercent / 100);
    * ``borrow_timeout_s`` - the ConnectionBorrowTimeout the target was configured with;
    * ``initial_writer`` - the writer instance when the run started;
    * ``reader_weights`` - each reader's weight for balancing (its max_connections);
    * ``baseline``       - a history of the same workload sent directly to the database.
    """

    catalogue: Mapping[str, Guarantee] = dataclasses.field(default_factory=lambda: _guarantees.CATALOGUE)
    metrics: Sequence[MetricSample] = ()
    pool_cap: Mapping[str, int] | None = None
    borrow_timeout_s: float | None = None
    initial_writer: str | None = None
    reader_weights: Mapping[str, float] | None = None
    baseline: History | None = None
    engine: str | None = None
    target: str | None = None

    def guarantee(self, guarantee_id: str) -> Guarantee:
        return _guarantees.get(guarantee_id, self.catalogue)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The judgement on one guarantee: validity, the measured figure, and why."""

    guarantee_id: str
    valid: Validity
    figure: float | None
    threshold: float | None
    unit: str
    reason: str
    evidence: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["valid"] = self.valid.value
        return d


class Checker(Protocol):
    """Judges one guarantee from a history; must not mutate its arguments or do I/O."""

    guarantee_id: str

    def check(self, history: History, context: CheckContext) -> Verdict: ...


# -- building verdicts ----------------------------------------------------------------------------
def unknown(guarantee: Guarantee, reason: str, *, figure: float | None = None,
            evidence: Iterable[Op] = ()) -> Verdict:
    """A verdict for a history that cannot show whether ``guarantee`` held."""
    return Verdict(guarantee.id, Validity.UNKNOWN, figure, guarantee.threshold, guarantee.unit, reason,
                   _evidence(evidence))


def judge(guarantee: Guarantee, figure: float, reason: str, evidence: Iterable[Op] = ()) -> Verdict:
    """TRUE or FALSE by comparing ``figure`` with the guarantee's threshold."""
    valid = Validity.TRUE if guarantee.holds(figure) else Validity.FALSE
    ev = list(evidence)
    if len(ev) > MAX_EVIDENCE:
        reason = f"{reason} (first {MAX_EVIDENCE} of {len(ev)} evidence ops shown)"
    return Verdict(guarantee.id, valid, figure, guarantee.threshold, guarantee.unit, reason, _evidence(ev))


def broken(guarantee: Guarantee, figure: float | None, reason: str, evidence: Iterable[Op] = ()) -> Verdict:
    """FALSE whatever the figure: for guarantees with a qualitative part (a wrong error text)."""
    ev = list(evidence)
    return Verdict(guarantee.id, Validity.FALSE, figure, guarantee.threshold, guarantee.unit, reason,
                   _evidence(ev))


def _evidence(ops: Iterable[Op]) -> list[dict[str, Any]]:
    return [o.summary() for o in list(ops)[:MAX_EVIDENCE]]


# -- combining ------------------------------------------------------------------------------------
def merge_validity(values: Iterable[Validity]) -> Validity:
    """FALSE beats UNKNOWN beats TRUE.  Nothing checked at all is UNKNOWN: it proves nothing."""
    vals = list(values)
    if not vals:
        return Validity.UNKNOWN
    return max(vals, key=_RANK.__getitem__)


def check_safe(checker: Checker, history: History, context: CheckContext) -> Verdict:
    """Run ``checker``; if it raises, return UNKNOWN with the error as the reason instead of ending the run."""
    gid = getattr(checker, "guarantee_id", type(checker).__name__)
    try:
        verdict = checker.check(history, context)
        if not isinstance(verdict, Verdict):
            raise CheckerError(f"checker returned {type(verdict).__name__}, not a Verdict")
        return as_promised(verdict, context)
    except Exception as e:  # noqa: BLE001 - the point is to survive any checker bug
        last = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
        where = f" at {last.filename.rsplit('/', 1)[-1]}:{last.lineno}" if last else ""
        g = context.catalogue.get(gid)
        return Verdict(gid, Validity.UNKNOWN, None, g.threshold if g else None, g.unit if g else "",
                       f"checker raised {type(e).__name__}: {e}{where}")


def as_promised(verdict: Verdict, context: CheckContext) -> Verdict:
    """A FALSE verdict on a target whose proxy documents that it does not keep this promise
    (:attr:`Guarantee.not_promised`) is reported UNKNOWN, with the documentation and what was measured."""
    g = context.catalogue.get(verdict.guarantee_id)
    why = g.not_promised.get((context.target, context.engine)) if g is not None else None
    if why is None or verdict.valid is not Validity.FALSE:
        return verdict
    return dataclasses.replace(verdict, valid=Validity.UNKNOWN,
                               reason=f"not promised on this target: {why} Measured: {verdict.reason}")


@dataclasses.dataclass(frozen=True)
class ComposedVerdict:
    """The overall validity of several checks and each one's verdict, keyed by guarantee id."""

    valid: Validity
    verdicts: Mapping[str, Verdict]

    def to_dict(self) -> dict[str, Any]:
        return {"valid": self.valid.value, "verdicts": {k: v.to_dict() for k, v in self.verdicts.items()}}


def compose(checkers: Iterable[Checker], history: History, context: CheckContext) -> ComposedVerdict:
    """Run every checker safely and rank their verdicts; two checkers of one guarantee is a mistake."""
    verdicts: dict[str, Verdict] = {}
    for checker in checkers:
        verdict = check_safe(checker, history, context)
        if verdict.guarantee_id in verdicts:
            raise CheckerError(f"two checkers judge {verdict.guarantee_id}")
        verdicts[verdict.guarantee_id] = verdict
    return ComposedVerdict(merge_validity(v.valid for v in verdicts.values()), verdicts)


# -- small helpers the family modules share --------------------------------------------------------
def completed_pairs(history: History, *, f: str | Iterable[str] | None = None,
                    endpoint: str | Iterable[str] | None = None) -> list[tuple[Op, Op | None]]:
    """Invocation/completion pairs filtered by operation kind and endpoint."""
    fs = {f} if isinstance(f, str) else (set(f) if f is not None else None)
    eps = {endpoint} if isinstance(endpoint, str) else (set(endpoint) if endpoint is not None else None)
    return [(i, c) for i, c in history.pairs()
            if (fs is None or i.f in fs) and (eps is None or i.endpoint in eps)]


def seconds(ns: float) -> float:
    return ns / 1e9
