"""TLS-REQUIRED on hand-made histories: holds, breaks (plaintext let in on one endpoint, a refusal in
other words, a TLS session that fails) or does not know (a case not tried on an endpoint)."""

from __future__ import annotations

import pytest

from harness.checkers import CHECKER_TYPES, CheckContext, Validity
from harness.checkers.synthetic import HistoryBuilder
from harness.checkers.tls import CASE_KEY, PLAINTEXT, TLS, RequireTlsChecker
from harness.history import OpError

RDS_TEXT = "This RDS Proxy requires TLS connections."


def attempts(*, let_in: tuple[str, ...] = (), text: str = RDS_TEXT, session_fails: bool = False,
             skip: tuple[tuple[str, str], ...] = ()) -> HistoryBuilder:
    """Both cases on both endpoints, as a proxy that requires TLS answers them, unless told otherwise;
    ``let_in`` names endpoints that let the plaintext client in."""
    b = HistoryBuilder()
    n = 0
    for endpoint in ("writer", "reader"):
        for case in (PLAINTEXT, TLS):
            if (endpoint, case) in skip:
                continue
            n += 1
            extra = {CASE_KEY: case}
            if case == TLS or endpoint in let_in:
                b.op(n, "connect", at=n, endpoint=endpoint, node="i1", invoke_extra=extra)
                if session_fails and case == TLS:
                    b.op(n, "read", at=n + 0.1, endpoint=endpoint, type="fail", error=OpError("08006", "gone", definite=True))
                else:
                    b.op(n, "read", at=n + 0.1, endpoint=endpoint, node="i1")
            else:
                b.op(n, "connect", at=n, endpoint=endpoint, type="fail", invoke_extra=extra,
                     error=OpError("28000", f"FATAL:  {text}", definite=True))
    return b


def judge(b: HistoryBuilder, engine: str | None = "postgres"):
    return RequireTlsChecker().check(b.history(), CheckContext(engine=engine))


@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_plaintext_refused_and_tls_served_on_every_endpoint_holds(engine):
    verdict = judge(attempts(), engine)
    assert verdict.valid is Validity.TRUE and verdict.figure == 0, verdict.reason
    assert "2 endpoints" in verdict.reason


def test_plaintext_let_in_on_one_endpoint_breaks_it():
    verdict = judge(attempts(let_in=("reader",)))
    assert verdict.valid is Validity.FALSE and verdict.figure == 1
    assert "on the reader endpoint was accepted" in verdict.reason


def test_a_refusal_in_other_words_or_a_failing_tls_session_breaks_it():
    assert judge(attempts(text="SSL required")).figure == 2
    broken = judge(attempts(session_fails=True))
    assert broken.valid is Validity.FALSE and "its session failed" in broken.reason


def test_a_case_not_tried_on_an_endpoint_or_an_unknown_engine_is_unknown():
    verdict = judge(attempts(skip=(("reader", TLS),)))
    assert verdict.valid is Validity.UNKNOWN and "tls on reader" in verdict.reason
    assert judge(attempts(), engine=None).valid is Validity.UNKNOWN
    assert judge(HistoryBuilder()).valid is Validity.UNKNOWN


def test_the_checker_is_registered_for_its_guarantee():
    assert CHECKER_TYPES["TLS-REQUIRED"] is RequireTlsChecker
