"""Checkers: pure functions from a history to a verdict about one guarantee.

``base`` holds the verdict model and the combining rules; each other module judges one family of
guarantees.  :func:`default_checkers` gives one checker per catalogue entry, with default
workload conventions, for suites that do not need to tune them.
"""

from __future__ import annotations

from harness.checkers.availability import (
    FailoverReadErrorsChecker,
    FailoverWriteGapChecker,
    IdleSurvivalChecker,
    ServedShareChecker,
)
from harness.checkers.base import (
    CheckContext,
    Checker,
    CheckerError,
    ComposedVerdict,
    Validity,
    Verdict,
    check_safe,
    compose,
    merge_validity,
)
from harness.checkers.borrow import BorrowTimeoutChecker
from harness.checkers.cancel import CancelNeverOthersChecker, CancelOwnQueryChecker
from harness.checkers.durability import NoDuplicateChecker, NoFailedVisibleChecker, NoLostAckChecker
from harness.checkers.iam import IamTokenChecksChecker
from harness.checkers.isolation import SessionLeakChecker
from harness.checkers.latency import AddedLatencyP50Checker, AddedLatencyP99Checker
from harness.checkers.netfault import SilentFaultDetectedChecker
from harness.checkers.own_state import OwnStateChecker
from harness.checkers.pinning import PinNonTriggersChecker, PinTriggersChecker
from harness.checkers.pooling import BackendCapChecker, MultiplexingChecker
from harness.checkers.rotation import (
    RotationAlternatingSessionsChecker,
    RotationBackendAuthChecker,
    RotationNewLoginsChecker,
    RotationOldPasswordChecker,
    RotationSessionsKeptChecker,
)
from harness.checkers.routing import ReaderBalanceChecker, ReaderOnlyChecker, WriterEndpointChecker
from harness.checkers.storm import StormServedChecker
from harness.checkers.tls import RequireTlsChecker
from harness.checkers.transactions import OneBackendChecker

CHECKER_TYPES: dict[str, type] = {c.guarantee_id: c for c in (
    BackendCapChecker, MultiplexingChecker, WriterEndpointChecker, ReaderOnlyChecker, ReaderBalanceChecker,
    PinTriggersChecker, PinNonTriggersChecker, SessionLeakChecker, OwnStateChecker, OneBackendChecker,
    BorrowTimeoutChecker,
    FailoverWriteGapChecker, FailoverReadErrorsChecker, IdleSurvivalChecker, ServedShareChecker, NoLostAckChecker,
    NoFailedVisibleChecker, NoDuplicateChecker, StormServedChecker, AddedLatencyP50Checker, AddedLatencyP99Checker,
    SilentFaultDetectedChecker, RotationSessionsKeptChecker, RotationNewLoginsChecker,
    RotationOldPasswordChecker, RotationBackendAuthChecker, RotationAlternatingSessionsChecker,
    IamTokenChecksChecker, RequireTlsChecker, CancelOwnQueryChecker, CancelNeverOthersChecker)}
"""The checker class for each guarantee id."""


def default_checkers(ids: list[str] | None = None) -> list[Checker]:
    """One checker with default settings per guarantee id (all of them when ``ids`` is None)."""
    wanted = list(CHECKER_TYPES) if ids is None else ids
    unknown_ids = [i for i in wanted if i not in CHECKER_TYPES]
    if unknown_ids:
        raise CheckerError(f"no checker for {', '.join(unknown_ids)}; known: {', '.join(sorted(CHECKER_TYPES))}")
    return [CHECKER_TYPES[i]() for i in wanted]


__all__ = [  # noqa: RUF022 - grouped by role, not alphabetically
    "CHECKER_TYPES", "CheckContext", "Checker", "CheckerError", "ComposedVerdict", "Validity",
    "Verdict", "check_safe", "compose", "default_checkers", "merge_validity",
    "AddedLatencyP50Checker", "AddedLatencyP99Checker", "BackendCapChecker", "BorrowTimeoutChecker",
    "CancelNeverOthersChecker", "CancelOwnQueryChecker",
    "FailoverReadErrorsChecker", "FailoverWriteGapChecker", "IamTokenChecksChecker", "IdleSurvivalChecker",
    "MultiplexingChecker",
    "NoDuplicateChecker", "NoFailedVisibleChecker", "NoLostAckChecker", "OneBackendChecker", "OwnStateChecker",
    "PinNonTriggersChecker", "PinTriggersChecker",
    "ReaderBalanceChecker", "ReaderOnlyChecker", "RequireTlsChecker", "RotationAlternatingSessionsChecker",
    "RotationBackendAuthChecker", "RotationNewLoginsChecker", "RotationOldPasswordChecker",
    "RotationSessionsKeptChecker", "ServedShareChecker", "SessionLeakChecker", "SilentFaultDetectedChecker",
    "StormServedChecker", "WriterEndpointChecker",
]
