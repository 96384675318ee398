"""Logins from Secrets Manager and IAM tokens, end to end: psycopg -> proxy -> real PostgreSQL 15.

AWS is a moto server on loopback holding one secret per database user; the proxy reads it over HTTP
exactly as it would read Secrets Manager.  A rotation is driven as a rotation function drives it: the
database's password changes first (setSecret), then the secret's current version (finishSecret).
IAM tokens are made by boto3's own ``generate_db_auth_token`` with the access key the proxy trusts.
No boto3 client here or in the proxy can read a real AWS configuration or reach AWS: credentials and
endpoints are explicit, and the shared AWS files point nowhere.
"""

from __future__ import annotations

import os
import socket
import ssl
import time

import psycopg
import pytest
from aws_support import (
    ADVERTISED,
    IAM_SECRET,
    auth_settings,
    fake_aws,
    iam_token,
    login_secret,
    secretsmanager_client,
    twenty_minutes_ago,
)
from pg_proxy_support import RunningProxy, backend_pid, eventually
from proxy_support import config_for, running

from harness.standins.postgres.cluster import PG_BIN_DIR, PostgresCluster
from reference_proxy.protocol.postgres import PROTOCOL_3_0, SSLRequest, StartupMessage

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.shares_cluster,
              pytest.mark.skipif(not os.path.exists(os.path.join(PG_BIN_DIR, "postgres")),
                                 reason="PostgreSQL 15 server binaries are not installed")]

USERS = {  # secret id -> (database user, first password, secret settings)
    "db/app": ("cred_app", "app-pw-1", {}),
    "db/legacy": ("cred_legacy", "legacy-pw-1", {"method": "md5"}),
    "db/rotating": ("cred_rot", "rot-pw-1", {}),
    "db/rotating-md5": ("cred_rot_md5", "rotmd5-pw-1", {"method": "md5"}),
    "db/lambda": ("cred_lambda", "lambda-db-pw", {"iam_auth": "required"}),
}


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory):
    with fake_aws(tmp_path_factory.mktemp("no-aws")) as url:
        yield url


@pytest.fixture(scope="module")
def secretsmanager(moto_url):
    return secretsmanager_client(moto_url)


@pytest.fixture(scope="module")
def cluster(secretsmanager):
    """One writer whose roles match the secrets, each secret holding its role's login."""
    with PostgresCluster(readers=0, max_connections=60) as c:
        for secret_id, (user, password, _) in USERS.items():
            c.create_login(user, password)
            secretsmanager.create_secret(Name=secret_id, SecretString=login(user, password))
        yield c


def login(user: str, password: str) -> str:
    return login_secret(user, password, "postgres")


def rotate(cluster, secretsmanager, secret_id: str, password: str, *, finish: bool = True) -> None:
    """setSecret (the database's password), then, with ``finish``, finishSecret (AWSCURRENT moves)."""
    user = USERS[secret_id][0]
    cluster.set_password(user, password)
    if finish:
        secretsmanager.put_secret_value(SecretId=secret_id, SecretString=login(user, password))


def running_proxy(cluster, moto_url, *, cache_ttl: float, refresh_min_interval: float, **iam: object):
    """A proxy whose users all come from the secrets (no static users), with IAM keys configured."""
    auth = auth_settings(moto_url, [{"secret_id": sid, **settings} for sid, (_, _, settings) in USERS.items()],
                         cache_ttl=cache_ttl, refresh_min_interval=refresh_min_interval, **iam)
    config = config_for("postgres", cluster, [], extra={"auth": auth},
                        endpoints__0__advertised_host=ADVERTISED)
    return running(config, cluster, RunningProxy)


def connect(proxy: RunningProxy, user: str, password: str, **kwargs) -> psycopg.Connection:
    return proxy.connect(user=user, password=password, **kwargs)


def refused(proxy: RunningProxy, user: str, password: str, **kwargs) -> str:
    """The text of the proxy's refusal of this login (the test fails if it is accepted).  Without TLS
    unless asked: libpq's default ``prefer`` tries again in plaintext after a refusal over TLS."""
    kwargs.setdefault("sslmode", "disable")
    with pytest.raises(psycopg.OperationalError) as info:
        connect(proxy, user, password, **kwargs).close()
    return str(info.value)


def status(proxy: RunningProxy) -> tuple[dict, str]:
    return proxy.admin_status()


# --------------------------------------------------------------------------------- passwords

def test_secret_users_log_in_with_their_method_and_wrong_ones_get_rds_texts(cluster, moto_url):
    with running_proxy(cluster, moto_url, cache_ttl=60, refresh_min_interval=1) as proxy:
        with connect(proxy, "cred_app", "app-pw-1") as conn:
            assert conn.execute("select current_user").fetchone()[0] == "cred_app"
        with connect(proxy, "cred_legacy", "legacy-pw-1") as conn:
            assert conn.execute("select current_user").fetchone()[0] == "cred_legacy"
        assert "The password that was provided for the role cred_app is wrong." in refused(
            proxy, "cred_app", "not-it")
        assert "The password that was provided for the role cred_legacy is wrong." in refused(
            proxy, "cred_legacy", "not-it")
        assert ("This RDS proxy has no credentials for the role nobody. Check the credentials for this role "
                "and try again.") in refused(proxy, "nobody", "whatever")
        assert proxy.metric("ClientConnectionsSetupFailedAuth", endpoint="default") == 3
        # The monitor had no static user to log in as: it used the first secret's login.
        topology = proxy.call(lambda: proxy.server.monitor.snapshot())
        assert topology["writer"] == cluster.writer.id and topology["rounds"] >= 1


def test_status_shows_where_logins_come_from_and_never_a_password(cluster, moto_url):
    with running_proxy(cluster, moto_url, cache_ttl=60, refresh_min_interval=1) as proxy:
        document, body = status(proxy)
    credentials = document["credentials"]
    assert credentials["static_users"] == 0
    assert {sid: entry["user"] for sid, entry in credentials["secrets"].items()} == {
        sid: user for sid, (user, _, _) in USERS.items()}
    assert all(entry["problem"] is None and entry["version_id"] for entry in credentials["secrets"].values())
    assert credentials["iam"] == {"in_progress": 0, "refused": 0, "max_concurrent": 200}
    for _, password, _ in USERS.values():
        assert password not in body
    assert IAM_SECRET not in body


def test_a_rotation_keeps_sessions_and_new_logins_follow_the_secret(cluster, moto_url, secretsmanager):
    """Single-user rotation, SCRAM: the established session and its backend connection stay; new
    logins with the new password succeed once the cache is refreshed; the old password is refused."""
    with running_proxy(cluster, moto_url, cache_ttl=1, refresh_min_interval=0.2) as proxy:
        held = connect(proxy, "cred_rot", "rot-pw-1", prepare_threshold=None)
        try:
            with held.transaction():
                pid = backend_pid(held)
            version = status(proxy)[0]["credentials"]["secrets"]["db/rotating"]["version_id"]
            rotate(cluster, secretsmanager, "db/rotating", "rot-pw-2")
            # No login fails meanwhile: only the periodic refresh of due secrets can pick the new version up.
            eventually(lambda: status(proxy)[0]["credentials"]["secrets"]["db/rotating"]["version_id"] != version,
                       timeout=30, what="the proxy's refresh of the rotated secret")
            with connect(proxy, "cred_rot", "rot-pw-2", sslmode="disable") as conn:  # first attempt
                assert conn.execute("select current_user").fetchone()[0] == "cred_rot"
            assert "The password that was provided for the role cred_rot is wrong." in refused(
                proxy, "cred_rot", "rot-pw-1")
            assert held.execute("select current_user").fetchone()[0] == "cred_rot"
            # the backend opened with the old password is still there
            assert cluster.query_value(cluster.writer.id,
                                       f"select count(*) from pg_stat_activity where pid = {int(pid)}", 10) == 1
        finally:
            held.close()


def test_backend_logins_read_the_secret_again_when_the_database_refuses_them(cluster, moto_url, secretsmanager):
    """A long cache TTL, so only failures cause reads.  Between setSecret and finishSecret a new backend
    login fails (the rotation window); after finishSecret the refused login reads the secret again
    and retries once with the new password.  An MD5 client already on the new password is checked
    again against the re-read secret instead of being refused."""
    with running_proxy(cluster, moto_url, cache_ttl=3600, refresh_min_interval=0) as proxy:
        holder = connect(proxy, "cred_rot_md5", "rotmd5-pw-1", prepare_threshold=None)
        waiting = connect(proxy, "cred_rot_md5", "rotmd5-pw-1", prepare_threshold=None)
        try:
            with holder.transaction():  # holds the only backend, so the next borrow must log in anew
                pid = backend_pid(holder)
                rotate(cluster, secretsmanager, "db/rotating-md5", "rotmd5-pw-2", finish=False)
                with pytest.raises(psycopg.Error, match="password authentication failed"):
                    waiting.execute("select 1")
                secretsmanager.put_secret_value(SecretId="db/rotating-md5",
                                                SecretString=login("cred_rot_md5", "rotmd5-pw-2"))
                assert waiting.execute("select current_user").fetchone()[0] == "cred_rot_md5"
                assert backend_pid(waiting) != pid
                assert backend_pid(holder) == pid
            with connect(proxy, "cred_rot_md5", "rotmd5-pw-2") as conn:
                assert conn.execute("select current_user").fetchone()[0] == "cred_rot_md5"
            assert "is wrong" in refused(proxy, "cred_rot_md5", "rotmd5-pw-1")
        finally:
            holder.close()
            waiting.close()
        snapshot = status(proxy)[0]["credentials"]["secrets"]["db/rotating-md5"]
        assert snapshot["user"] == "cred_rot_md5" and snapshot["problem"] is None


def test_an_md5_client_on_the_rotated_password_gets_in_at_once(cluster, moto_url, secretsmanager):
    """Within the TTL the proxy holds the old secret; the client's MD5 answer is checked again against
    the secret read after the mismatch, so its first attempt succeeds."""
    with running_proxy(cluster, moto_url, cache_ttl=3600, refresh_min_interval=0) as proxy:
        with connect(proxy, "cred_legacy", "legacy-pw-1") as conn:
            conn.execute("select 1")
        rotate(cluster, secretsmanager, "db/legacy", "legacy-pw-2")
        try:
            # One attempt only: libpq's default sslmode would try a second time after a refusal.
            with connect(proxy, "cred_legacy", "legacy-pw-2", sslmode="disable") as conn:
                assert conn.execute("select current_user").fetchone()[0] == "cred_legacy"
            assert "is wrong" in refused(proxy, "cred_legacy", "legacy-pw-1")
        finally:
            rotate(cluster, secretsmanager, "db/legacy", "legacy-pw-1")


# --------------------------------------------------------------------------------------- IAM

def test_a_fresh_boto3_token_logs_in_over_tls_and_the_session_outlives_it(cluster, moto_url):
    with running_proxy(cluster, moto_url, cache_ttl=60, refresh_min_interval=1) as proxy:
        token = iam_token("cred_lambda", proxy.port())
        with connect(proxy, "cred_lambda", token, sslmode="require", prepare_threshold=None) as conn:
            assert conn.execute("select current_user").fetchone()[0] == "cred_lambda"
            assert conn.pgconn.ssl_in_use
            # The proxy logged in to the database with the secret's password, not the token.
            assert conn.execute("select count(*) from pg_stat_activity where usename = 'cred_lambda'"
                                ).fetchone()[0] >= 1
            # Twenty minutes later, as the proxy's token checks see it: the token is dead, the session is not.
            later = time.time() + 20 * 60
            proxy.call(lambda: setattr(proxy.server.iam.verifier, "_wall_clock", lambda: later))
            assert "IAM authentication failed for user cred_lambda" in refused(
                proxy, "cred_lambda", token, sslmode="require")
            assert conn.execute("select current_user").fetchone()[0] == "cred_lambda"


def test_iam_logins_refused_with_rds_texts(cluster, moto_url):
    wrong_token = "IAM authentication failed for user cred_lambda. Check the IAM token for this user and try again."
    with running_proxy(cluster, moto_url, cache_ttl=60, refresh_min_interval=1) as proxy:
        port = proxy.port()
        good = iam_token("cred_lambda", port)
        assert "IAM authentication is allowed only with SSL connections." in refused(
            proxy, "cred_lambda", good, sslmode="disable")
        cases = {
            "expired": iam_token("cred_lambda", port, at=twenty_minutes_ago()),
            "tampered": good[:-1] + ("0" if good[-1] != "0" else "1"),
            "other user": iam_token("cred_app", port),
            "other host": iam_token("cred_lambda", port, host="elsewhere.proxy-abc123.us-east-1.rds.amazonaws.com"),
            "other port": iam_token("cred_lambda", port + 1),
            "untrusted key": iam_token("cred_lambda", port, key_id="AKIDSTRANGER", secret="not-trusted"),
            "a password": "lambda-db-pw",
        }
        for what, token in cases.items():
            assert wrong_token in refused(proxy, "cred_lambda", token, sslmode="require"), what
        with connect(proxy, "cred_lambda", good, sslmode="require") as conn:  # still good after all that
            assert conn.execute("select 1").fetchone()[0] == 1
        assert proxy.metric("ClientConnectionsSetupFailedAuth", endpoint="default") == 1 + len(cases)
        assert status(proxy)[0]["credentials"]["iam"]["in_progress"] == 0


def test_iam_logins_beyond_the_concurrency_limit_are_refused(cluster, moto_url):
    """With room for one IAM authentication, a client that was asked for its token and sits on it
    makes the next IAM login fail with RDS's text; once it leaves, IAM logins work again."""
    with running_proxy(cluster, moto_url, cache_ttl=60, refresh_min_interval=1,
                       max_concurrent_authentications=1) as proxy:
        slow = asked_for_a_token(proxy, "cred_lambda", cluster.database)
        try:
            token = iam_token("cred_lambda", proxy.port())
            assert "The IAM authentication failed because of too many competing requests." in refused(
                proxy, "cred_lambda", token, sslmode="require")
        finally:
            slow.close()

        def logs_in() -> bool:
            try:
                with connect(proxy, "cred_lambda", token, sslmode="require") as conn:
                    return conn.execute("select 1").fetchone()[0] == 1
            except psycopg.OperationalError:
                return False

        eventually(logs_in, timeout=30, what="an IAM login after the slow client left")
        iam = status(proxy)[0]["credentials"]["iam"]
        assert iam["refused"] == 1 and iam["in_progress"] == 0


def asked_for_a_token(proxy: RunningProxy, user: str, database: str) -> ssl.SSLSocket:
    """A raw TLS client that starts an IAM login and stops once the proxy asks for its password."""
    sock = socket.create_connection(("127.0.0.1", proxy.port()), timeout=10)
    sock.sendall(SSLRequest().encode())
    assert sock.recv(1) == b"S"
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    tls = context.wrap_socket(sock)
    tls.sendall(StartupMessage(PROTOCOL_3_0, (("user", user), ("database", database))).encode())
    request = b""
    while len(request) < 9:
        chunk = tls.recv(9 - len(request))
        assert chunk, "the proxy closed the connection instead of asking for a password"
        request += chunk
    assert request == b"R\x00\x00\x00\x08\x00\x00\x00\x03"  # AuthenticationCleartextPassword
    return tls
