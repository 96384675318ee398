"""Verdicts, combining rules and the crash-proof wrapper."""

from __future__ import annotations

import json

import pytest

from harness.checkers import CHECKER_TYPES, default_checkers
from harness.checkers.base import (
    MAX_EVIDENCE,
    CheckContext,
    CheckerError,
    Validity,
    Verdict,
    check_safe,
    compose,
    judge,
    merge_validity,
    unknown,
)
from harness.checkers.synthetic import HistoryBuilder
from harness.guarantees import CATALOGUE, with_thresholds
from harness.history import History

T, F, U = Validity.TRUE, Validity.FALSE, Validity.UNKNOWN


@pytest.mark.parametrize("values, expected", [
    ([T, T], T), ([T, U], U), ([U, T, U], U), ([T, F, U], F), ([F], F), ([], U),
])
def test_merge_ranks_false_over_unknown_over_true(values, expected):
    assert merge_validity(values) is expected


class Fixed:
    def __init__(self, gid: str, valid: Validity) -> None:
        self.guarantee_id, self.valid = gid, valid

    def check(self, history, context):
        g = context.guarantee(self.guarantee_id)
        return Verdict(g.id, self.valid, 1.0, g.threshold, g.unit, "fixed")


class Exploding:
    guarantee_id = "PIN-TRIGGERS"

    def check(self, history, context):
        raise ZeroDivisionError("boom")


class WrongType:
    guarantee_id = "PIN-TRIGGERS"

    def check(self, history, context):
        return {"valid": True}


def test_check_safe_turns_a_crash_into_unknown_with_the_reason():
    v = check_safe(Exploding(), History(), CheckContext())
    assert v.valid is U and v.guarantee_id == "PIN-TRIGGERS"
    assert "ZeroDivisionError: boom" in v.reason and "test_checkers_base.py" in v.reason
    assert v.threshold == CATALOGUE["PIN-TRIGGERS"].threshold


def test_check_safe_rejects_a_non_verdict():
    v = check_safe(WrongType(), History(), CheckContext())
    assert v.valid is U and "not a Verdict" in v.reason


def test_compose_keys_verdicts_and_ranks_them():
    ctx = CheckContext()
    out = compose([Fixed("PIN-TRIGGERS", T), Fixed("STORM-SERVED", U)], History(), ctx)
    assert out.valid is U and set(out.verdicts) == {"PIN-TRIGGERS", "STORM-SERVED"}
    out = compose([Fixed("PIN-TRIGGERS", T), Fixed("STORM-SERVED", F), Fixed("BORROW-TIMEOUT", U)], History(), ctx)
    assert out.valid is F
    assert compose([Fixed("PIN-TRIGGERS", T)], History(), ctx).valid is T
    json.dumps(out.to_dict())
    with pytest.raises(CheckerError, match="two checkers judge PIN-TRIGGERS"):
        compose([Fixed("PIN-TRIGGERS", T), Fixed("PIN-TRIGGERS", T)], History(), ctx)


def test_compose_survives_a_crashing_checker():
    out = compose([Fixed("STORM-SERVED", T), Exploding()], History(), CheckContext())
    assert out.valid is U and out.verdicts["PIN-TRIGGERS"].valid is U


def test_judge_uses_the_threshold_in_force_and_caps_evidence():
    b = HistoryBuilder()
    for i in range(30):
        b.op(i, "write", i, at=i)
    ops = b.history().completed()
    g = with_thresholds({"PIN-TRIGGERS": 40})["PIN-TRIGGERS"]
    v = judge(g, 30, "thirty", ops)
    assert v.valid is T and v.threshold == 40
    v = judge(CATALOGUE["PIN-TRIGGERS"], 30, "thirty", ops)
    assert v.valid is F and len(v.evidence) == MAX_EVIDENCE and "first 20 of 30" in v.reason
    assert v.evidence[0]["type"] == "ok"
    u = unknown(g, "nothing to see")
    assert u.valid is U and u.figure is None and u.to_dict()["valid"] == "unknown"


def test_every_guarantee_has_a_checker_and_an_empty_history_is_unknown_for_all():
    assert set(CHECKER_TYPES) == set(CATALOGUE)
    out = compose(default_checkers(), History(), CheckContext())
    bad = {gid: v.reason for gid, v in out.verdicts.items() if v.valid is not U or "raised" in v.reason}
    assert not bad
    assert out.valid is U


def test_default_checkers_rejects_unknown_ids():
    with pytest.raises(CheckerError, match="no checker for NOPE"):
        default_checkers(["NOPE"])
