"""Fixtures of the credential tests: a fake monotonic clock, and Secrets Manager mocked in-process."""

from __future__ import annotations

import json

import pytest


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class CountingClient:
    """A boto3 client whose get_secret_value calls are counted (every other call passes through)."""

    def __init__(self, client) -> None:
        self._client = client
        self.reads: list[str] = []

    def get_secret_value(self, **kwargs):
        self.reads.append(kwargs["SecretId"])
        return self._client.get_secret_value(**kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


@pytest.fixture
def secretsmanager(monkeypatch):
    """A Secrets Manager client on moto's in-process mock, with fake credentials only."""
    import boto3
    import moto

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        yield CountingClient(boto3.client("secretsmanager", region_name="us-east-1"))


def login_secret(username: str, password: str, **extra) -> str:
    return json.dumps({"username": username, "password": password, **extra})
