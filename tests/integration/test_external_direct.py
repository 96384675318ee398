"""An external target with the instances' own DSNs, on a reference target's endpoints and stand-in.

* Who is writer is asked of every instance: right at the start, and right after a failover turned
  the instance of ``--direct-writer-dsn`` into a reader.
* The pool cap of an external target with ``--max-connections-percent`` is the stated percentage of
  each instance's own ``max_connections``, read through the direct DSNs.
* The harness's own direct connections carry their program name, so the backend count leaves them out.
* A certification with direct DSNs judges the latency guarantees (the baseline is read straight
  from the writer) and routes by who was writer, asked of the instances.
* Preflight of the direct DSNs: a proxy endpoint's address, a DSN that reaches the same instance as
  another, and a set with no writable instance are each one line (exit 2 through the CLI), no password.
"""

from __future__ import annotations

import json

import pytest
from polling import eventually
from test_certify import certify

from harness.clients.address import DIRECT_PROGRAM
from harness.clients.client import query_value
from harness.clients.preflight import PreflightFailed, ask, check_endpoints
from harness.peers.haproxy import HAProxy
from harness.plugin.targets import pool_caps
from harness.targets.external import ExternalTarget
from harness.targets.reference import ReferenceTarget

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow, pytest.mark.shares_cluster]


def dsn(host: str, port: int, user: str, password: str, database: str) -> str:
    return f"host={host} port={port} user={user} password={password} dbname={database}"


def instance_dsn(ref: ReferenceTarget, instance_id: str) -> str:
    p = ref.cluster.connection_params(instance_id)
    return dsn(p.host, p.port, p.user, p.password, p.database)


def endpoint_dsn(ref: ReferenceTarget, endpoint) -> str:
    c = ref.credentials
    return dsn(endpoint.host, endpoint.port, c.user, c.password, c.database)


def external_over(ref: ReferenceTarget, *, direct_writer: str | None = None, direct_readers: list[str] | None = None,
                  **options) -> ExternalTarget:
    """An external target on ``ref``'s proxy endpoints, with the stand-in's instances as direct DSNs."""
    roles = ref.roles()
    return ExternalTarget(
        "postgres", endpoint_dsn(ref, ref.writer_endpoint), [endpoint_dsn(ref, ref.reader_endpoints[0])],
        direct_writer_dsn=direct_writer or instance_dsn(ref, roles["writer"]),
        direct_reader_dsns=direct_readers if direct_readers is not None else
        [instance_dsn(ref, r) for r in roles["readers"]], **options)


@pytest.fixture(scope="module")
def ref():
    with ReferenceTarget("postgres", readers=2, credentials="static", pool={"max_connections_percent": 20}) as t:
        yield t


def test_preflight_accepts_the_instances_and_roles_follow_a_failover(ref):
    target = external_over(ref)
    assert check_endpoints(target, timeout=5) == []
    before = ref.roles()
    assert target.roles() == before
    assert {i["id"]: i["given_as"] for i in target.direct_instances()} == {
        before["writer"]: "writer", **{r: "reader" for r in before["readers"]}}

    promoted = ref.failover()
    # The instance of --direct-writer-dsn is a reader now; the target says so from the instances' own answers.
    eventually(lambda: target.roles()["writer"] == promoted, timeout=30, what="the promoted writer is seen")
    after = target.roles()
    assert before["writer"] in after["readers"] and promoted not in after["readers"]
    old = next(i for i in target.direct_instances() if i["given_as"] == "writer")
    assert old["id"] == before["writer"] and old["role"] == "reader"
    # Once the proxy follows too, a preflight warns that the writer DSN reaches a reader, and goes on.
    eventually(lambda: ask(target, target.writer_endpoint, 5)[0] == promoted, timeout=30,
               what="the proxy's writer endpoint reaches the promoted writer")
    warnings = check_endpoints(target, timeout=5)
    assert len(warnings) == 1 and "is read-only now" in warnings[0] and before["writer"] in warnings[0]


def test_the_stated_percentage_of_each_instances_max_connections_is_the_pool_cap(ref):
    target = external_over(ref, max_connections_percent=20, borrow_timeout=5)
    caps = pool_caps(target)
    assert caps == {i.id: 100 * 20 // 100 for i in ref.cluster.instances}  # the stand-in's max_connections is 100
    assert pool_caps(external_over(ref)) is None  # no stated settings, no cap


def test_the_harnesss_direct_connections_name_themselves(ref):
    target = external_over(ref)
    writer = next(e for e in target.direct_endpoints if e.role == "writer")
    sql = ("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
           f"'{DIRECT_PROGRAM}' AND pid = pg_backend_pid()")
    assert int(query_value(target.direct_address(writer), sql)) == 1


def test_direct_dsns_that_are_not_instances_are_refused_in_one_line(ref):
    roles = ref.roles()
    proxy_writer = endpoint_dsn(ref, ref.writer_endpoint)
    with pytest.raises(PreflightFailed, match=r"--direct-writer-dsn 127.0.0.1:\d+ is the writer endpoint "
                                              r"127.0.0.1:\d+'s address"):
        check_endpoints(external_over(ref, direct_writer=proxy_writer), timeout=5)
    writer_params = ref.cluster.connection_params(roles["writer"])
    with HAProxy(writer_params) as pipe:  # another way to the writer: not the writer's own endpoint
        p = pipe.params
        piped = dsn(p.host, p.port, p.user, p.password, p.database)
        with pytest.raises(PreflightFailed, match=rf"both reach instance {roles['writer']}") as caught:
            check_endpoints(external_over(ref, direct_readers=[piped]), timeout=5)
    assert writer_params.password not in str(caught.value)
    readers_only = external_over(ref, direct_writer=instance_dsn(ref, roles["readers"][0]),
                                 direct_readers=[instance_dsn(ref, roles["readers"][1])])
    with pytest.raises(PreflightFailed, match="none of the direct DSNs reaches a writable instance"):
        check_endpoints(readers_only, timeout=5)


def test_a_certification_with_direct_dsns_judges_latency_and_routes_by_who_was_writer(ref, tmp_path):
    roles = ref.roles()
    run_dir = tmp_path / "run"
    done = certify("--target", "external", "--writer-dsn", endpoint_dsn(ref, ref.writer_endpoint),
                   "--reader-dsn", endpoint_dsn(ref, ref.reader_endpoints[0]),
                   "--direct-writer-dsn", instance_dsn(ref, roles["writer"]),
                   *[a for r in roles["readers"] for a in ("--direct-reader-dsn", instance_dsn(ref, r))],
                   "--suite", "conformance", "-k", "latency or routing", "--run-dir", str(run_dir), "--seed", "7",
                   timeout=300)
    g = json.loads((run_dir / "results.json").read_text())["guarantees"]
    for gid in ("LATENCY-ADDED-P50", "LATENCY-ADDED-P99"):
        assert g[gid]["valid"] in ("true", "false"), (gid, g[gid])  # judged: the baseline came from the writer
    for gid in ("ROUTE-WRITER-ENDPOINT", "ROUTE-READER-ONLY"):
        assert g[gid]["valid"] == "true" and "by who was writer" in g[gid]["reason"], (gid, g[gid])
    assert g["ROUTE-READER-BALANCE"]["valid"] == "true", g["ROUTE-READER-BALANCE"]
    target = json.loads((run_dir / "target.json").read_text())
    assert "direct" in target["capabilities"] and len(target["direct"]) == 3
    assert ref.credentials.password not in done.stdout + done.stderr + (run_dir / "target.json").read_text()


def test_a_direct_dsn_with_a_wrong_password_ends_certify_in_one_line_with_exit_2(ref, tmp_path):
    roles = ref.roles()
    p = ref.cluster.connection_params(roles["writer"])
    done = certify("--target", "external", "--writer-dsn", endpoint_dsn(ref, ref.writer_endpoint),
                   "--direct-writer-dsn", dsn(p.host, p.port, p.user, "Wrong-Direct-Pw-1", p.database),
                   "--run-dir", str(tmp_path / "run"), timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert f"--direct-writer-dsn {p.host}:{p.port} refused the login of user {p.user!r}" in lines[0]
    assert "Wrong-Direct-Pw-1" not in lines[0] and p.password not in lines[0]
    assert not (tmp_path / "run").exists()


def test_an_instance_that_does_not_answer_is_unknown_and_the_others_caps_stay_known(ref):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as s:
        closed = s.getsockname()[1]
    c = ref.credentials
    target = external_over(ref, direct_readers=[dsn("127.0.0.1", closed, c.user, c.password, c.database)],
                           max_connections_percent=20)
    down = next(i for i in target.direct_instances() if i["given_as"] == "reader")
    assert down["role"] == "unknown" and down["id"] == f"127.0.0.1:{closed}" and c.password not in down["problem"]
    assert target.roles() == {"writer": ref.roles()["writer"], "readers": []}
    assert pool_caps(target) == {ref.roles()["writer"]: 20}
