"""The external target's direct DSNs on MySQL (a MariaDB stand-in behind the reference proxy).

Who is writer comes from each instance's ``@@read_only`` / ``@@innodb_read_only`` answered beside
``@@report_host``, and stays right after a failover; the pool cap is the stated percentage of each
instance's ``max_connections``; and the backend count on the writer leaves out the harness's own
direct sessions by their ``program_name`` connect attribute while counting one that has none.
BORROW-TIMEOUT is judged on the external proxy itself, with its stated settings.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from polling import eventually
from test_certify import certify

from harness.clients.address import Address
from harness.clients.client import SYNC_DRIVERS, query_value
from harness.clients.dialects import MYSQL
from harness.plugin.targets import pool_caps, server_max_connections
from harness.targets.external import ExternalTarget
from harness.targets.reference import ReferenceTarget
from suites.workloads import NOT_PROXY_BACKENDS, proxy_users

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.slow]


def url(host: str, port: int, user: str, password: str, database: str) -> str:
    return f"mysql://{user}:{quote(password, safe='')}@{host}:{port}/{database}"


def test_mysql_direct_instances_roles_caps_and_counts():
    with ReferenceTarget("mysql", readers=1, credentials="static") as ref:
        c = ref.credentials
        roles = ref.roles()

        def instance_url(iid: str) -> str:
            p = ref.cluster.connection_params(iid)
            return url(p.host, p.port, p.user, p.password, p.database)

        target = ExternalTarget("mysql", url(ref.writer_endpoint.host, ref.writer_endpoint.port, c.user, c.password,
                                             c.database),
                                direct_writer_dsn=instance_url(roles["writer"]),
                                direct_reader_dsns=[instance_url(r) for r in roles["readers"]],
                                max_connections_percent=10)
        assert target.roles() == roles
        instances = target.direct_instances()
        assert pool_caps(target) == {i["id"]: server_max_connections("mysql", i) * 10 // 100 for i in instances}

        writer = next(e for e in target.direct_endpoints if e.role == "writer")
        counting = target.direct_address(writer)
        sql = MYSQL.backend_count_sql("1", NOT_PROXY_BACKENDS, proxy_users(target))

        def count() -> int:
            return int(query_value(counting, sql))

        before = count()
        named = SYNC_DRIVERS["mysql"](counting)  # the harness's own direct session: left out
        named.open()
        try:
            assert count() == before
            plain = SYNC_DRIVERS["mysql"](Address(**{**counting.__dict__, "program": None}))
            plain.open()  # a session of the same user with no program name: counted, as a backend would be
            try:
                assert count() == before + 1
            finally:
                plain.close()
        finally:
            named.close()

        promoted = ref.failover()
        eventually(lambda: target.roles()["writer"] == promoted, timeout=60, what="the promoted writer is seen")
        assert roles["writer"] in target.roles()["readers"]


def test_mysql_borrow_timeout_is_judged_on_the_external_proxy_itself(tmp_path):
    with ReferenceTarget("mysql", readers=1, credentials="static",
                         pool={"max_connections_percent": 2, "connection_borrow_timeout": 2.0}) as ref:
        c, roles = ref.credentials, ref.roles()

        def instance_url(iid: str) -> str:
            p = ref.cluster.connection_params(iid)
            return url(p.host, p.port, p.user, p.password, p.database)

        run_dir = tmp_path / "run"
        done = certify("--target", "external", "--engine", "mysql", "--writer-dsn",
                       url(ref.writer_endpoint.host, ref.writer_endpoint.port, c.user, c.password, c.database),
                       "--direct-writer-dsn", instance_url(roles["writer"]),
                       *[a for r in roles["readers"] for a in ("--direct-reader-dsn", instance_url(r))],
                       "--max-connections-percent", "2", "--borrow-timeout", "2", "--suite", "conformance",
                       "-k", "borrow", "--run-dir", str(run_dir), "--seed", "7", timeout=300)
    verdict = json.loads((run_dir / "results.json").read_text())["guarantees"]["BORROW-TIMEOUT"]
    assert verdict["valid"] == "true", verdict  # errno 9501 with RDS Proxy's text, about 2 s after asking
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert c.password not in done.stdout + done.stderr
