"""The configuration file: the example loads, RDS defaults apply, errors name the dotted key."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from reference_proxy.config import AuthMethod, EndpointRole, Engine, ProxyConfig, json_schema
from reference_proxy.contracts import ConfigError, Role

MINIMAL = {
    "engine": "postgres",
    "endpoints": [{"name": "default", "port": 6432}],
    "instances": [{"id": "i1", "port": 5432}],
}


def example_path():
    return resources.files("reference_proxy") / "example-config.toml"


def test_example_file_loads():
    config = ProxyConfig.load(example_path())
    assert config.engine is Engine.POSTGRES
    assert [e.name for e in config.endpoints] == ["default", "reader", "reporting"]
    assert config.endpoint("reporting").readers == ("instance-3",)
    assert config.endpoint("reader").role is EndpointRole.READ_ONLY
    assert config.instances[0].role is Role.WRITER
    assert config.instances[0].address.port == 5432
    legacy = config.user("legacy")
    assert (legacy.database_user, legacy.database_password) == ("legacy_db", "legacy-db-secret")
    app = config.user("app")
    assert (app.database_user, app.database_password) == ("app", "app-secret")


def test_defaults_are_rds_defaults():
    config = ProxyConfig.from_dict(MINIMAL)
    pool = config.pool
    assert (pool.max_connections_percent, pool.max_idle_connections_percent, pool.connection_borrow_timeout,
            pool.init_query, pool.idle_client_timeout) == (100, 50, 120.0, None, 1800.0)
    assert config.endpoints[0].host == "127.0.0.1" and config.endpoints[0].role is EndpointRole.READ_WRITE
    assert config.admin.host == "127.0.0.1"
    assert config.tls.require_tls is False and config.tls.cert_file is None
    assert config.proxy.client_handshake_timeout == 120.0
    assert config.proxy.client_login_timeout == 60.0  # PostgreSQL's authentication_timeout
    assert config.proxy.max_unauthenticated_clients == 10000
    assert config.testing.failpoint is None


def test_the_unsafe_testing_failpoint_is_off_unless_asked_for_and_says_why_it_exists(tmp_path):
    assert ProxyConfig.load(example_path()).testing.failpoint is None
    path = tmp_path / "leaky.toml"
    path.write_text('engine = "mysql"\n[[endpoints]]\nname = "default"\nport = 6432\n'
                    '[[instances]]\nid = "i1"\nport = 3306\n[testing]\nfailpoint = "leak_session_state"\n')
    config = ProxyConfig.load(path)
    assert config.testing.on("leak_session_state") and not config.testing.on("split_transactions")
    assert ProxyConfig.from_dict(config.to_dict()) == config
    assert ProxyConfig.from_dict(MINIMAL).with_overrides(
        {"testing.failpoint": "split_transactions"}).testing.on("split_transactions")
    described = json_schema()["properties"]["testing"]
    assert described["properties"]["failpoint"].get("default") is None
    assert "unsafe on purpose" in described["properties"]["failpoint"]["description"]
    assert "unsafe on purpose" in described["description"]


def test_a_failpoint_is_refused_unless_the_environment_allows_it():
    from harness.targets.reference import FAILPOINTS_ALLOW_ENV
    from reference_proxy.contracts import ConfigError
    from reference_proxy.failpoints import ALLOW_ENV, FAILPOINTS, check_allowed

    assert FAILPOINTS_ALLOW_ENV == ALLOW_ENV  # the harness names the proxy's variable without importing it
    check_allowed(None, {})
    for name in FAILPOINTS:
        check_allowed(name, {ALLOW_ENV: "1"})
        with pytest.raises(ConfigError, match=f"refused unless the environment sets {ALLOW_ENV}=1"):
            check_allowed(name, {})
    with pytest.raises(ConfigError, match="is not a failpoint"):
        check_allowed("leak_sesion_state", {ALLOW_ENV: "1"})


def test_round_trip_and_overrides():
    config = ProxyConfig.load(example_path())
    assert ProxyConfig.from_dict(config.to_dict()) == config
    changed = config.with_overrides({"pool.connection_borrow_timeout": 5, "endpoints.1.port": 7000},
                                    admin__port=9100, engine=None)
    assert changed.pool.connection_borrow_timeout == 5.0
    assert changed.endpoints[1].port == 7000 and changed.admin.port == 9100
    assert changed.engine is Engine.POSTGRES  # None leaves a setting alone
    assert config.pool.connection_borrow_timeout == 120.0  # the original is untouched


@pytest.mark.parametrize(("change", "key"), [
    ({"pool": {"max_conections_percent": 50}}, "pool.max_conections_percent"),
    ({"surprise": 1}, "surprise"),
    ({"endpoints": [{"name": "default", "port": 6432, "colour": "red"}]}, "endpoints[0].colour"),
    ({"auth": {"users": [{"name": "a", "password": "p", "pasword": "q"}]}}, "auth.users[0].pasword"),
])
def test_unknown_keys_are_named(change, key):
    with pytest.raises(ConfigError) as caught:
        ProxyConfig.from_dict({**MINIMAL, **change})
    assert caught.value.key == key
    assert key in str(caught.value)


@pytest.mark.parametrize(("change", "key"), [
    ({"pool": {"max_connections_percent": 0}}, "pool.max_connections_percent"),
    ({"pool": {"max_connections_percent": 101}}, "pool.max_connections_percent"),
    ({"pool": {"max_connections_percent": 40, "max_idle_connections_percent": 50}},
     "pool.max_idle_connections_percent"),
    ({"pool": {"connection_borrow_timeout": 301}}, "pool.connection_borrow_timeout"),
    ({"pool": {"connection_borrow_timeout": -1}}, "pool.connection_borrow_timeout"),
    ({"pool": {"idle_client_timeout": 28801}}, "pool.idle_client_timeout"),
    ({"pool": {"max_connections_percent": "all"}}, "pool.max_connections_percent"),
    ({"endpoints": [{"name": "default", "port": 70000}]}, "endpoints[0].port"),
    ({"endpoints": [{"name": "default", "port": 1, "role": "primary"}]}, "endpoints[0].role"),
    ({"endpoints": [{"name": "default"}]}, "endpoints[0].port"),
    ({"endpoints": []}, "endpoints"),
    ({"endpoints": [{"name": "a", "port": 1}, {"name": "a", "port": 2}]}, "endpoints[1].name"),
    ({"endpoints": [{"name": "a", "port": 1, "readers": ["i1"]}]}, "endpoints[0].readers"),
    ({"instances": [{"id": "i1", "port": 0}]}, "instances[0].port"),
    ({"instances": [{"id": "i1", "port": 1, "role": "boss"}]}, "instances[0].role"),
    ({"engine": "oracle"}, "engine"),
    ({"auth": {"users": [{"name": "a", "password": "p", "method": "md5"}]}, "engine": "mysql"},
     "auth.users[0].method"),
    ({"tls": {"cert_file": "c.pem"}}, "tls.key_file"),
    ({"logging": {"level": "chatty"}}, "logging.level"),
    ({"admin": {"port": 6432}}, "endpoints"),
    ({"proxy": {"client_handshake_timeout": 0}}, "proxy.client_handshake_timeout"),
    ({"testing": {"failpoint": True}}, "testing.failpoint"),
    ({"testing": {"failpoint": "leak_sesion_state"}}, "testing.failpoint"),
    ({"testing": {"leak_session_state": True}}, "testing.leak_session_state"),
])
def test_bad_values_are_named(change, key):
    with pytest.raises(ConfigError) as caught:
        ProxyConfig.from_dict({**MINIMAL, **change})
    assert caught.value.key == key, str(caught.value)


def test_missing_engine_and_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="engine: required"):
        ProxyConfig.from_dict({k: v for k, v in MINIMAL.items() if k != "engine"})
    with pytest.raises(ConfigError, match="cannot read"):
        ProxyConfig.load(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("engine = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        ProxyConfig.load(bad)


def test_auth_method_defaults_per_engine():
    config = ProxyConfig.from_dict({**MINIMAL, "auth": {"users": [{"name": "a", "password": "p"}]}})
    assert config.auth_method(config.auth.users[0]) is AuthMethod.SCRAM_SHA_256
    mysql = ProxyConfig.from_dict({**MINIMAL, "engine": "mysql",
                                   "auth": {"users": [{"name": "a", "password": "p"}]}})
    assert mysql.auth_method(mysql.auth.users[0]) is AuthMethod.CACHING_SHA2_PASSWORD


def test_json_schema_describes_the_file():
    schema = json_schema()
    json.dumps(schema)
    pool = schema["properties"]["pool"]["properties"]
    assert pool["max_connections_percent"] == {
        "type": "integer", "minimum": 1, "maximum": 100, "default": 100,
        "description": pool["max_connections_percent"]["description"]}
    assert schema["properties"]["endpoints"]["items"]["additionalProperties"] is False
    assert set(schema["required"]) == {"engine", "endpoints", "instances"}


def test_session_pinning_filters_are_mysql_only_and_named_as_rds_names_them():
    mysql = {**MINIMAL, "engine": "mysql"}
    config = ProxyConfig.from_dict({**mysql, "pool": {"session_pinning_filters": ["EXCLUDE_VARIABLE_SETS"]}})
    assert config.pool.session_pinning_filters == ("EXCLUDE_VARIABLE_SETS",)
    assert config.pool.exclude_variable_sets
    assert not ProxyConfig.from_dict(mysql).pool.exclude_variable_sets
    with pytest.raises(ConfigError) as unknown:
        ProxyConfig.from_dict({**mysql, "pool": {"session_pinning_filters": ["EXCLUDE_EVERYTHING"]}})
    assert "EXCLUDE_VARIABLE_SETS" in str(unknown.value)
    with pytest.raises(ConfigError) as postgres:
        ProxyConfig.from_dict({**MINIMAL, "pool": {"session_pinning_filters": ["EXCLUDE_VARIABLE_SETS"]}})
    assert "MySQL engine only" in str(postgres.value)
