"""The engine registry: the configuration's engine picks the parts the server plugs together."""

from __future__ import annotations

import pytest

from reference_proxy.config import Engine, ProxyConfig
from reference_proxy.contracts import ConfigError
from reference_proxy.engines import IMPLEMENTATIONS, engine_for
from reference_proxy.pinning import PinDecision

BASE = {
    "endpoints": [{"name": "default", "port": 0}],
    "instances": [{"id": "i1", "port": 5432}],
    "auth": {"users": [{"name": "app", "password": "secret"}]},
}


def config(engine: str) -> ProxyConfig:
    return ProxyConfig.from_dict({**BASE, "engine": engine})


def test_postgres_engine_supplies_its_parts():
    engine = engine_for(config("postgres"))
    assert engine.name is Engine.POSTGRES
    decision = engine.classify("SET search_path TO app")
    assert isinstance(decision, PinDecision) and decision.trigger == "set"
    assert engine.classify("SELECT 1") is None  # screened: no tokenizing, same answer
    assert engine.digest("SELECT 'x'  FROM t") == "SELECT $1 FROM t"
    assert callable(engine.sessions) and callable(engine.backends) and callable(engine.probe)


def test_mysql_engine_supplies_its_parts():
    engine = engine_for(config("mysql"))
    assert engine.name is Engine.MYSQL
    assert engine.classify("SELECT 1") is None
    assert callable(engine.sessions) and callable(engine.backends) and callable(engine.probe)


def test_every_configurable_engine_without_an_implementation_is_a_config_error_naming_the_served_ones(
        monkeypatch):
    # Every engine the configuration knows is served now; take one away to see the refusal.
    monkeypatch.delitem(IMPLEMENTATIONS, Engine.MYSQL)
    for name in (e for e in Engine if e not in IMPLEMENTATIONS):
        with pytest.raises(ConfigError) as info:
            engine_for(config(name.value))
        assert info.value.key == "engine"
        assert repr(name.value) in str(info.value) and "supported engines: 'postgres'" in str(info.value)


def test_the_server_refuses_an_engine_it_does_not_serve(monkeypatch):
    from reference_proxy.server import ProxyServer

    monkeypatch.delitem(IMPLEMENTATIONS, Engine.MYSQL)
    with pytest.raises(ConfigError, match="supported engines"):
        ProxyServer(config("mysql"))
