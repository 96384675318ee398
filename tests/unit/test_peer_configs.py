"""Peer configurations, without starting anything: loopback only, the password kept out of every
file but the private one, each backend named, and settings a peer cannot take refused up front."""

from __future__ import annotations

import pytest

from harness.peers.pgbouncer import PgBouncer
from harness.peers.pgpool import PgPool
from harness.standins.base import ConnectionParams

PASSWORD = "Pw-that-must-stay-private"


def backend(port: int, **changes) -> ConnectionParams:
    values = {"host": "127.0.0.1", "port": port, "user": "harness", "password": PASSWORD, "database": "harness"}
    return ConnectionParams(**{**values, **changes})


def pgpool_settings(pool: PgPool) -> dict[str, str]:
    pool.base_dir, pool.port, pool.control_port = "/scratch/it's here", 6000, 6001
    pairs = (line.split(" = ", 1) for line in pool._config().splitlines())
    return dict(pairs)


def test_pgpool_listens_on_loopback_balances_over_every_backend_and_names_no_password():
    pool = PgPool([backend(5001), backend(5002), backend(5003)])
    settings = pgpool_settings(pool)
    assert settings["listen_addresses"] == "'127.0.0.1'" and settings["pcp_listen_addresses"] == "'127.0.0.1'"
    assert settings["port"] == "6000" and settings["pcp_port"] == "6001"
    assert settings["backend_clustering_mode"] == "'streaming_replication'"
    assert settings["load_balance_mode"] == "on" and settings["failover_on_backend_error"] == "off"
    assert [settings[f"backend_port{i}"] for i in range(3)] == ["5001", "5002", "5003"]
    assert settings["unix_socket_directories"] == "'/scratch/it''s here'"  # a quote in a value is doubled
    assert settings["sr_check_password"] == "''"  # looked up in pool_passwd
    assert PASSWORD not in pool._config()
    assert pgpool_settings(PgPool([backend(5001)], load_balance=False))["load_balance_mode"] == "off"
    weighted = pgpool_settings(PgPool([backend(5001), backend(5002)], weights=[0, 3]))
    assert (weighted["backend_weight0"], weighted["backend_weight1"]) == ("0", "3")


def test_pgpool_backends_are_one_cluster():
    with pytest.raises(ValueError, match="at least one backend"):
        PgPool([])
    with pytest.raises(ValueError, match="share one user, password and database"):
        PgPool([backend(5001), backend(5002, password="another")])
    for weights in ([1], [0, 0], [1, -1]):
        with pytest.raises(ValueError, match="one weight of 0 or more per backend"):
            PgPool([backend(5001), backend(5002)], weights=weights)


def test_pgbouncer_takes_its_three_pool_modes_only():
    for mode in ("session", "transaction", "statement"):
        assert PgBouncer(backend(5001), pool_mode=mode).pool_mode == mode
    with pytest.raises(ValueError, match="pool_mode must be one of session, transaction, statement"):
        PgBouncer(backend(5001), pool_mode="transactions")
