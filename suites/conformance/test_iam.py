"""IAM authentication: tokens made by boto3's ``generate_db_auth_token`` are checked as RDS Proxy checks them.

A fresh token over TLS must log in and its session work; the same token without TLS, an expired one,
one with a changed signature, tokens for another user, host, port or region or signed with an
unknown access key, and the user's plain password must each be refused with RDS Proxy's words
(:mod:`harness.checkers.iam`).  The target must say how to make tokens for a user that needs them
(``iam_auth``); any other target's IAM guarantee is unknown, with that reason.
"""

from __future__ import annotations

import pytest

from harness.clients.iam import iam_login_attempts
from harness.targets.base import Capability


@pytest.mark.guarantee("IAM-TOKEN-CHECKS")
@pytest.mark.timeout(300)
def test_iam_tokens_are_checked(target, clients):
    target.require(Capability.IAM_AUTH)
    iam_login_attempts(clients, target.iam_access())
