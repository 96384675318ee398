"""Secrets on disk and on screen: private files written atomically, the state directory kept to its
owner, and descriptions with every secret hidden by its key's name."""

from __future__ import annotations

import json
import os
import stat

import pytest

from harness.process import write_private
from harness.redaction import REDACTED, is_secret_key, redact
from harness.runstore import RunStore
from harness.statedir import StateDir


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_write_private_is_0600_refuses_to_overwrite_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "proxy.toml"
    write_private(str(path), 'password = "s3cret"\n')
    assert _mode(path) == 0o600 and path.read_text() == 'password = "s3cret"\n'
    with pytest.raises(FileExistsError):
        write_private(str(path), "other\n")
    assert path.read_text() == 'password = "s3cret"\n'
    write_private(str(path), "replaced\n", replace=True)
    assert path.read_text() == "replaced\n" and _mode(path) == 0o600
    write_private(str(tmp_path / "public.cnf"), "x\n", mode=0o644)
    assert _mode(tmp_path / "public.cnf") == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proxy.toml", "public.cnf"]


def test_state_directory_and_its_records_are_the_owners_only(tmp_path):
    directory = tmp_path / "state"
    directory.mkdir(mode=0o755)
    state = StateDir(directory)
    state.write("target", {"cluster": {"password": "s3cret"}})
    assert _mode(directory) == 0o700
    assert _mode(state.file("target")) == 0o600


@pytest.mark.parametrize("key", ["password", "backend_password", "secret_access_key", "aws_secret_access_key",
                                 "session_token", "SecretString", "private_key", "client_secret", "passwd"])
def test_keys_holding_secrets(key):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["user", "secret_id", "secret_arn", "access_key_id", "key_file", "secrets_url",
                                 "database"])
def test_keys_naming_no_secret(key):
    assert not is_secret_key(key)


def test_redaction_walks_the_description_and_keeps_what_is_not_secret():
    description = {
        "credentials": {"user": "app", "password": "pw-1", "database": "app"},
        "iam": {"access_key_id": "AKIAEXAMPLE", "secret_access_key": "sk-2", "session_token": "tok-3"},
        "secrets": {"aurora-harness/app": "app"},
        "instances": [{"id": "instance-1", "password": "pw-1", "port": 5432}],
        "auth": {"secrets": [{"secret_id": "db/app", "password": ""}]},
    }
    hidden = redact(description)
    text = json.dumps(hidden)
    assert not any(s in text for s in ("pw-1", "sk-2", "tok-3"))
    assert hidden["credentials"] == {"user": "app", "password": REDACTED, "database": "app"}
    assert hidden["iam"]["access_key_id"] == "AKIAEXAMPLE"
    assert hidden["secrets"] == {"aurora-harness/app": "app"}
    assert hidden["auth"]["secrets"][0] == {"secret_id": "db/app", "password": ""}
    assert description["credentials"]["password"] == "pw-1"  # a copy: the original is untouched


def test_run_directory_target_description_hides_iam_keys_too(tmp_path):
    store = RunStore.create(tmp_path / "r", target="reference", engine="postgres")
    store.write_target({"credentials": {"user": "u", "password": "s3cret"},
                        "iam": {"access_key_id": "AKIAEXAMPLE", "secret_access_key": "key-s3cret"}})
    text = store.target_path.read_text()
    assert "s3cret" not in text and "AKIAEXAMPLE" in text
