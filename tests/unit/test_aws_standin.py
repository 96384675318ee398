"""The AWS stand-in's client side: nothing reads the machine's AWS configuration or reaches AWS."""

from __future__ import annotations

import json
import os
import threading

import pytest

from harness.clients.pacing import Paced
from harness.clients.plans import ClientError
from harness.targets.aws_standin import (
    FAKE_ACCESS_KEY_ID,
    AwsStandin,
    isolated_environment,
    login_secret,
    secretsmanager_client,
)


def test_the_environment_given_to_the_proxy_names_fake_keys_and_no_aws_file():
    env = isolated_environment({"PATH": "/bin", "AWS_PROFILE": "production", "AWS_SESSION_TOKEN": "t",
                                "AWS_ENDPOINT_URL": "https://example.invalid", "AWS_ACCESS_KEY_ID": "AKIDREAL"})
    assert env["PATH"] == "/bin"
    assert "AWS_PROFILE" not in env and "AWS_SESSION_TOKEN" not in env and "AWS_ENDPOINT_URL" not in env
    assert env["AWS_ACCESS_KEY_ID"] == FAKE_ACCESS_KEY_ID
    assert env["AWS_CONFIG_FILE"] == env["AWS_SHARED_CREDENTIALS_FILE"] == os.devnull
    assert env["AWS_EC2_METADATA_DISABLED"] == "true"


def test_a_stand_in_client_ignores_the_machines_profile_and_files(monkeypatch, tmp_path):
    config = tmp_path / "config"
    config.write_text("[profile elsewhere]\nendpoint_url = https://example.invalid\n")
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")  # a client that read it would raise ProfileNotFound
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    client = secretsmanager_client(AwsStandin.from_state({"port": 9}).access())
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    assert client.meta.region_name == "us-east-1"
    assert client._request_signer._credentials.access_key == FAKE_ACCESS_KEY_ID


def test_a_secret_string_is_what_rds_proxy_reads_and_the_access_hides_its_key():
    assert json.loads(login_secret("u", "p")) == {"username": "u", "password": "p"}
    assert "aurora-harness-fake" not in repr(AwsStandin.from_state({"port": 9}).access())


def test_paced_actions_run_until_stopped_and_bad_rates_are_refused():
    ran = threading.Event()
    count = [0]
    lock = threading.Lock()

    def action():
        with lock:
            count[0] += 1
            if count[0] >= 5:
                ran.set()

    paced = Paced(action, 1000, workers=2).start()
    try:
        assert ran.wait(30)
    finally:
        paced.stop()
    assert paced.done >= 5 and paced.errors == 0
    for rate in (0, -1, True, "fast"):
        with pytest.raises(ClientError):
            Paced(action, rate)


def test_an_action_that_raises_is_counted_not_fatal():
    failed = threading.Event()

    def action():
        failed.set()
        raise RuntimeError("boom")

    paced = Paced(action, 1000, workers=1).start()
    try:
        assert failed.wait(30)
    finally:
        paced.stop()
    assert paced.errors >= 1
