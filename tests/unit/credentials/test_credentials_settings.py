"""The credential sections' declarations: ranges, uniqueness, no secret in a repr, loadable as TOML data."""

from __future__ import annotations

import pytest

from reference_proxy import config as config_module
from reference_proxy.contracts import ConfigError
from reference_proxy.credentials.methods import AuthMethod
from reference_proxy.credentials.settings import (
    IamAccessKey,
    IamAuth,
    IamSettings,
    SecretConfig,
    SecretsManagerSettings,
)


def test_an_access_keys_repr_hides_its_secret() -> None:
    key = IamAccessKey("AKIDTEST", "very-secret-key")
    assert "very-secret-key" not in repr(key) and "AKIDTEST" in repr(key)
    assert "very-secret-key" not in repr(IamSettings(access_keys=(key,)))


def test_iam_settings_refuse_a_repeated_key_and_give_the_verifiers_map() -> None:
    keys = (IamAccessKey("A", "s1"), IamAccessKey("B", "s2"))
    assert IamSettings(access_keys=keys).secret_keys() == {"A": "s1", "B": "s2"}
    with pytest.raises(ConfigError, match="repeated: \\['A'\\]"):
        IamSettings(access_keys=(IamAccessKey("A", "s1"), IamAccessKey("A", "s2")))
    with pytest.raises(ConfigError, match="max_concurrent_authentications"):
        IamSettings(max_concurrent_authentications=0)


def test_secrets_manager_settings_check_their_ranges() -> None:
    assert SecretsManagerSettings().cache_ttl == 60.0
    with pytest.raises(ConfigError, match="cache_ttl"):
        SecretsManagerSettings(cache_ttl=-1)


def test_the_configuration_loader_builds_the_sections_from_toml_data() -> None:
    """What ``[[auth.secrets]]`` and ``[auth.iam]`` will go through once the configuration holds them."""
    secret = config_module._build(SecretConfig, {"secret_id": "arn:aws:secretsmanager:us-east-1:1:secret:app",
                                                 "method": "md5", "iam_auth": "required"}, "auth.secrets[0]")
    assert secret.method is AuthMethod.MD5 and secret.iam_auth is IamAuth.REQUIRED
    iam = config_module._build(IamSettings, {"region": "eu-west-1", "access_keys": [
        {"access_key_id": "AKID", "secret_access_key": "s"}]}, "auth.iam")
    assert iam.secret_keys() == {"AKID": "s"}
    with pytest.raises(ConfigError, match="auth.secrets\\[0\\].iam_auth"):
        config_module._build(SecretConfig, {"secret_id": "x", "iam_auth": "enabled"}, "auth.secrets[0]")
