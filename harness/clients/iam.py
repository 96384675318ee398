"""IAM logins as applications make them: a token from boto3's ``generate_db_auth_token`` as the password.

Every token here comes from boto3 itself, never from a signer of ours, so a proxy is tested against
what real clients send.  The bad ones are made the same way with one thing changed: another user,
host, port or region passed to ``generate_db_auth_token``, an access key the target does not trust,
botocore's clock set 20 minutes back (the token's 15 minutes are then over), or one character of a
good token's signature changed.

:func:`iam_login_attempts` tries each case of :mod:`harness.checkers.iam` once through the recording
clients, over TLS unless the case is the plaintext one, and records them as that checker expects.
"""

from __future__ import annotations

import dataclasses
import datetime
from unittest import mock

from harness.checkers.iam import (
    CASE_KEY,
    EXPIRED,
    FRESH,
    PASSWORD,
    PLAINTEXT,
    TAMPERED,
    UNTRUSTED_KEY,
    USER_KEY,
    WRONG_HOST,
    WRONG_PORT,
    WRONG_REGION,
    WRONG_USER,
)
from harness.clients.client import tls_options
from harness.clients.fleet import Clients
from harness.clients.outcomes import Result
from harness.targets.aws_standin import aws_client, generate_access_key
from harness.targets.base import IamAccess

EXPIRED_AGE = datetime.timedelta(minutes=20)
"""How long ago the expired token is signed: past its 15 minutes and past any clock-skew allowance."""
OTHER_REGIONS = ("eu-west-1", "us-west-2")


class TokenMaker:
    """Makes tokens for ``access``'s user with boto3; no call leaves the machine (signing is local)."""

    def __init__(self, access: IamAccess) -> None:
        self.access = access
        self._rds = aws_client("rds", region=access.region, access_key_id=access.access_key_id,
                               secret_access_key=access.secret_access_key)

    def token(self, *, user: str | None = None, host: str | None = None, port: int | None = None,
              region: str | None = None, signed_at: datetime.datetime | None = None) -> str:
        """A token for the access's user and endpoint, with any of them replaced; ``signed_at`` (naive
        UTC) moves botocore's clock for this one signature (botocore reads it from a module function,
        so no other thread should sign an AWS request meanwhile)."""
        a = self.access
        kwargs = {"DBHostname": host or a.host, "Port": port or a.port, "DBUsername": user or a.user,
                  "Region": region or a.region}
        if signed_at is None:
            return str(self._rds.generate_db_auth_token(**kwargs))
        with mock.patch("botocore.auth.get_current_datetime", return_value=signed_at):
            return str(self._rds.generate_db_auth_token(**kwargs))


def tampered(token: str) -> str:
    """``token`` with the last character of its signature (the token's last) changed."""
    return token[:-1] + ("0" if token[-1] != "0" else "1")


def case_passwords(access: IamAccess, other_user: str) -> dict[str, tuple[str, bool]]:
    """For each case of the checker, the password to send and whether to use TLS (the fresh token twice:
    first, and last to show the refusals left IAM logins working)."""
    maker = TokenMaker(access)
    fresh = maker.token()
    key_id, secret_key = generate_access_key()
    stranger = TokenMaker(dataclasses.replace(access, access_key_id=key_id, secret_access_key=secret_key))
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    return {
        FRESH: (fresh, True),
        PLAINTEXT: (fresh, False),
        EXPIRED: (maker.token(signed_at=now - EXPIRED_AGE), True),
        TAMPERED: (tampered(fresh), True),
        WRONG_USER: (maker.token(user=other_user), True),
        WRONG_HOST: (maker.token(host=f"elsewhere-{access.host}"), True),
        WRONG_PORT: (maker.token(port=access.port + 1 if access.port < 65535 else access.port - 1), True),
        WRONG_REGION: (maker.token(region=next(r for r in OTHER_REGIONS if r != access.region)), True),
        UNTRUSTED_KEY: (stranger.token(), True),
        PASSWORD: (access.user_password or "not-a-token-but-a-password", True),
    }


def iam_login_attempts(clients: Clients, access: IamAccess) -> list[Result]:
    """Try every case once against the writer endpoint as ``access.user`` (see the module docstring);
    the fresh token's session runs one request.  Returns the connects' results, in order."""
    target_user = clients.target.credentials.user
    other_user = target_user if target_user != access.user else f"{access.user}_other"
    cases = list(case_passwords(access, other_user).items())
    cases.append(cases[0])
    results = []
    for case, (password, tls) in cases:
        client = clients("writer", connect=False, login=(access.user, password),
                         connect_extra={CASE_KEY: case, USER_KEY: access.user},
                         **tls_options(clients.target.engine, required=tls))
        try:
            result = client.connect()
            if result.ok:
                client.execute("iam_session", "SELECT 1")
            results.append(result)
        finally:
            client.close()
    return results
