"""The configuration's credential sections: secrets, Secrets Manager, IAM keys, per-user IAMAuth."""

from __future__ import annotations

import json
import tomllib

import pytest

from reference_proxy.config import ProxyConfig, json_schema
from reference_proxy.contracts import BackendCredentials, ConfigError
from reference_proxy.credentials.methods import AuthMethod
from reference_proxy.credentials.settings import MAX_SECRETS, IamAuth
from reference_proxy.credentials.source import IAM_METHOD
from reference_proxy.credentials.static import StaticCredentialSource

EXAMPLE = """
engine = "postgres"

[[endpoints]]
name = "default"
port = 6432
advertised_host = "myproxy.proxy-abc123.us-east-1.rds.amazonaws.com"

[[instances]]
id = "instance-1"
port = 5432

[[auth.users]]
name = "batch"
password = "batch-db-password"
iam_auth = "required"

[[auth.secrets]]
secret_id = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db/app-AbCdEf"

[[auth.secrets]]
secret_id = "db/legacy"
method = "md5"

[[auth.secrets]]
secret_id = "db/lambda"
iam_auth = "required"

[auth.secrets_manager]
region = "us-east-1"
endpoint_url = "http://127.0.0.1:5000"
cache_ttl = 30
refresh_min_interval = 0.5

[auth.iam]
region = "us-east-1"
max_concurrent_authentications = 50

[[auth.iam.access_keys]]
access_key_id = "AKIDLOCALEXAMPLE"
secret_access_key = "local-example-secret-key"
"""


def example(**changes) -> dict:
    data = tomllib.loads(EXAMPLE)
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return data


def key_of(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        ProxyConfig.from_dict(data)
    return info.value.key


def test_the_credential_sections_load_and_round_trip():
    config = ProxyConfig.from_dict(example())
    auth = config.auth
    assert [s.secret_id for s in auth.secrets][1:] == ["db/legacy", "db/lambda"]
    assert auth.secrets[0].method is None and auth.secrets[1].method is AuthMethod.MD5
    assert auth.secrets[2].iam_auth is IamAuth.REQUIRED and auth.requires_iam
    sm = auth.secrets_manager
    assert (sm.region, sm.endpoint_url, sm.cache_ttl, sm.refresh_min_interval) == (
        "us-east-1", "http://127.0.0.1:5000", 30.0, 0.5)
    assert auth.iam.secret_keys() == {"AKIDLOCALEXAMPLE": "local-example-secret-key"}
    assert auth.iam.max_concurrent_authentications == 50
    assert config.endpoints[0].token_host == "myproxy.proxy-abc123.us-east-1.rds.amazonaws.com"
    assert ProxyConfig.from_dict(config.to_dict()) == config


def test_defaults_without_credential_sections():
    config = ProxyConfig.from_dict({"engine": "postgres", "endpoints": [{"name": "default", "port": 0}],
                                    "instances": [{"id": "i", "port": 5432}],
                                    "auth": {"users": [{"name": "app", "password": "pw"}]}})
    assert config.auth.secrets == () and config.auth.iam is None and not config.auth.requires_iam
    assert (config.auth.secrets_manager.cache_ttl, config.auth.secrets_manager.refresh_min_interval) == (60.0, 1.0)
    assert config.auth.users[0].iam_auth is IamAuth.DISABLED
    assert config.endpoints[0].token_host == "127.0.0.1"  # the listening host unless advertised


def test_no_password_or_secret_key_appears_in_any_repr():
    config = ProxyConfig.from_dict(example(monitor={"user": "mon", "password": "monitor-password"}))
    text = repr(config)
    for secret in ("batch-db-password", "local-example-secret-key", "monitor-password"):
        assert secret not in text
    assert "AKIDLOCALEXAMPLE" in text and "db/legacy" in text  # names are not secrets


@pytest.mark.parametrize(("change", "key"), [
    ({"auth__secrets__1__method": "caching_sha2_password"}, "auth.secrets[1].method"),
    ({"auth__secrets__0__iam_auth": "enabled"}, "auth.secrets[0].iam_auth"),
    ({"auth__secrets__0__secret_id": ""}, "auth.secrets[0].secret_id"),
    ({"auth__secrets__0__rotation": 1}, "auth.secrets[0].rotation"),
    ({"auth__secrets__1__secret_id": "db/lambda"}, "auth.secrets"),
    ({"auth__secrets_manager__cache_ttl": -1}, "auth.secrets_manager.cache_ttl"),
    ({"auth__secrets_manager__refresh_min_interval": "soon"}, "auth.secrets_manager.refresh_min_interval"),
    ({"auth__iam__max_concurrent_authentications": 0}, "auth.iam.max_concurrent_authentications"),
    ({"auth__iam__access_keys": []}, "auth.iam.access_keys"),
    ({"auth__iam": None}, "auth.iam.access_keys"),
    ({"auth__users__0__iam_auth": "sometimes"}, "auth.users[0].iam_auth"),
    ({"endpoints__0__advertised_host": ""}, "endpoints[0].advertised_host"),
])
def test_bad_credential_settings_name_the_key(change, key):
    assert key_of(example(**change)) == key


def test_repeated_access_keys_and_too_many_secrets_are_refused():
    data = example()
    data["auth"]["iam"]["access_keys"] *= 2
    assert key_of(data) == "auth.iam.access_keys"
    data = example()
    data["auth"]["secrets"] = [{"secret_id": f"db/{n}"} for n in range(MAX_SECRETS + 1)]
    with pytest.raises(ConfigError, match="at most 200 secrets") as info:
        ProxyConfig.from_dict(data)
    assert info.value.key == "auth.secrets"


def test_iam_users_are_accepted_on_both_engines():
    data = example(engine="mysql")
    data["auth"]["secrets"][1]["method"] = "mysql_native_password"
    config = ProxyConfig.from_dict(data)
    assert config.auth.requires_iam and [u.name for u in config.auth.users if u.iam_auth is IamAuth.REQUIRED]


def test_the_monitor_uses_its_own_or_the_first_static_login_else_a_secret():
    config = ProxyConfig.from_dict(example())
    assert config.monitor_credentials() == ("batch", "batch-db-password")
    only_secrets = ProxyConfig.from_dict(example(auth__users=[]))
    assert only_secrets.monitor_credentials() is None  # the server supplies the first secret's login
    own = ProxyConfig.from_dict(example(auth__users=[], monitor={"user": "mon", "password": "mon-pw"}))
    assert own.monitor_credentials() == ("mon", "mon-pw")
    nothing = ProxyConfig.from_dict(example(auth__users=[], auth__secrets=[]))
    with pytest.raises(ConfigError, match="auth user or secret"):
        nothing.monitor_credentials()


def test_static_iam_users_prove_a_token_and_log_in_to_the_database_with_the_password():
    source = StaticCredentialSource.from_config(ProxyConfig.from_dict(example()))
    batch = source.cached("batch")
    assert batch.requires_iam and batch.client.method == IAM_METHOD and batch.client.password == ""
    assert batch.backend == BackendCredentials("batch", "batch-db-password")


def test_the_schema_describes_the_credential_sections():
    schema = json_schema()
    json.dumps(schema)
    auth = schema["properties"]["auth"]["properties"]
    secret = auth["secrets"]["items"]["properties"]
    assert secret["iam_auth"]["enum"] == ["disabled", "required"]
    assert auth["secrets"]["items"]["required"] == ["secret_id"]
    assert auth["secrets_manager"]["properties"]["cache_ttl"]["minimum"] == 0.0
    keys = auth["iam"]["properties"]["access_keys"]["items"]
    assert set(keys["required"]) == {"access_key_id", "secret_access_key"}
    assert keys["properties"]["secret_access_key"]["writeOnly"] is True
    assert "writeOnly" not in keys["properties"]["access_key_id"]
    assert "advertised_host" in schema["properties"]["endpoints"]["items"]["properties"]


def test_the_example_files_commented_credential_settings_load_when_uncommented():
    """The example file shows the credential sections commented out (they need AWS or a stand-in of
    it to start); uncommented, they must still be a valid configuration."""
    import re
    from importlib import resources

    text = (resources.files("reference_proxy") / "example-config.toml").read_text()
    uncommented = re.sub(r"(?m)^# (?=\[|(?!session_pinning_filters)[a-z_]+ = )", "", text)
    config = ProxyConfig.from_dict(tomllib.loads(uncommented))
    assert [u.name for u in config.auth.users if u.iam_auth is IamAuth.REQUIRED] == ["batch"]
    assert config.auth.secrets[0].method is AuthMethod.MD5
    assert config.auth.secrets_manager.endpoint_url == "http://127.0.0.1:5000"
    assert list(config.auth.iam.secret_keys()) == ["AKIDLOCALEXAMPLE"]
    assert config.endpoint("default").token_host == "myproxy.proxy-abc123.us-east-1.rds.amazonaws.com"
