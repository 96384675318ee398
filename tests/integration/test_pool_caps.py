"""The reference target's pool cap is computed from the servers, not taken from the proxy under test."""

from __future__ import annotations

import pytest

from harness.plugin import PluginError
from harness.plugin.targets import server_max_connections
from harness.standins.mysql.cluster import MySQLCluster
from harness.standins.postgres.cluster import PostgresCluster

pytestmark = [pytest.mark.integration]


@pytest.mark.postgres
def test_max_connections_is_read_from_a_postgres_instance():
    with PostgresCluster(readers=0, max_connections=37) as cluster:
        inst = cluster.describe()["instances"][0]
        assert server_max_connections("postgres", inst) == 37
        with pytest.raises(PluginError, match="cannot read max_connections"):
            server_max_connections("postgres", {**inst, "password": "wrong"}, timeout=2)


@pytest.mark.mysql
def test_max_connections_is_read_from_a_mariadb_instance():
    with MySQLCluster(readers=0) as cluster:
        inst = cluster.describe()["instances"][0]
        assert server_max_connections("mysql", inst) > 0
