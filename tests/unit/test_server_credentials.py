"""How the server puts the credential sources together, before any client or database is involved."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from reference_proxy.config import ProxyConfig
from reference_proxy.contracts import BackendCredentials, ConfigError
from reference_proxy.server import ProxyServer


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch, tmp_path):
    """Fake keys, no region, and the machine's AWS files out of reach."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "absent"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "absent"))


def config(**auth) -> ProxyConfig:
    return ProxyConfig.from_dict({"engine": "postgres", "endpoints": [{"name": "default", "port": 0}],
                                  "instances": [{"id": "i1", "port": 5432}], "auth": auth})


def test_static_users_alone_need_no_aws_and_have_no_iam():
    server = ProxyServer(config(users=[{"name": "app", "password": "pw"}]))
    assert server.secrets is None and server.iam is None
    assert server.services.credentials("app").method == "scram-sha-256"
    assert server.status()["credentials"] == {"static_users": 1}


def test_secrets_without_any_region_are_a_config_error():
    with pytest.raises(ConfigError) as info:
        ProxyServer(config(secrets=[{"secret_id": "db/app"}]))
    assert info.value.key == "auth.secrets_manager" and "region" in info.value.message


def test_secrets_are_loaded_at_start_and_problems_logged_without_values(caplog):
    import boto3
    import moto

    with moto.mock_aws():
        client = boto3.client("secretsmanager", region_name="eu-west-1")
        client.create_secret(Name="db/app", SecretString=json.dumps({"username": "app", "password": "app-pw"}))
        client.create_secret(Name="db/broken", SecretString="not json, password=hunter2")
        server = ProxyServer(config(
            users=[], secrets=[{"secret_id": "db/broken"}, {"secret_id": "db/app", "method": "md5"},
                               {"secret_id": "db/missing"}],
            secrets_manager={"region": "eu-west-1"},
            iam={"access_keys": [{"access_key_id": "AKIDX", "secret_access_key": "iam-secret"}]}))
        with caplog.at_level(logging.WARNING, logger="reference_proxy"):
            asyncio.run(server._load_secrets())
    assert server.services.credentials("app").method == "md5"
    assert server._backend_credentials("app") == BackendCredentials("app", "app-pw")
    assert server._monitor_login() == ("app", "app-pw")  # the first secret that holds a login
    logged = caplog.text
    assert "db/broken" in logged and "db/missing" in logged and "starting without 2 of 3 secrets" in logged
    status = json.dumps(server.status()["credentials"])
    for secret in ("app-pw", "hunter2", "iam-secret"):
        assert secret not in logged and secret not in status
    assert json.loads(status)["iam"] == {"in_progress": 0, "refused": 0, "max_concurrent": 200}
    # The AWS SDK prints whole response bodies at DEBUG: its loggers stay quieter whatever the proxy's level.
    assert all(logging.getLogger(name).getEffectiveLevel() >= logging.WARNING for name in ("boto3", "botocore"))


def test_the_users_a_secret_stops_naming_are_those_an_alternating_rotation_left_behind():
    from reference_proxy.server import _users_no_longer_named
    before = {"db/alt": ("v1", "alt_a"), "db/solo": ("v1", "solo")}
    assert _users_no_longer_named(before, {"db/alt": ("v2", "alt_b"), "db/solo": ("v1", "solo")}) == {"alt_a"}
    assert _users_no_longer_named(before, {"db/alt": ("v2", "alt_a"), "db/solo": ("v2", "solo")}) == set()
    assert _users_no_longer_named({"db/x": (None, None)}, {"db/x": ("v1", "x")}) == set()  # first read
