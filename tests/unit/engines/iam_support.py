"""IAM logins for the engines' auth tests: boto3's own tokens at a fixed date, and an authenticator
whose verifier trusts their key and sees the same date."""

from __future__ import annotations

import calendar
import datetime
import functools
from unittest import mock

import boto3
import botocore.auth

from reference_proxy.credentials.iam_auth import IamAuthenticator
from reference_proxy.credentials.iam_limit import IamAuthLimiter
from reference_proxy.credentials.iam_token import IamTokenVerifier

AKID, SECRET, REGION = "AKIDUNITTEST", "unit-test-secret", "us-east-1"
HOST, PORT = "unit.proxy-abc123.us-east-1.rds.amazonaws.com", 6432
SIGNED_AT = datetime.datetime(2026, 11, 30, 12, 0, 0)
NOW = calendar.timegm(SIGNED_AT.timetuple()) + 60


@functools.cache
def token(user: str = "lambda", *, host: str = HOST) -> str:
    """boto3's token for ``user`` at ``host``:PORT, signed at SIGNED_AT (cached: a boto3 client is
    slow to build).  The caller keeps the machine's AWS files out of reach (the conftest does)."""
    rds = boto3.client("rds", region_name=REGION, endpoint_url="http://127.0.0.1:9",
                       aws_access_key_id=AKID, aws_secret_access_key=SECRET)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=SIGNED_AT):
        return rds.generate_db_auth_token(DBHostname=host, Port=PORT, DBUsername=user, Region=REGION)


def iam(limit: int = 10) -> IamAuthenticator:
    """IAM checks trusting :data:`AKID`, at :data:`NOW`, with room for ``limit`` logins at once."""
    verifier = IamTokenVerifier({AKID: SECRET}, region=REGION, wall_clock=lambda: NOW)
    return IamAuthenticator(verifier, IamAuthLimiter(limit))
