"""What an engine's pin classifier answers: why a session is pinned, and a short machine-readable trigger.

Engine-neutral: each engine (``engines/<name>/pinning.py``) decides *when* a statement pins; the
session, its log lines and the metrics only read the decision.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PinDecision:
    """A statement pins its session.

    ``reason`` is a sentence in the style of RDS Proxy's pinning log line (it follows "Reason: ");
    ``trigger`` is a short stable id for metrics, tests and the harness; each engine's classifier
    lists its own (PostgreSQL's: ``set``, ``prepare``, ``temp_table``, ``statement_too_large``...).
    """

    reason: str
    trigger: str
