"""Hand-made histories for testing checkers (Jepsen's ``invoke-op`` / ``ok-op`` helpers).

A :class:`Recorder` needs records in time order, which is awkward when a test wants to say "client
1 wrote from 0.1 s to 0.3 s, client 2 read from 0.2 s to 0.25 s".  :class:`HistoryBuilder` takes
requests, faults and events in any order with their times in seconds, then sorts them into a
:class:`History` with indices in time order::

    b = HistoryBuilder()
    b.fault("failover", start=1.0, end=2.0, new_writer="i2")
    b.op(1, "write", 7, at=2.1, took=0.05, endpoint="writer", node="i2")
    h = b.history()
"""

from __future__ import annotations

from typing import Any

from harness.history import History, Op, OpError, OpType, Phase

_NO_VALUE = object()


class HistoryBuilder:
    """Collects records with explicit times and builds an index-ordered :class:`History`."""

    def __init__(self) -> None:
        self._records: list[tuple[int, int, dict[str, Any]]] = []

    def _add(self, t: float, **fields: Any) -> None:
        self._records.append((round(t * 1e9), len(self._records), fields))

    def op(self, process: int | str, f: str, value: Any = None, *, at: float, took: float | None = 0.01,
           type: OpType | str = OpType.OK, endpoint: str | None = None, node: str | None = None,
           error: OpError | None = None, extra: dict[str, Any] | None = None,
           invoke_extra: dict[str, Any] | None = None, result: Any = _NO_VALUE) -> HistoryBuilder:
        """A request invoked at ``at`` s and completed ``took`` s later (``took=None``: never).

        The completion's value is ``result`` if given, else the invocation's ``value``.
        """
        self._add(at, type=OpType.INVOKE, process=process, f=f, value=value, endpoint=endpoint,
                  extra=dict(invoke_extra or {}))
        if took is not None:
            self._add(at + took, type=OpType(type), process=process, f=f,
                      value=value if result is _NO_VALUE else result, endpoint=endpoint, node=node,
                      error=error, extra=dict(extra or {}))
        return self

    def fault(self, name: str, *, start: float, end: float | None = None, **params: Any) -> HistoryBuilder:
        """A fault window; ``params`` go on the start event, and on the end event too."""
        self._add(start, type=OpType.FAULT, process="nemesis", f=name, value=dict(params), phase=Phase.START)
        if end is not None:
            self._add(end, type=OpType.FAULT, process="nemesis", f=name, value=dict(params), phase=Phase.END)
        return self

    def event(self, f: str, value: Any = None, *, at: float, node: str | None = None,
              extra: dict[str, Any] | None = None) -> HistoryBuilder:
        self._add(at, type=OpType.EVENT, process="harness", f=f, value=value, node=node, extra=dict(extra or {}))
        return self

    def history(self) -> History:
        ordered = sorted(self._records, key=lambda r: (r[0], r[1]))
        return History(Op(index=i, time=t, **fields) for i, (t, _, fields) in enumerate(ordered))
