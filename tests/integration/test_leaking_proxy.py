"""The reference proxy's unsafe ``leak_session_state`` failpoint, started through the harness.

With a pool of one backend connection, what client A leaves on its session is on the very backend
client B gets next.  The leaking proxy hands it over as it is; the normal proxy pinned A and resets
the backend first.  Each test starts one stand-in and both proxies in front of it, as
:class:`~harness.targets.reference.ReferenceTarget` processes, so the switch is exercised the way a
certification starts it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harness.standins.mysql.cluster import SEARCH_DIRS, MySQLCluster
from harness.standins.postgres.cluster import PG_BIN_DIR, PostgresCluster
from harness.targets.reference import ReferenceTarget

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POOL_OF_ONE = {"max_connections_percent": 1, "max_idle_connections_percent": 1}
"""1 % of the stand-ins' max_connections (151 on MariaDB, 100 on PostgreSQL): one backend connection."""
LEAKING = {"failpoint": "leak_session_state"}
MARK = "from-client-a"


def _connect_mysql(target: ReferenceTarget) -> Any:
    import pymysql

    return pymysql.connect(**target.conninfo(target.writer_endpoint), autocommit=True, connect_timeout=10)


def _connect_postgres(target: ReferenceTarget) -> Any:
    import psycopg

    return psycopg.connect(**target.conninfo(target.writer_endpoint), autocommit=True, connect_timeout=10)


def _query(conn: Any, sql: str) -> tuple[Any, ...] | None:
    """Run ``sql``; its first row, if it returns rows."""
    cur = conn.cursor()
    try:
        cur.execute(sql)
        return cur.fetchone() if cur.description else None
    finally:
        cur.close()


def _mysql_state(conn: Any) -> dict[str, Any]:
    import pymysql

    variable, lock_free = _query(conn, "SELECT @leak_v, IS_FREE_LOCK('harness_leak_lock')")
    try:
        _query(conn, "SELECT COUNT(*) FROM harness_leak_tmp")
        temp_table = True
    except pymysql.err.ProgrammingError:  # 1146: no such table in this session
        temp_table = False
    return {"variable": variable, "lock_held": lock_free == 0, "temp_table": temp_table}


def _postgres_state(conn: Any) -> dict[str, Any]:
    variable, temp_table = _query(conn, "SELECT current_setting('harness.leak_v', true), "
                                        "to_regclass('pg_temp.harness_leak_tmp') IS NOT NULL")
    return {"variable": variable or None, "temp_table": temp_table}


ENGINES = {
    "mysql": (MySQLCluster, _connect_mysql,
              [f"SET @leak_v = '{MARK}'", "SELECT GET_LOCK('harness_leak_lock', 0)",
               "CREATE TEMPORARY TABLE harness_leak_tmp (x INT)"], _mysql_state,
              {"variable": MARK, "lock_held": True, "temp_table": True},
              {"variable": None, "lock_held": False, "temp_table": False}),
    "postgres": (PostgresCluster, _connect_postgres,
                 [f"SET harness.leak_v = '{MARK}'", "CREATE TEMPORARY TABLE harness_leak_tmp (x int)"],
                 _postgres_state, {"variable": MARK, "temp_table": True},
                 {"variable": None, "temp_table": False}),
}
HAVE_SERVER = {"mysql": any(os.path.exists(os.path.join(d, "mariadbd")) for d in SEARCH_DIRS),
               "postgres": os.path.exists(os.path.join(PG_BIN_DIR, "postgres"))}


def _what_b_sees(target: ReferenceTarget, connect: Callable[[ReferenceTarget], Any], statements: list[str],
                 state: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """Client A changes its session and leaves; then client B, alone on the one backend, looks."""
    with contextlib.closing(connect(target)) as a:
        for sql in statements:
            _query(a, sql)
    with contextlib.closing(connect(target)) as b:
        return state(b)


@contextlib.contextmanager
def _proxy(cluster: Any, engine: str, **testing: Any) -> Iterator[ReferenceTarget]:
    with ReferenceTarget(engine, readers=0, cluster=cluster, pool=POOL_OF_ONE, testing=testing) as target:
        yield target


@pytest.mark.parametrize("engine", [pytest.param("mysql", marks=pytest.mark.mysql),
                                    pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_leaking_proxy_hands_one_clients_session_state_to_the_next(engine):
    if not HAVE_SERVER[engine]:
        pytest.skip(f"the {engine} server binaries are not installed")
    cluster_class, connect, statements, state, leaked, clean = ENGINES[engine]
    with cluster_class(readers=0) as cluster:
        with _proxy(cluster, engine, **LEAKING) as leaking:
            assert _what_b_sees(leaking, connect, statements, state) == leaked
            with open(leaking.log_path) as log:
                assert "UNSAFE TEST MODE: failpoint leak_session_state is on" in log.read()
            assert leaking.describe()["proxy_testing"] == LEAKING
        with _proxy(cluster, engine) as normal:
            assert _what_b_sees(normal, connect, statements, state) == clean
            with open(normal.log_path) as log:
                assert "UNSAFE" not in log.read()
