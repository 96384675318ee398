"""An IAM login's steps (TLS, the concurrency limit, the token) and RDS Proxy's words for each refusal."""

from __future__ import annotations

import pytest
from iam_token_samples import AKID, HOST, PORT, REGION, SECRET, SIGNED_EPOCH, make_token

from reference_proxy.credentials.iam_auth import IamAuthenticator
from reference_proxy.credentials.iam_limit import IamAuthLimiter
from reference_proxy.credentials.iam_token import IamTokenVerifier, TokenRefusal
from reference_proxy.credentials.refusals import CredentialRefused, RefusalReason


def authenticator(max_concurrent: int = 2) -> IamAuthenticator:
    verifier = IamTokenVerifier({AKID: SECRET}, region=REGION, wall_clock=lambda: SIGNED_EPOCH + 1)
    return IamAuthenticator(verifier, IamAuthLimiter(max_concurrent))


def test_a_good_token_logs_in_and_gives_its_slot_back() -> None:
    auth = authenticator()
    attempt = auth.begin("app", tls=True)
    assert auth.limiter.in_progress == 1
    verdict = attempt.finish(make_token(), host=HOST, port=PORT)
    assert verdict.accepted and auth.limiter.in_progress == 0


def test_without_tls_the_login_is_refused_before_any_slot_is_taken() -> None:
    auth = authenticator()
    with pytest.raises(CredentialRefused) as refused:
        auth.begin("app", tls=False)
    assert refused.value.reason is RefusalReason.IAM_NEEDS_TLS
    assert str(refused.value) == "IAM authentication is allowed only with SSL connections."
    assert auth.limiter.in_progress == 0


def test_a_bad_token_is_refused_in_rds_words_with_the_failed_check_for_the_log() -> None:
    auth = authenticator()
    attempt = auth.begin("app", tls=True)
    with pytest.raises(CredentialRefused) as refused:
        attempt.finish(make_token("bob"), host=HOST, port=PORT)
    assert refused.value.reason is RefusalReason.IAM_TOKEN_REFUSED
    assert refused.value.message == ("IAM authentication failed for user app. Check the IAM token for this user "
                                     "and try again.")
    assert refused.value.detail.startswith(TokenRefusal.WRONG_USER.value)
    assert attempt.verdict is not None and attempt.verdict.refusal is TokenRefusal.WRONG_USER
    assert auth.limiter.in_progress == 0


def test_too_many_logins_in_progress_are_refused_until_one_finishes() -> None:
    auth = authenticator(max_concurrent=2)
    first, second = auth.begin("app", tls=True), auth.begin("app", tls=True)
    with pytest.raises(CredentialRefused) as refused:
        auth.begin("app", tls=True)
    assert refused.value.reason is RefusalReason.IAM_TOO_MANY_COMPETING
    assert str(refused.value) == "The IAM authentication failed because of too many competing requests."
    assert auth.limiter.refused == 1
    first.abandon()
    first.abandon()  # twice is harmless: the slot is not given back twice
    assert auth.limiter.in_progress == 1
    third = auth.begin("app", tls=True)
    assert auth.limiter.in_progress == 2
    second.finish(make_token(), host=HOST, port=PORT)
    third.abandon()
    assert auth.limiter.in_progress == 0


def test_the_limiter_alone_counts_slots_and_refusals() -> None:
    limiter = IamAuthLimiter(1)
    with limiter.try_acquire() as slot:
        assert slot is not None and limiter.in_progress == 1
        assert limiter.try_acquire() is None
    assert limiter.in_progress == 0 and limiter.refused == 1
    assert limiter.try_acquire() is not None
    with pytest.raises(ValueError, match="at least 1"):
        IamAuthLimiter(0)
