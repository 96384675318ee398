"""RDS Proxy's words for credential refusals, exactly as documented."""

from __future__ import annotations

import pytest

from reference_proxy.credentials.refusals import (
    MYSQL_IAM_RATE_LIMIT_TEXT,
    CredentialRefused,
    RefusalReason,
    refusal_text,
)


@pytest.mark.parametrize("reason, text", [
    (RefusalReason.NO_CREDENTIALS,
     "This RDS proxy has no credentials for the role app. Check the credentials for this role and try again."),
    (RefusalReason.WRONG_PASSWORD, "The password that was provided for the role app is wrong."),
    (RefusalReason.UNSUPPORTED_METHOD, "RDS supports only IAM, MD5, or SCRAM authentication."),
    (RefusalReason.IAM_NEEDS_TLS, "IAM authentication is allowed only with SSL connections."),
    (RefusalReason.IAM_TOKEN_REFUSED,
     "IAM authentication failed for user app. Check the IAM token for this user and try again."),
    (RefusalReason.IAM_TOO_MANY_COMPETING, "The IAM authentication failed because of too many competing requests."),
])
def test_each_reason_has_rds_words(reason: RefusalReason, text: str) -> None:
    assert refusal_text(reason, "app") == text
    refused = CredentialRefused(reason, "app", "detail for the log")
    assert str(refused) == refused.message == text and refused.detail == "detail for the log"


def test_every_reason_has_a_text() -> None:
    assert all(refusal_text(reason, "u") for reason in RefusalReason)


def test_mysql_words_its_iam_limit_its_own_way() -> None:
    assert MYSQL_IAM_RATE_LIMIT_TEXT == "IAM authentication rate limit exceeded"
