"""MySQL Connector/Python (pure-Python mode) through the reference proxy, on a MariaDB stand-in.

Connector is the driver that takes the proxy's MySQL 8.0 version at its word: it sends ``SET NAMES
'utf8mb4' COLLATE 'utf8mb4_0900_ai_ci'`` after login, which the stand-in must know (Aurora MySQL 3
does).  It also uses the binary protocol for prepared cursors, which pins a proxied session.
"""

from __future__ import annotations

import os

import pytest
from mysql import connector
from mysql_proxy_support import running_proxy

from harness.standins.mysql.cluster import SEARCH_DIRS, MySQLCluster

pytestmark = [
    pytest.mark.integration, pytest.mark.mysql,
    pytest.mark.skipif(not any(os.path.exists(os.path.join(d, "mariadbd")) for d in SEARCH_DIRS),
                       reason="MariaDB server binaries are not installed"),
]


@pytest.fixture(scope="module")
def cluster():
    with MySQLCluster(readers=1) as c:
        yield c


@pytest.fixture(scope="module")
def proxy(cluster):
    with running_proxy(cluster) as p:
        yield p


def connect(proxy, endpoint: str = "default", **options):
    return connector.connect(host="127.0.0.1", port=proxy.port(endpoint), user=proxy.cluster.user,
                             password=proxy.cluster.password, database=proxy.cluster.database,
                             use_pure=True, connection_timeout=10, **options)


@pytest.mark.parametrize("ssl_disabled", [True, False], ids=["plaintext", "tls"])
def test_connector_logs_in_with_mysql8_collation(proxy, ssl_disabled):
    conn = connect(proxy, ssl_disabled=ssl_disabled)
    try:
        cur = conn.cursor()
        cur.execute("SELECT @@collation_connection, 'a' = 'A', 'a' = 'á'")
        assert cur.fetchone() == ("utf8mb4_0900_ai_ci", 1, 1)
        cur.execute("SELECT %s, %s", (41, "x"))
        assert cur.fetchone() == (41, "x")
        cur.close()
    finally:
        conn.close()


def test_connector_prepared_cursor_on_both_endpoints(proxy, cluster):
    for endpoint, instance in (("default", cluster.writer.id), ("reader", cluster.readers[0].id)):
        conn = connect(proxy, endpoint, ssl_disabled=True)
        try:
            cur = conn.cursor(prepared=True)
            cur.execute("SELECT ? + 1, @@report_host", (41,))
            assert cur.fetchone() == (42, instance)
            cur.execute("SELECT ? + 1, @@report_host", (1,))  # the same statement, executed again
            assert cur.fetchone() == (2, instance)
            cur.close()
        finally:
            conn.close()


def test_connector_transaction_commits_and_rolls_back(proxy):
    conn = connect(proxy, ssl_disabled=True)
    try:
        cur = conn.cursor()
        cur.execute("CREATE TABLE IF NOT EXISTS connector_t (id INT PRIMARY KEY, s VARCHAR(10)) "
                    "COLLATE utf8mb4_0900_ai_ci")
        cur.execute("DELETE FROM connector_t")
        conn.commit()
        cur.execute("INSERT INTO connector_t VALUES (1, 'á')")
        conn.rollback()
        cur.execute("INSERT INTO connector_t VALUES (2, 'A')")
        conn.commit()
        cur.execute("SELECT id FROM connector_t WHERE s = 'a'")
        assert cur.fetchall() == [(2,)]
        cur.close()
    finally:
        conn.close()
