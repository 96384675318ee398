"""The reference proxy's unsafe test modes, certified: each turns exactly its own guarantee false.

* failpoint ``split_transactions`` gives an unpinned session's backend up between the statements of
  a transaction: TRANSACTION-ONE-BACKEND false, while own state, isolation and pinning stay true
  (pinned sessions are never split).
* failpoint ``leak_session_state`` never pins and never resets: a client's later requests meet
  backends without its state, so SESSION-OWN-STATE is false (ISOLATION-NO-SESSION-LEAK too, which
  is left out here: the isolation tests judge it), while transactions still run whole.

And real poolers certified as external targets: PgBouncer's statement mode refuses multi-statement
transactions (TRANSACTION-ONE-BACKEND false, the refusals as evidence); its transaction mode keeps
transactions whole but moves a session between server connections, so the session loses its own
state (SESSION-OWN-STATE false).
"""

from __future__ import annotations

import json

import pytest
from test_certify import certify

from harness.peers.pgbouncer import PgBouncer
from harness.standins.postgres.cluster import PostgresCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ENGINES = [pytest.param("postgres", marks=pytest.mark.postgres), pytest.param("mysql", marks=pytest.mark.mysql)]


def _certify_with(engine: str, switch: str, selection: str, tmp_path) -> tuple[dict, str]:
    run_dir = tmp_path / "run"
    done = certify("--target", "reference", "--engine", engine, "--suite", "conformance", "-k", selection,
                   "--proxy-setting", f"testing.failpoint={switch}", "--run-dir", str(run_dir), "--seed", "7")
    assert done.returncode == 1, f"expected a failed certification:\n{done.stdout[-4000:]}\n{done.stderr[-3000:]}"
    assert (run_dir / "proxy.log").read_text().count(f"UNSAFE TEST MODE: failpoint {switch} is on") == 1
    return json.loads((run_dir / "results.json").read_text())["guarantees"], done.stdout


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.timeout(600)
def test_a_proxy_splitting_transactions_makes_only_transaction_one_backend_false(engine, tmp_path):
    verdicts, out = _certify_with(engine, "split_transactions", "own_state or transactions or pinning", tmp_path)
    assert "NOT CERTIFIED: 1 false (TRANSACTION-ONE-BACKEND)" in out
    split = verdicts["TRANSACTION-ONE-BACKEND"]
    assert split["valid"] == "false" and split["figure"] > 0
    assert "ran on" in split["reason"] or "rolled-back write is visible" in split["reason"]
    assert all(op["f"] in ("txn", "txn_outcome") for op in split["evidence"])
    for other in ("SESSION-OWN-STATE", "PIN-TRIGGERS", "PIN-NON-TRIGGERS"):
        assert verdicts[other]["valid"] == "true", (other, verdicts[other])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.timeout(600)
def test_a_proxy_losing_session_state_makes_session_own_state_false(engine, tmp_path):
    verdicts, out = _certify_with(engine, "leak_session_state", "own_state or transactions", tmp_path)
    assert "NOT CERTIFIED: 1 false (SESSION-OWN-STATE)" in out
    lost = verdicts["SESSION-OWN-STATE"]
    assert lost["valid"] == "false" and lost["figure"] < 100
    for op in lost["evidence"]:
        assert op["f"] == "read_state" and op["type"] == "ok"
        assert op["value"]["value"] is not True and op["value"]["value"] != f"client-{op['process']}"
    assert verdicts["TRANSACTION-ONE-BACKEND"]["valid"] == "true"


@pytest.mark.postgres
@pytest.mark.timeout(600)
def test_pgbouncer_statement_and_transaction_modes_break_one_session_guarantee_each(tmp_path):
    outcomes = {}
    with PostgresCluster(readers=0) as cluster:
        for mode in ("statement", "transaction"):
            with PgBouncer(cluster.connection_params(cluster.writer.id), pool_mode=mode, pool_size=3) as bouncer:
                p = bouncer.params
                dsn = f"host={p.host} port={p.port} user={p.user} password={p.password} dbname={p.database}"
                run_dir = tmp_path / mode
                done = certify("--target", "external", "--writer-dsn", dsn, "--suite", "conformance",
                               "-k", "own_state or transactions", "--run-dir", str(run_dir), "--seed", "7")
                assert p.password not in done.stdout + done.stderr
            assert done.returncode == 1, f"{mode}:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
            outcomes[mode] = json.loads((run_dir / "results.json").read_text())["guarantees"]
    refused = outcomes["statement"]["TRANSACTION-ONE-BACKEND"]
    assert refused["valid"] == "false" and "refused or failed at begin" in refused["reason"]
    assert all("statement pooling mode" in op["error"]["text"] for op in refused["evidence"])
    # Its state is made inside transactions, which statement mode refuses: nothing to judge, said so.
    assert outcomes["statement"]["SESSION-OWN-STATE"]["valid"] == "unknown"
    assert "attempts to set state failed" in outcomes["statement"]["SESSION-OWN-STATE"]["reason"]
    assert outcomes["transaction"]["SESSION-OWN-STATE"]["valid"] == "false"
    assert outcomes["transaction"]["TRANSACTION-ONE-BACKEND"]["valid"] == "true"
