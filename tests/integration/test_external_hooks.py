"""An external target's user-supplied control, certified over a running reference target's own endpoints.

The reference target is started as a user would (``aurora-harness up``) and certified as an external
proxy, known only by its DSNs, with hooks that call the harness's own commands:

* ``--failover-command "aurora-harness failover"``: the failover suite judges FAILOVER-* true, with the
  new writer found through the writer endpoint (no direct access) and the hook's outcome in the
  fault's end event;
* ``--rotate-command "aurora-harness rotate"`` with ``--rotate-dsn`` naming the rotatable login: the
  rotation drill runs and no ROTATION-* guarantee is false; afterwards the secret holds the new
  password the harness made;
* a failover command that exits 1: its guarantees are unknown with the command's failure as the
  reason, never false, and the run is INCOMPLETE (exit 3);
* ``--iam-user`` with the target's trusted access key in the environment: IAM-TOKEN-CHECKS true;
* all of it at once, with direct DSNs, the pool settings stated and a proxy that requires TLS
  (``--requires-tls``): every guarantee of the quick profile is judged.

Passwords reach the commands only through the environment and the DSNs; none appears in any output.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from test_certify import CERTIFY

from harness.targets.reference import ROTATING_USER, SECRET_PREFIX, ReferenceTarget

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.shares_cluster]

HARNESS = [sys.executable, "-m", "harness.cli"]


def harness(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HARNESS, "--state-dir", str(state_dir), *args], check=True, capture_output=True,
                          text=True, timeout=180, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module", params=[pytest.param("postgres", marks=pytest.mark.postgres),
                                        pytest.param("mysql", marks=pytest.mark.mysql)])
def running(request, tmp_path_factory):
    """A reference target left running by ``aurora-harness up``, stopped with ``down`` afterwards.

    Two readers, so that the reader endpoint still has a reader after a failover promotes one (with a
    single reader it would have none until the old writer rejoined, and ROUTE-READER-ONLY, judged
    through the failover, is about proxies, not about an empty reader endpoint)."""
    state_dir = tmp_path_factory.mktemp("state")
    harness(state_dir, "up", "--engine", request.param, "--readers", "2", "--no-auto-failover", "--json")
    try:
        yield state_dir
    finally:
        subprocess.run([*HARNESS, "--state-dir", str(state_dir), "down"], check=False, capture_output=True,
                       timeout=180)


def recorded(state_dir: Path) -> ReferenceTarget:
    """The running target as its state record has it (passwords included: the record is 0600)."""
    return ReferenceTarget.from_state(json.loads((state_dir / "target.json").read_text()))


def dsn(target: ReferenceTarget, host: str, port: int, user: str, password: str, database: str) -> str:
    if target.engine == "mysql":
        return f"mysql://{user}:{password}@{host}:{port}/{database}"
    return f"host={host} port={port} user={user} password={password} dbname={database}"


def endpoint_dsns(target: ReferenceTarget) -> tuple[str, str]:
    c, w, r = target.credentials, target.writer_endpoint, target.reader_endpoints[0]
    return (dsn(target, w.host, w.port, c.user, c.password, c.database),
            dsn(target, r.host, r.port, c.user, c.password, c.database))


def hook(state_dir: Path, command: str) -> str:
    return " ".join(shlex.quote(part) for part in [*HARNESS, "--state-dir", str(state_dir), command])


def certify(target: ReferenceTarget, run_dir: Path, *args: str,
            env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], dict]:
    writer, reader = endpoint_dsns(target)
    done = subprocess.run([*CERTIFY, "--target", "external", "--engine", target.engine,
                           "--writer-dsn", writer, "--reader-dsn", reader,
                           "--metrics-url", target.metrics_url, "--run-dir", str(run_dir), "--json", *args],
                          check=False, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(env or {})})
    output = done.stdout + done.stderr
    for _, password in target.logins.values():
        assert password not in output
    assert target.credentials.password not in output
    report = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    return done, report


def verdicts(report: dict) -> dict[str, tuple[str, str]]:
    return {g["id"]: (g["valid"], g.get("reason", "")) for g in report["guarantees"]}


def fault_ends(run_dir: Path, name: str) -> list[dict]:
    ends = []
    for path in (run_dir / "history").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            op = json.loads(line)
            if op.get("type") == "fault" and op.get("f") == name and op.get("phase") == "end":
                ends.append(op["value"])
    return ends


def test_a_failover_command_that_calls_aurora_harness_failover_is_judged(running, tmp_path):
    target = recorded(running)
    writer_before = target.cluster.writer.id
    done, report = certify(target, tmp_path / "run", "--failover-command", hook(running, "failover"),
                           "--suite", "chaos", "-k", "failover")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    judged = verdicts(report)
    assert {g for g in judged if g.startswith("FAILOVER-")} == {"FAILOVER-WRITE-GAP", "FAILOVER-READ-ERRORS",
                                                               "FAILOVER-IDLE-SURVIVAL"}
    assert all(valid == "true" for valid, _ in judged.values()), judged
    (end,) = fault_ends(tmp_path / "run", "failover")
    after = recorded(running).cluster.writer.id
    assert after != writer_before and end["new_writer"] == after
    assert end["promotion_observed"] is False and end["seen_by"] == "writer endpoint"
    assert end["control"]["exit_status"] == 0 and f"{after} is the writer now" in end["control"]["output_tail"]


def test_a_failing_failover_command_leaves_its_guarantees_unknown_with_the_reason(running, tmp_path):
    target = recorded(running)
    done, report = certify(target, tmp_path / "run", "--failover-command",
                           "echo 'no route to the control plane' >&2; exit 1", "--suite", "chaos", "-k", "failover")
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-3000:]
    judged = verdicts(report)
    assert judged and all(valid == "unknown" for valid, _ in judged.values()), judged
    for _, reason in judged.values():
        assert "the failover command failed with exit status 1: no route to the control plane" in reason
    (end,) = fault_ends(tmp_path / "run", "failover")
    assert end["outcome"] == "failed" and end["control"]["exit_status"] == 1


def test_a_rotate_command_that_calls_aurora_harness_rotate_runs_the_drill(running, tmp_path):
    target = recorded(running)
    secret = SECRET_PREFIX + ROTATING_USER
    user, old_password = target.logins[secret]
    w = target.writer_endpoint
    rotate_dsn = dsn(target, w.host, w.port, user, old_password, target.credentials.database)
    done, report = certify(target, tmp_path / "run", "--rotate-command", hook(running, "rotate"),
                           "--rotate-dsn", rotate_dsn, "--suite", "chaos", "-k", "rotation")
    assert done.returncode in (0, 3), done.stdout[-3000:] + done.stderr[-3000:]
    judged = verdicts(report)
    assert {g for g in judged if g.startswith("ROTATION-")} >= {"ROTATION-SESSIONS-KEPT", "ROTATION-NEW-LOGINS",
                                                               "ROTATION-OLD-PASSWORD", "ROTATION-BACKEND-AUTH"}
    assert judged["ROTATION-SESSIONS-KEPT"][0] == "true" and judged["ROTATION-BACKEND-AUTH"][0] == "true", judged
    for gid in ("ROTATION-NEW-LOGINS", "ROTATION-OLD-PASSWORD"):
        valid, reason = judged[gid]
        # The command's own duration is the uncertainty of finishSecret: on a slow machine a figure
        # may be unknown for it, never false.
        assert valid == "true" or (valid == "unknown" and "did not observe" in reason), (gid, judged[gid])
    (end,) = fault_ends(tmp_path / "run", "rotate_secret")
    assert end["unobserved_steps"] == ["createSecret", "setSecret", "testSecret"]
    assert end["control"]["exit_status"] == 0
    after = recorded(running).logins[secret]
    assert after[0] == user and after[1] != old_password  # the secret holds the harness's new password
    assert old_password not in json.dumps(end)


def test_an_iam_user_gets_its_tokens_checked_through_the_writer_endpoint(running, tmp_path):
    target = recorded(running)
    access = target.iam_access()
    done, report = certify(target, tmp_path / "run", "--iam-user", access.user, "--iam-region", access.region,
                           "--iam-host", access.host, "--suite", "conformance", "-k", "iam",
                           env={"AWS_ACCESS_KEY_ID": access.access_key_id,
                                "AWS_SECRET_ACCESS_KEY": access.secret_access_key})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert verdicts(report)["IAM-TOKEN-CHECKS"][0] == "true"
    assert access.secret_access_key not in done.stdout + done.stderr


def test_aurora_harness_rotate_refuses_without_the_password_in_the_environment_or_for_the_clusters_user(running):
    target = recorded(running)

    def rotate(user: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("AURORA_HARNESS_")}
        return subprocess.run([*HARNESS, "--state-dir", str(running), "rotate", "--user", user], check=False,
                              capture_output=True, text=True, timeout=120, env={**clean, **env})

    missing = rotate(ROTATING_USER, {})
    assert missing.returncode == 1 and "$AURORA_HARNESS_NEW_PASSWORD is not set" in missing.stderr
    own = rotate(target.credentials.user, {"AURORA_HARNESS_NEW_PASSWORD": "Not-Used-Pw-1"})
    assert own.returncode == 1 and "the cluster's own user" in own.stderr
    stranger = rotate("nobody", {"AURORA_HARNESS_NEW_PASSWORD": "Not-Used-Pw-1"})
    assert stranger.returncode == 1 and "no secret of the target holds user 'nobody'" in stranger.stderr
    assert "Not-Used-Pw-1" not in own.stdout + own.stderr + stranger.stdout + stranger.stderr


@pytest.fixture(scope="module", params=[pytest.param("postgres", marks=pytest.mark.postgres),
                                        pytest.param("mysql", marks=pytest.mark.mysql)])
def running_with_pool(request, tmp_path_factory):
    """``aurora-harness up`` with two readers, TLS required, and pool settings a user would state to
    the harness."""
    state_dir = tmp_path_factory.mktemp("state")
    harness(state_dir, "up", "--engine", request.param, "--readers", "2", "--borrow-timeout", "5",
            "--max-connections-percent", "50", "--require-tls", "--json")
    try:
        yield state_dir
    finally:
        subprocess.run([*HARNESS, "--state-dir", str(state_dir), "down"], check=False, capture_output=True,
                       timeout=180)


@pytest.mark.timeout(660)  # a whole quick certification; its subprocess has 600 s
def test_with_every_control_given_every_quick_guarantee_is_judged(running_with_pool, tmp_path):
    """The issue's acceptance: the reference proxy's endpoints as an external target, with direct DSNs,
    the stated pool settings, failover and rotate commands and an IAM user, judge the whole quick
    profile: no guarantee is left unknown."""
    target = recorded(running_with_pool)
    c = target.credentials
    direct = []
    for instance in target.direct_instances():
        flag = "--direct-writer-dsn" if instance["role"] == "writer" else "--direct-reader-dsn"
        direct += [flag, dsn(target, instance["host"], instance["port"], c.user, c.password, c.database)]
    user, password = target.logins[SECRET_PREFIX + ROTATING_USER]
    w = target.writer_endpoint
    access = target.iam_access()
    done, report = certify(target, tmp_path / "run", *direct, "--max-connections-percent", "50",
                           "--borrow-timeout", "5", "--failover-command", hook(running_with_pool, "failover"),
                           "--rotate-command", hook(running_with_pool, "rotate"),
                           "--rotate-dsn", dsn(target, w.host, w.port, user, password, c.database),
                           "--iam-user", access.user, "--iam-region", access.region, "--iam-host", access.host,
                           "--requires-tls", "--seed", "42",
                           env={"AWS_ACCESS_KEY_ID": access.access_key_id,
                                "AWS_SECRET_ACCESS_KEY": access.secret_access_key})
    judged = verdicts(report)
    # What this test is about is that every guarantee is judged.  Two kinds of figure may still land on
    # the wrong side here, and are asserted true elsewhere (the reference target's own certification):
    # the rotate command's duration may leave a rotation figure unknown on a slow machine (see above),
    # and the added latency and the storm's service depend on what else the machine runs - this
    # second proxy shares two cores with the rest of the parallel test run.
    load_sensitive = {"LATENCY-ADDED-P50", "LATENCY-ADDED-P99", "STORM-SERVED"}
    not_true = {g: v for g, v in judged.items() if v[0] != "true" and g not in load_sensitive}
    assert set(not_true) <= {"ROTATION-NEW-LOGINS", "ROTATION-OLD-PASSWORD"}, not_true
    assert all(valid == "unknown" and "did not observe" in reason for valid, reason in not_true.values()), not_true
    assert all(judged[g][0] in ("true", "false") for g in load_sensitive), {g: judged[g] for g in load_sensitive}
    false = {g for g, v in judged.items() if v[0] == "false"}
    assert done.returncode == (1 if false else 3 if not_true else 0), done.stdout[-3000:] + done.stderr[-3000:]
    from harness.guarantees import CATALOGUE

    full_only = {"NETFAULT-SILENT-DETECTED", "ROTATION-ALTERNATING-SESSIONS"}
    assert set(judged) == set(CATALOGUE) - full_only


def test_a_proxy_said_to_require_tls_that_does_not_is_caught(running, tmp_path):
    """``--requires-tls`` is the user's word about the proxy; the endpoints must bear it out."""
    target = recorded(running)
    done, report = certify(target, tmp_path / "run", "--requires-tls", "--suite", "conformance", "-k",
                           "test_require_tls")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    valid, reason = verdicts(report)["TLS-REQUIRED"]
    assert valid == "false" and "plaintext on the writer endpoint was accepted" in reason, reason
