"""IAM-TOKEN-CHECKS on hand-made histories, and the tokens the harness makes for it.

The checker can hold, break (a proxy letting in an expired token, refusing a fresh one, or refusing
with words of its own) or not know (a case never tried, an attempt without an outcome).  The tokens
are boto3's own; the reference proxy's verifier (used here as an independent judge, never by the
harness) refuses each bad one for the reason its case names.
"""

from __future__ import annotations

import time

import pytest

from harness.checkers import CHECKER_TYPES, CheckContext, Validity
from harness.checkers.iam import (
    CASE_KEY,
    CASES,
    EXPECTED,
    EXPIRED,
    FRESH,
    PLAINTEXT,
    REFUSE_TLS,
    USER_KEY,
    IamTokenChecksChecker,
)
from harness.checkers.synthetic import HistoryBuilder
from harness.clients.iam import case_passwords
from harness.history import OpError
from harness.targets.base import IamAccess
from reference_proxy.credentials.iam_token import IamTokenVerifier, TokenRefusal

USER = "iam_user"
PG_TEXTS = {REFUSE_TLS: "connection failed: ... FATAL:  IAM authentication is allowed only with SSL connections."}
PG_TOKEN = ("connection failed: ... FATAL:  IAM authentication failed for user iam_user. Check the IAM token for "
            "this user and try again.")
MYSQL_DENIED = "Access denied for user 'iam_user'@'10.0.0.7' (using password: YES)"


def refusal(case: str, engine: str = "postgres") -> OpError:
    if engine == "mysql":
        return OpError("1045", MYSQL_DENIED, definite=True)
    return OpError("08006", PG_TEXTS.get(EXPECTED[case], PG_TOKEN), definite=True)


def attempts(*, engine: str = "postgres", skip: tuple[str, ...] = (), accepted: tuple[str, ...] = (),
             errors: dict[str, OpError] | None = None, session_error: OpError | None = None,
             unfinished: tuple[str, ...] = ()) -> HistoryBuilder:
    """Every case tried once, as the reference proxy answers it, unless told otherwise."""
    b = HistoryBuilder()
    for n, case in enumerate(c for c in CASES if c not in skip):
        at = 1.0 + n
        ok = case in accepted or (EXPECTED[case] == "accepted" and not (errors and case in errors))
        extra = {CASE_KEY: case, USER_KEY: USER}
        if case in unfinished:
            b.op(n, "connect", at=at, took=None, invoke_extra=extra)
        elif ok:
            b.op(n, "connect", at=at, node="i1", invoke_extra=extra)
            if session_error is None:
                b.op(n, "iam_session", at=at + 0.1, node="i1")
            else:
                b.op(n, "iam_session", at=at + 0.1, type="fail", error=session_error)
        else:
            b.op(n, "connect", at=at, type="fail", error=(errors or {}).get(case) or refusal(case, engine),
                 invoke_extra=extra)
    return b


def judge(b: HistoryBuilder, engine: str | None = "postgres"):
    return IamTokenChecksChecker().check(b.history(), CheckContext(engine=engine))


@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_every_case_as_rds_proxy_answers_it_holds(engine):
    verdict = judge(attempts(engine=engine), engine)
    assert verdict.valid is Validity.TRUE and verdict.figure == 0, verdict
    assert f"{len(CASES)} IAM login attempts over {len(CASES)} of {len(CASES)} cases" in verdict.reason
    assert CHECKER_TYPES["IAM-TOKEN-CHECKS"] is IamTokenChecksChecker


def test_a_proxy_accepting_an_expired_token_breaks_it_with_the_attempt_as_evidence():
    verdict = judge(attempts(accepted=(EXPIRED,)))
    assert verdict.valid is Validity.FALSE and verdict.figure == 1
    [evidence] = verdict.evidence
    assert evidence["type"] == "ok" and evidence["extra"][CASE_KEY] == EXPIRED
    assert evidence["extra"]["expected"] == "refused as a bad token" and evidence["extra"]["judged"] == "was accepted"
    assert "expired_token was accepted" in verdict.reason


def test_a_refused_fresh_token_or_a_session_that_fails_after_it_breaks_it():
    refused = judge(attempts(errors={FRESH: OpError("08006", PG_TOKEN, definite=True)}))
    assert refused.valid is Validity.FALSE and refused.evidence[0]["extra"][CASE_KEY] == FRESH
    assert "was refused: " in refused.evidence[0]["extra"]["judged"]
    broken_session = judge(attempts(session_error=OpError("08006", "server closed the connection", definite=False)))
    assert broken_session.valid is Validity.FALSE
    assert "its session failed" in broken_session.evidence[0]["extra"]["judged"]


def test_a_refusal_in_other_words_breaks_it():
    own_words = OpError("28P01", "password authentication failed for user \"iam_user\"", definite=True)
    verdict = judge(attempts(errors={PLAINTEXT: own_words}))
    assert verdict.valid is Validity.FALSE and verdict.figure == 1
    assert "IAM authentication is allowed only with SSL connections." in verdict.evidence[0]["extra"]["judged"]
    # On MySQL, RDS documents ERROR 1045 "Access denied" for every refused login: the PostgreSQL words alone
    # are not it.
    pg_words_on_mysql = judge(attempts(engine="mysql", errors={EXPIRED: OpError("1045", PG_TOKEN, definite=True)}),
                              "mysql")
    assert pg_words_on_mysql.valid is Validity.FALSE


def test_cases_not_tried_or_without_an_outcome_leave_it_unknown_unless_something_broke():
    missing = judge(attempts(skip=(PLAINTEXT,)))
    assert missing.valid is Validity.UNKNOWN and "cases not tried: plaintext" in missing.reason
    unfinished = judge(attempts(unfinished=(EXPIRED,)))
    assert unfinished.valid is Validity.UNKNOWN and "did not finish" in unfinished.reason
    assert judge(attempts(skip=(PLAINTEXT,), accepted=(EXPIRED,))).valid is Validity.FALSE
    assert judge(HistoryBuilder().op(1, "connect", at=1.0)).valid is Validity.UNKNOWN
    assert "engine is not known" in judge(attempts(), engine=None).reason


# -- the tokens --------------------------------------------------------------------------------------
ACCESS = IamAccess(user=USER, host="db.proxy-abc.us-east-1.rds.amazonaws.com", port=5432, region="us-east-1",
                   access_key_id="AKIAHARNESSUNITTEST", secret_access_key="unit-test-secret",
                   user_password="the-database-password")
WHY = {"expired_token": TokenRefusal.EXPIRED, "tampered_signature": TokenRefusal.BAD_SIGNATURE,
       "wrong_user": TokenRefusal.WRONG_USER, "wrong_host": TokenRefusal.WRONG_ENDPOINT,
       "wrong_port": TokenRefusal.WRONG_ENDPOINT, "wrong_region": TokenRefusal.WRONG_REGION,
       "untrusted_key": TokenRefusal.UNKNOWN_ACCESS_KEY, "plain_password": TokenRefusal.MALFORMED}


def test_each_case_token_is_refused_for_the_reason_its_case_names():
    passwords = case_passwords(ACCESS, "someone_else")
    assert list(passwords) == list(CASES)
    verifier = IamTokenVerifier({ACCESS.access_key_id: ACCESS.secret_access_key}, region=ACCESS.region,
                                wall_clock=time.time)
    for case, (password, tls) in passwords.items():
        verdict = verifier.verify(password, user=USER, host=ACCESS.host, port=ACCESS.port)
        assert tls is (case != PLAINTEXT), case
        assert verdict.refusal is WHY.get(case), (case, verdict)
    assert passwords[PLAINTEXT][0] == passwords[FRESH][0]
    assert passwords["plain_password"][0] == "the-database-password"
