"""What a pin classifier answers: why a session is pinned, and a short machine-readable trigger."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PinDecision:
    """A statement pins its session.

    ``reason`` is a sentence in the style of RDS Proxy's pinning log line (it follows "Reason: ");
    ``trigger`` is a short stable id for metrics, tests and the harness: ``set``, ``reset``,
    ``set_config``, ``prepare``, ``execute``, ``deallocate``, ``discard``, ``temp_table``,
    ``temp_sequence``, ``temp_view`` (and ``temp_<kind>`` for other objects created in ``pg_temp``,
    e.g. ``temp_function``, ``temp_type``), ``cursor``, ``listen``, ``load``, ``sequence``,
    ``advisory_lock``, ``statement_too_large``.
    """

    reason: str
    trigger: str
