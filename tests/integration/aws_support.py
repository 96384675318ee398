"""A local stand-in for AWS in integration tests: moto's server on loopback, and IAM tokens from boto3.

The proxy reads its secrets from the moto server over HTTP exactly as it would read Secrets Manager,
and the tests make IAM tokens with boto3's own ``generate_db_auth_token``, signed with an access key
the proxy is configured to trust.  Nothing may read this machine's AWS configuration or reach AWS:
:func:`fake_aws` puts fake credentials in the environment (the proxy's boto3 takes them from there),
points the shared AWS files at a path that does not exist and turns the instance metadata service
off, and every client names its endpoint and keys explicitly.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import botocore.auth
import pytest

REGION = "us-east-1"
FAKE_AWS = {"aws_access_key_id": "AKIDMOTOCLIENT", "aws_secret_access_key": "moto-client-secret"}
"""What the tests' own boto3 clients sign with (moto accepts anything)."""
IAM_KEY_ID = "AKIDPROXYTRUSTED"
IAM_SECRET = "trusted-secret-access-key"
ADVERTISED = "creds.proxy-abc123.us-east-1.rds.amazonaws.com"
"""The proxy endpoint's DNS name, as tokens are made for it; never resolved."""

_AMBIENT = ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")


@contextlib.contextmanager
def fake_aws(scratch: Path) -> Iterator[str]:
    """The environment sealed off from real AWS (see the module docstring) and a moto server on
    loopback; yields its endpoint URL.  ``scratch`` is an empty directory the absent files live in."""
    from moto.server import ThreadedMotoServer

    nowhere = scratch / "absent"
    with pytest.MonkeyPatch.context() as patch:
        for name in _AMBIENT:
            patch.delenv(name, raising=False)
        patch.setenv("AWS_ACCESS_KEY_ID", FAKE_AWS["aws_access_key_id"])
        patch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_AWS["aws_secret_access_key"])
        patch.setenv("AWS_CONFIG_FILE", str(nowhere))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere))
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        try:
            _reset(url)
            yield url
        finally:
            with contextlib.suppress(OSError):
                _reset(url)
            server.stop()


def _reset(moto_url: str) -> None:
    """Forget every resource: moto keeps them per process, not per server, so a module's secrets
    would otherwise still exist for the next module's server."""
    request = urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def secretsmanager_client(moto_url: str) -> Any:
    return boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_url, **FAKE_AWS)


def login_secret(user: str, password: str, engine: str) -> str:
    """A secret's JSON as RDS Proxy reads it (``username``, ``password``; other keys are ignored)."""
    return json.dumps({"username": user, "password": password, "engine": engine})


def auth_settings(moto_url: str, secrets: list[dict[str, Any]], *, cache_ttl: float, refresh_min_interval: float,
                  **iam: Any) -> dict[str, Any]:
    """The proxy's ``[auth]`` section: ``secrets`` read from the moto server, tokens signed with the
    trusted key accepted (``iam`` adds IAM settings, e.g. ``max_concurrent_authentications``)."""
    return {
        "secrets": secrets,
        "secrets_manager": {"region": REGION, "endpoint_url": moto_url, "cache_ttl": cache_ttl,
                            "refresh_min_interval": refresh_min_interval},
        "iam": {"region": REGION, "access_keys": [{"access_key_id": IAM_KEY_ID, "secret_access_key": IAM_SECRET}],
                **iam},
    }


def iam_token(user: str, port: int, *, host: str = ADVERTISED, key_id: str = IAM_KEY_ID,
              secret: str = IAM_SECRET, at: datetime.datetime | None = None) -> str:
    """boto3's own token (no network call is made; the endpoint points at a closed loopback port)."""
    rds = boto3.client("rds", region_name=REGION, endpoint_url="http://127.0.0.1:9",
                       aws_access_key_id=key_id, aws_secret_access_key=secret)
    if at is None:
        return rds.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user, Region=REGION)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=at):
        return rds.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user, Region=REGION)


def twenty_minutes_ago() -> datetime.datetime:
    """A signing time whose 15-minute token has expired (naive UTC, as botocore uses)."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(minutes=20)
