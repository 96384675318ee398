"""Fixtures of the engine tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_aws_files(monkeypatch, tmp_path):
    """boto3 in these tests signs with explicit keys only; the machine's AWS files are never read."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "absent"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "absent"))
