"""The command line as a user runs it: each command is a separate process, servers outlive them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psutil
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def harness(state_dir, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "--state-dir", str(state_dir), *args],
                          check=False, capture_output=True, text=True, timeout=240)
    if check and proc.returncode != 0:
        pytest.fail(f"aurora-harness {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def processes_under(path: str) -> list[str]:
    """Command lines of running processes that mention ``path`` (a cluster's data directory)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and path in " ".join(p.info["cmdline"] or []):
                found.append(" ".join(p.info["cmdline"]))
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.mark.parametrize("engine", [pytest.param("postgres", marks=pytest.mark.postgres),
                                    pytest.param("mysql", marks=pytest.mark.mysql)])
def test_standin_up_status_failover_down_cycle(tmp_path, engine):
    up = json.loads(harness(tmp_path, "standin", "up", "--engine", engine, "--readers", "2", "--json").stdout)
    base_dir = json.loads((tmp_path / "standin.json").read_text())["base_dir"]
    try:
        assert up["engine"] == engine
        roles = [i["role"] for i in up["instances"]]
        assert roles.count("writer") == 1 and roles.count("reader") == 2
        for inst in up["instances"]:
            assert set(inst) >= {"id", "role", "host", "port", "user", "password", "database"}
            assert inst["host"] == "127.0.0.1"
        old_writer = next(i["id"] for i in up["instances"] if i["role"] == "writer")
        # The servers outlive the CLI process that started them.
        assert processes_under(base_dir)

        status = json.loads(harness(tmp_path, "standin", "status", "--json").stdout)
        assert all(i["running"] for i in status["instances"])
        assert {i["password"] for i in up["instances"] + status["instances"]} == {"(redacted)"}
        shown = json.loads(harness(tmp_path, "standin", "status", "--json", "--show-secrets").stdout)
        assert "(redacted)" not in {i["password"] for i in shown["instances"]}
        assert "(redacted)" not in harness(tmp_path, "standin", "status", "--show-secrets").stdout
        assert status["topology"]["writer"] == old_writer

        fo = json.loads(harness(tmp_path, "standin", "failover", "--json").stdout)
        assert fo["previous_writer"] == old_writer and fo["new_writer"] != old_writer
        status = json.loads(harness(tmp_path, "standin", "status", "--json").stdout)
        writers = [i["id"] for i in status["instances"] if i["role"] == "writer"]
        assert writers == [fo["new_writer"]]
        assert status["topology"]["writer"] == fo["new_writer"]
    finally:
        down = harness(tmp_path, "standin", "down", "--json", check=False)
    assert json.loads(down.stdout)["stopped"] is True
    assert not processes_under(base_dir)
    assert not os.path.exists(base_dir)
    assert not (tmp_path / "standin.json").exists()


def test_standin_commands_without_a_cluster_fail_clearly(tmp_path):
    proc = harness(tmp_path, "standin", "status", check=False)
    assert proc.returncode == 1
    assert "no stand-in is running" in proc.stderr
    proc = harness(tmp_path, "standin", "failover", check=False)
    assert proc.returncode == 1 and "standin up" in proc.stderr


@pytest.mark.postgres
def test_second_up_is_refused_while_one_runs(tmp_path):
    harness(tmp_path, "standin", "up", "--readers", "0", "--json")
    try:
        again = harness(tmp_path, "standin", "up", "--readers", "0", check=False)
        assert again.returncode == 1
        assert "already running" in again.stderr
    finally:
        harness(tmp_path, "standin", "down")


@pytest.mark.postgres
def test_down_after_the_servers_were_killed_still_cleans_up(tmp_path):
    harness(tmp_path, "standin", "up", "--readers", "1")
    state = json.loads((tmp_path / "standin.json").read_text())
    for inst in state["instances"]:
        harness(tmp_path, "standin", "crash", inst["id"])
    harness(tmp_path, "standin", "down")
    assert not os.path.exists(state["base_dir"])
    assert not processes_under(state["base_dir"])


def _serves_a_reader(engine: str, endpoint: dict, cred: dict) -> bool:
    """Whether the instance behind ``endpoint`` is a reader, asked through the endpoint itself."""
    if engine == "postgres":
        import psycopg

        with psycopg.connect(host=endpoint["host"], port=endpoint["port"], user=cred["user"],
                             password=cred["password"], dbname=cred["database"], connect_timeout=10) as conn:
            return conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
    import pymysql

    conn = pymysql.connect(host=endpoint["host"], port=endpoint["port"], user=cred["user"],
                           password=cred["password"], database=cred["database"], connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@read_only")
            return bool(cur.fetchone()[0])
    finally:
        conn.close()


@pytest.mark.parametrize("engine", [pytest.param("postgres", marks=pytest.mark.postgres),
                                    pytest.param("mysql", marks=pytest.mark.mysql)])
def test_target_up_status_down_gives_working_endpoints(tmp_path, engine):
    up = json.loads(harness(tmp_path, "up", "--engine", engine, "--readers", "1", "--json",
                            "--show-secrets").stdout)
    record = json.loads((tmp_path / "target.json").read_text())
    try:
        assert set(up) >= {"engine", "endpoints", "credentials", "metrics_url", "status_url", "instances"}
        assert up["engine"] == engine
        cred = up["credentials"]
        assert _serves_a_reader(engine, up["endpoints"]["writer"], cred) is False
        assert _serves_a_reader(engine, up["endpoints"]["readers"][0], cred) is True
        status = json.loads(harness(tmp_path, "status", "--json").stdout)
        assert status["proxy_running"] is True
        assert status["endpoints"] == up["endpoints"]
        assert status["credentials"]["password"] == "(redacted)"  # unless --show-secrets
        assert cred["password"] not in json.dumps(status)
        # The logins come from the AWS stand-in, one secret per user, readable with boto3.
        assert up["aws_endpoint_url"].startswith("http://127.0.0.1:")
        assert up["secrets"]["aurora-harness/" + cred["user"]] == cred["user"]
        assert "rotate_secret" in up["capabilities"]
        assert _secret_login(up["aws_endpoint_url"], "aurora-harness/" + cred["user"]) == {
            "username": cred["user"], "password": cred["password"]}
        # The proxy's configuration holds passwords and keys: only its owner may read it.
        assert oct(os.stat(record["run_dir"]).st_mode & 0o777) == "0o700"
        assert oct(os.stat(os.path.join(record["run_dir"], "proxy.toml")).st_mode & 0o777) == "0o600"
    finally:
        harness(tmp_path, "down", check=False)
    assert not processes_under(record["run_dir"])
    assert not processes_under(record["cluster"]["base_dir"])
    assert not (tmp_path / "target.json").exists()


def _secret_login(endpoint_url: str, secret_id: str) -> dict:
    from harness.targets.aws_standin import AwsStandin, secretsmanager_client

    standin = AwsStandin.from_state({"port": int(endpoint_url.rsplit(":", 1)[1])})
    return json.loads(secretsmanager_client(standin.access()).get_secret_value(SecretId=secret_id)["SecretString"])


@pytest.mark.postgres
def test_target_up_with_static_credentials_has_no_aws_stand_in(tmp_path):
    up = json.loads(harness(tmp_path, "up", "--readers", "0", "--no-auto-failover", "--credentials", "static",
                            "--json", "--show-secrets").stdout)
    record = json.loads((tmp_path / "target.json").read_text())
    try:
        assert up["aws_endpoint_url"] is None and up["secrets"] == {}
        assert "rotate_secret" not in up["capabilities"]
        assert _serves_a_reader("postgres", up["endpoints"]["writer"], up["credentials"]) is False
    finally:
        harness(tmp_path, "down", check=False)
    assert not processes_under(record["run_dir"])


def _secrets_of(record) -> set[str]:
    """Every secret value held in a state record (found by key name, as the CLI hides them)."""
    from harness.redaction import is_secret_key

    found: set[str] = set()

    def walk(value, key="") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            if key in ("logins", "iam_key") or (len(value) == 2 and key not in ("ports",)):
                found.update(v for v in value[1:] if isinstance(v, str))  # [user, password] / [key id, secret]
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and is_secret_key(key) and value:
            found.add(value)

    walk(record)
    return {s for s in found if len(s) >= 6}


def _files_holding(roots: list[str], secrets: set[str]) -> list[str]:
    hits = []
    for root in roots:
        for directory, _, files in os.walk(root):
            for name in files:
                path = os.path.join(directory, name)
                try:
                    with open(path, "rb") as f:
                        data = f.read(1 << 20)
                except OSError:
                    continue
                if any(secret.encode() in data for secret in secrets):
                    hits.append(path)
    return hits


@pytest.mark.parametrize("engine", [pytest.param("postgres", marks=pytest.mark.postgres),
                                    pytest.param("mysql", marks=pytest.mark.mysql)])
def test_no_file_holding_a_credential_is_readable_by_others(tmp_path, engine):
    """Every file the harness writes that holds a password or key (state records, the proxy's
    configuration, the stand-in's password and replication files...) is the owner's only, in a
    directory only its owner may enter; what status prints hides them."""
    state = tmp_path / "state"
    up = harness(state, "up", "--engine", engine, "--readers", "1", "--json").stdout
    record = json.loads((state / "target.json").read_text())
    try:
        secrets = _secrets_of(record)
        assert record["cluster"]["password"] in secrets and len(secrets) >= 3
        roots = [str(state), record["run_dir"], record["cluster"]["base_dir"]]
        holding = _files_holding(roots, secrets)
        assert any(p.endswith("proxy.toml") for p in holding) and any(p.endswith("target.json") for p in holding)
        # The harness's own files: 0600 in 0700 directories.  The database's own (binary logs under
        # a data directory, written with the server's umask): at least not readable by others.
        ours = [p for p in holding if f"{os.sep}data{os.sep}" not in p]
        exposed = [f"{oct(os.stat(p).st_mode & 0o777)} {p}" for p in holding
                   if os.stat(p).st_mode & (0o077 if p in ours else 0o007)]
        assert not exposed, exposed
        open_dirs = [f"{oct(os.stat(d).st_mode & 0o777)} {d}" for d in {os.path.dirname(p) for p in ours}
                     if os.stat(d).st_mode & 0o077]
        assert not open_dirs, open_dirs
        printed = {"up --json": up, "status": harness(state, "status").stdout,
                   "status --json": harness(state, "status", "--json").stdout}
        for command, text in printed.items():
            assert "(redacted)" in text and not any(secret in text for secret in secrets), command
        shown = harness(state, "status", "--json", "--show-secrets").stdout
        assert json.loads(shown)["credentials"]["password"] == record["cluster"]["password"]
    finally:
        harness(state, "down", check=False)
