"""IAM tokens made by boto3's own ``generate_db_auth_token``, with fixed keys at a fixed date."""

from __future__ import annotations

import calendar
import datetime
import functools
from unittest import mock

import boto3
import botocore.auth

AKID = "AKIDPROXYTEST"
SECRET = "proxy-test-secret-key"
REGION = "us-east-1"
HOST = "myproxy.proxy-abc123.us-east-1.rds.amazonaws.com"
PORT = 5432
SIGNED_AT = datetime.datetime(2026, 11, 29, 6, 53, 25)
SIGNED_EPOCH = calendar.timegm(SIGNED_AT.timetuple())


@functools.cache
def make_token(user: str = "app", *, host: str = HOST, port: int = PORT, region: str = REGION,
               akid: str = AKID, secret: str = SECRET, session_token: str | None = None,
               at: datetime.datetime = SIGNED_AT) -> str:
    """boto3's token for these inputs (cached: building a boto3 client costs tenths of a second)."""
    session = boto3.Session(aws_access_key_id=akid, aws_secret_access_key=secret,
                            aws_session_token=session_token, region_name=region)
    rds = session.client("rds")
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=at):
        return rds.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user, Region=region)
