"""Logins from Secrets Manager and IAM tokens, end to end: PyMySQL -> proxy -> real MariaDB.

AWS is a moto server on loopback holding one secret per database user (:mod:`aws_support`); the proxy
reads it over HTTP exactly as it would read Secrets Manager.  A rotation is driven as a rotation
function drives it: the database's password changes first (setSecret, the stand-in's ``set_password``),
then the secret's current version (finishSecret).  IAM tokens are
made by boto3's own ``generate_db_auth_token`` with the access key the proxy trusts, and PyMySQL sends
them through ``mysql_clear_password`` when the proxy switches it to that plugin.  MariaDB has no
caching_sha2_password: the proxy speaks it to its clients and logs in to MariaDB with native.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time

import pymysql
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
from mysql_proxy_support import RunningProxy, client_tls, connection_id, scalar
from polling import eventually
from proxy_support import config_for, running

from harness.standins.mysql.cluster import MySQLCluster
from reference_proxy.protocol.mysql import (
    CLEAR_PASSWORD,
    NATIVE_PASSWORD,
    NEED_DATA,
    AuthSwitchRequest,
    Capability,
    HandshakeResponse41,
    PacketReader,
    SSLRequest,
    encode_packet,
)

COM_CHANGE_USER = 0x11

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.shares_cluster]

USERS = {  # secret id -> (database user, first password, secret settings)
    "db/app": ("mcred_app", "app-pw-1", {"method": "mysql_native_password"}),
    "db/sha2": ("mcred_sha2", "sha2-pw-1", {}),  # the engine's default: caching_sha2_password
    "db/rotating": ("mcred_rot", "rot-pw-1", {"method": "mysql_native_password"}),
    "db/rotating-sha2": ("mcred_rot_sha2", "rotsha2-pw-1", {}),
    "db/rotating-native": ("mcred_rot_nat", "rotnat-pw-1", {"method": "mysql_native_password"}),
    "db/changing": ("mcred_chg", "chg-pw-1", {"method": "mysql_native_password"}),
    "db/lambda": ("mcred_lambda", "lambda-db-pw", {"iam_auth": "required"}),
}

TOKEN_REFUSED = ("IAM authentication failed for user mcred_lambda. Check the IAM token for this user and "
                 "try again.")


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory):
    with fake_aws(tmp_path_factory.mktemp("no-aws")) as url:
        yield url


@pytest.fixture(scope="module")
def secretsmanager(moto_url):
    return secretsmanager_client(moto_url)


@pytest.fixture(scope="module")
def cluster(secretsmanager):
    """One writer whose users match the secrets, each secret holding its user's login."""
    with MySQLCluster(readers=0) as c:
        for secret_id, (user, password, _) in USERS.items():
            c.create_login(user, password)
            secretsmanager.create_secret(Name=secret_id, SecretString=login(user, password))
        yield c


def login(user: str, password: str) -> str:
    return login_secret(user, password, "mysql")


def rotate(cluster, secretsmanager, secret_id: str, password: str, *, finish: bool = True) -> None:
    """setSecret (the database's password), then, with ``finish``, finishSecret (AWSCURRENT moves)."""
    user = USERS[secret_id][0]
    cluster.set_password(user, password)
    if finish:
        secretsmanager.put_secret_value(SecretId=secret_id, SecretString=login(user, password))


def running_proxy(cluster, moto_url, *, cache_ttl: float, refresh_min_interval: float, **iam: object):
    """A proxy whose users all come from the secrets (no static users), with IAM keys configured (and,
    as always, TLS with a self-signed certificate)."""
    auth = auth_settings(moto_url, [{"secret_id": sid, **settings} for sid, (_, _, settings) in USERS.items()],
                         cache_ttl=cache_ttl, refresh_min_interval=refresh_min_interval, **iam)
    config = config_for("mysql", cluster, [], extra={"auth": auth, "monitor": {"database": cluster.database}},
                        endpoints__0__advertised_host=ADVERTISED)
    return running(config, cluster, RunningProxy)


def refused(proxy: RunningProxy, user: str, password: str, **kwargs) -> tuple[int, str]:
    """The error code and text of the proxy's refusal of this login (the test fails if it is accepted)."""
    with pytest.raises(pymysql.err.OperationalError) as info:
        proxy.connect(user=user, password=password, **kwargs).close()
    return info.value.args[0], info.value.args[1]


def access_denied(user: str, why: str = "") -> str:
    message = f"Access denied for user '{user}'@'127.0.0.1' (using password: YES)"
    return f"{message}: {why}" if why else message


def secret_version(proxy: RunningProxy, secret_id: str) -> str:
    return proxy.admin_status()[0]["credentials"]["secrets"][secret_id]["version_id"]


def backend_alive(cluster, thread_id: int) -> bool:
    return cluster.query_value(cluster.writer.id, "SELECT COUNT(*) FROM information_schema.processlist "
                               f"WHERE id = {int(thread_id)}", 10) == 1


# --------------------------------------------------------------------------------- passwords

def test_secret_users_log_in_with_their_method_and_wrong_ones_are_denied(cluster, moto_url):
    with running_proxy(cluster, moto_url, cache_ttl=60, refresh_min_interval=1) as proxy:
        with proxy.connect(user="mcred_app", password="app-pw-1") as conn:
            assert scalar(conn, "SELECT CURRENT_USER()") == "mcred_app@%"
        # caching_sha2: the first login takes the full path (over TLS), later ones the fast path.
        with proxy.connect(user="mcred_sha2", password="sha2-pw-1", tls=True) as conn:
            assert scalar(conn, "SELECT CURRENT_USER()") == "mcred_sha2@%"
        with proxy.connect(user="mcred_sha2", password="sha2-pw-1") as conn:
            assert conn.get_server_info() and scalar(conn, "SELECT 1") == 1
        assert refused(proxy, "mcred_app", "not-it") == (1045, access_denied("mcred_app"))
        assert refused(proxy, "mcred_sha2", "not-it", tls=True) == (1045, access_denied("mcred_sha2"))
        assert refused(proxy, "nobody", "whatever") == (1045, access_denied(
            "nobody", "This RDS proxy has no credentials for the role nobody. Check the credentials for this "
                      "role and try again."))
        assert proxy.metric("ClientConnectionsSetupFailedAuth", endpoint="default") == 3
        document, body = proxy.admin_status()
    credentials = document["credentials"]
    assert credentials["static_users"] == 0
    assert {sid: entry["user"] for sid, entry in credentials["secrets"].items()} == {
        sid: user for sid, (user, _, _) in USERS.items()}
    for _, password, _ in USERS.values():
        assert password not in body
    assert IAM_SECRET not in body


def test_a_rotation_keeps_sessions_and_new_logins_follow_the_secret(cluster, moto_url, secretsmanager):
    """Single-user rotation: the established session and its backend connection stay; new logins with
    the new password succeed once the periodic refresh read the secret; the old password is refused."""
    with running_proxy(cluster, moto_url, cache_ttl=1, refresh_min_interval=0.2) as proxy:
        held = proxy.connect(user="mcred_rot", password="rot-pw-1", autocommit=False)
        try:
            held.begin()  # the transaction holds its backend connection
            thread = connection_id(held)
            version = secret_version(proxy, "db/rotating")
            rotate(cluster, secretsmanager, "db/rotating", "rot-pw-2")
            # No login fails meanwhile: only the periodic refresh of due secrets can pick the new version up.
            eventually(lambda: secret_version(proxy, "db/rotating") != version, timeout=30,
                       what="the proxy's refresh of the rotated secret")
            with proxy.connect(user="mcred_rot", password="rot-pw-2") as conn:
                assert scalar(conn, "SELECT CURRENT_USER()") == "mcred_rot@%"
            assert refused(proxy, "mcred_rot", "rot-pw-1") == (1045, access_denied("mcred_rot"))
            assert connection_id(held) == thread and backend_alive(cluster, thread)
            held.commit()
            assert scalar(held, "SELECT CURRENT_USER()") == "mcred_rot@%"
        finally:
            held.close()


def test_backend_logins_read_the_secret_again_when_the_database_refuses_them(cluster, moto_url, secretsmanager):
    """A long cache TTL, so only failures cause reads.  Between setSecret and finishSecret a new backend
    login fails with the database's 1045 (the rotation window); after finishSecret the refused login
    reads the secret again and retries once with the new password.  A caching_sha2 client already on
    the new password is checked again against the re-read secret (over TLS) instead of being refused."""
    with running_proxy(cluster, moto_url, cache_ttl=3600, refresh_min_interval=0) as proxy:
        # The same session settings (autocommit off), so both borrow from one pool partition.
        holder = proxy.connect(user="mcred_rot_sha2", password="rotsha2-pw-1", tls=True, autocommit=False)
        waiting = proxy.connect(user="mcred_rot_sha2", password="rotsha2-pw-1", autocommit=False)
        try:
            holder.begin()  # holds the partition's only backend, so the next borrow must log in anew
            thread = connection_id(holder)
            rotate(cluster, secretsmanager, "db/rotating-sha2", "rotsha2-pw-2", finish=False)
            with pytest.raises(pymysql.err.OperationalError) as info:
                scalar(waiting, "SELECT 1")
            assert info.value.args[0] == 1045 and "Access denied for user 'mcred_rot_sha2'" in info.value.args[1]
            secretsmanager.put_secret_value(SecretId="db/rotating-sha2",
                                            SecretString=login("mcred_rot_sha2", "rotsha2-pw-2"))
            assert scalar(waiting, "SELECT CURRENT_USER()") == "mcred_rot_sha2@%"
            assert connection_id(waiting) != thread
            assert connection_id(holder) == thread
            holder.commit()
            # One attempt each: the proxy still holds the old secret until the mismatch makes it look.
            with proxy.connect(user="mcred_rot_sha2", password="rotsha2-pw-2", tls=True) as conn:
                assert scalar(conn, "SELECT CURRENT_USER()") == "mcred_rot_sha2@%"
            assert refused(proxy, "mcred_rot_sha2", "rotsha2-pw-1", tls=True)[0] == 1045
        finally:
            holder.close()
            waiting.close()
        snapshot = proxy.admin_status()[0]["credentials"]["secrets"]["db/rotating-sha2"]
        assert snapshot["user"] == "mcred_rot_sha2" and snapshot["problem"] is None


def test_a_native_client_on_the_rotated_password_gets_in_at_once(cluster, moto_url, secretsmanager):
    """Within the TTL the proxy holds the old secret; the client's native scramble is checked again,
    with the same nonce, against the secret read after the mismatch, so its first attempt succeeds."""
    with running_proxy(cluster, moto_url, cache_ttl=3600, refresh_min_interval=0) as proxy:
        with proxy.connect(user="mcred_rot_nat", password="rotnat-pw-1") as conn:
            assert scalar(conn, "SELECT 1") == 1
        rotate(cluster, secretsmanager, "db/rotating-native", "rotnat-pw-2")
        with proxy.connect(user="mcred_rot_nat", password="rotnat-pw-2") as conn:
            assert scalar(conn, "SELECT CURRENT_USER()") == "mcred_rot_nat@%"
        assert refused(proxy, "mcred_rot_nat", "rotnat-pw-1") == (1045, access_denied("mcred_rot_nat"))
        assert proxy.metric("ClientConnectionsSetupFailedAuth", endpoint="default") == 1


# --------------------------------------------------------------------------------------- IAM

def test_a_fresh_boto3_token_logs_in_over_tls_and_the_session_outlives_it(cluster, moto_url):
    with running_proxy(cluster, moto_url, cache_ttl=60, refresh_min_interval=1) as proxy:
        token = iam_token("mcred_lambda", proxy.port())
        with proxy.connect(user="mcred_lambda", password=token, tls=True) as conn:
            assert scalar(conn, "SELECT CURRENT_USER()") == "mcred_lambda@%"
            # The proxy logged in to the database with the secret's password, not the token.
            assert cluster.query_value(cluster.writer.id, "SELECT COUNT(*) FROM information_schema.processlist "
                                       "WHERE user = 'mcred_lambda'", 10) >= 1
            # Twenty minutes later, as the proxy's token checks see it: the token is dead, the session is not.
            later = time.time() + 20 * 60
            proxy.call(lambda: setattr(proxy.server.iam.verifier, "_wall_clock", lambda: later))
            assert refused(proxy, "mcred_lambda", token, tls=True) == (1045, access_denied("mcred_lambda",
                                                                                          TOKEN_REFUSED))
            assert scalar(conn, "SELECT CURRENT_USER()") == "mcred_lambda@%"


def test_iam_logins_refused_with_rds_texts(cluster, moto_url):
    with running_proxy(cluster, moto_url, cache_ttl=60, refresh_min_interval=1) as proxy:
        port = proxy.port()
        good = iam_token("mcred_lambda", port)
        # Refused before the token is asked for: PyMySQL would send it in clear.
        assert refused(proxy, "mcred_lambda", good) == (1045, access_denied(
            "mcred_lambda", "IAM authentication is allowed only with SSL connections."))
        cases = {
            "expired": iam_token("mcred_lambda", port, at=twenty_minutes_ago()),
            "tampered": good[:-1] + ("0" if good[-1] != "0" else "1"),
            "other user": iam_token("mcred_app", port),
            "other host": iam_token("mcred_lambda", port, host="elsewhere.proxy-abc123.us-east-1.rds.amazonaws.com"),
            "other port": iam_token("mcred_lambda", port + 1),
            "untrusted key": iam_token("mcred_lambda", port, key_id="AKIDSTRANGER", secret="not-trusted"),
            "a password": "lambda-db-pw",
        }
        for what, token in cases.items():
            assert refused(proxy, "mcred_lambda", token, tls=True) == (
                1045, access_denied("mcred_lambda", TOKEN_REFUSED)), what
        with proxy.connect(user="mcred_lambda", password=good, tls=True) as conn:  # still good after all that
            assert scalar(conn, "SELECT 1") == 1
        assert proxy.metric("ClientConnectionsSetupFailedAuth", endpoint="default") == 1 + len(cases)
        assert proxy.admin_status()[0]["credentials"]["iam"]["in_progress"] == 0


def test_iam_logins_beyond_the_concurrency_limit_are_refused(cluster, moto_url):
    """With room for one IAM authentication, a client that was asked for its token and sits on it
    makes the next IAM login fail with RDS's MySQL text (ERROR 1040); once it leaves, IAM logins work
    again."""
    with running_proxy(cluster, moto_url, cache_ttl=60, refresh_min_interval=1,
                       max_concurrent_authentications=1) as proxy:
        token = iam_token("mcred_lambda", proxy.port())
        slow = asked_for_a_token(proxy, "mcred_lambda")
        try:
            assert refused(proxy, "mcred_lambda", token, tls=True) == (1040, "IAM authentication rate limit exceeded")
        finally:
            slow.close()

        def logs_in() -> bool:
            try:
                with proxy.connect(user="mcred_lambda", password=token, tls=True) as conn:
                    return scalar(conn, "SELECT 1") == 1
            except pymysql.err.OperationalError:
                return False

        eventually(logs_in, timeout=30, what="an IAM login after the slow client left")
        iam = proxy.admin_status()[0]["credentials"]["iam"]
        assert iam["refused"] == 1 and iam["in_progress"] == 0


def test_connector_and_the_mariadb_cli_send_their_token_when_switched_over_tls(cluster, moto_url):
    """Connector/Python sends mysql_clear_password only over TLS, libmariadb whenever asked (no
    --enable-cleartext-plugin needed): over TLS both log in with boto3's token, and without TLS the
    proxy refuses both before asking."""
    import mysql.connector

    with running_proxy(cluster, moto_url, cache_ttl=60, refresh_min_interval=1) as proxy:
        token = iam_token("mcred_lambda", proxy.port())
        options = {"host": "127.0.0.1", "port": proxy.port(), "user": "mcred_lambda", "password": token,
                   "database": cluster.database, "use_pure": True, "connection_timeout": 10}
        conn = mysql.connector.connect(**options)
        try:
            cur = conn.cursor()
            cur.execute("SELECT CURRENT_USER()")
            assert cur.fetchone() == ("mcred_lambda@%",)
        finally:
            conn.close()
        with pytest.raises(mysql.connector.Error) as info:
            mysql.connector.connect(**options, ssl_disabled=True)
        assert info.value.errno == 1045 and "IAM authentication is allowed only with SSL connections." in info.value.msg

        assert mariadb_cli(proxy, "mcred_lambda", token).stdout.strip() == "mcred_lambda@%"
        plaintext = mariadb_cli(proxy, "mcred_lambda", token, "--skip-ssl")
        assert plaintext.returncode == 1
        assert "ERROR 1045 (28000)" in plaintext.stderr and "allowed only with SSL" in plaintext.stderr
        assert token not in plaintext.stderr


def mariadb_cli(proxy: RunningProxy, user: str, password: str, *options: str) -> subprocess.CompletedProcess:
    """The ``mariadb`` client, its password from the environment (never on a command line)."""
    command = ["mariadb", "--no-defaults", "-h127.0.0.1", f"-P{proxy.port()}", f"-u{user}", "-N", *options,
               "-e", "SELECT CURRENT_USER()"]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "MYSQL_PWD": password})


def change_user(conn: pymysql.connections.Connection, user: str, answer: bytes) -> None:
    """COM_CHANGE_USER as ``user``, answering the greeting's plugin (native) with ``answer``."""
    payload = (user.encode() + b"\0" + bytes([len(answer)]) + answer + b"\0" + (45).to_bytes(2, "little")
               + NATIVE_PASSWORD.encode() + b"\0")
    conn._execute_command(COM_CHANGE_USER, payload)


def test_change_user_asks_the_source_and_switches_iam_users_to_clear_password(cluster, moto_url):
    with running_proxy(cluster, moto_url, cache_ttl=60, refresh_min_interval=1) as proxy:
        token = iam_token("mcred_lambda", proxy.port())
        with proxy.connect(user="mcred_app", password="app-pw-1", tls=True) as conn:
            change_user(conn, "mcred_lambda", b"")
            switch = conn._read_packet()
            assert AuthSwitchRequest.decode(switch.get_all_data()).plugin_name == CLEAR_PASSWORD
            conn.write_packet(token.encode() + b"\0")
            conn._read_ok_packet()
            assert scalar(conn, "SELECT CURRENT_USER()") == "mcred_lambda@%"
        with proxy.connect(user="mcred_app", password="app-pw-1") as conn:
            change_user(conn, "mcred_lambda", b"")
            with pytest.raises(pymysql.err.OperationalError) as info:
                conn._read_ok_packet()
            assert info.value.args == (1045, access_denied(
                "mcred_lambda", "IAM authentication is allowed only with SSL connections.").replace("YES", "NO"))
            change_user(conn, "nobody", b"x" * 20)
            with pytest.raises(pymysql.err.OperationalError, match="no credentials for the role nobody"):
                conn._read_ok_packet()
            assert scalar(conn, "SELECT CURRENT_USER()") == "mcred_app@%"  # the session survives as it was
        assert proxy.admin_status()[0]["credentials"]["iam"]["in_progress"] == 0


def test_change_user_to_a_rotated_user_rechecks_the_answer_against_the_reread_secret(cluster, moto_url,
                                                                                     secretsmanager):
    with running_proxy(cluster, moto_url, cache_ttl=3600, refresh_min_interval=0) as proxy:
        with proxy.connect(user="mcred_app", password="app-pw-1") as conn:
            rotate(cluster, secretsmanager, "db/changing", "chg-pw-2")
            change_user(conn, "mcred_chg", pymysql._auth.scramble_native_password(b"chg-pw-2", conn.salt))
            conn._read_ok_packet()
            assert scalar(conn, "SELECT CURRENT_USER()") == "mcred_chg@%"
            change_user(conn, "mcred_chg", pymysql._auth.scramble_native_password(b"chg-pw-1", conn.salt))
            with pytest.raises(pymysql.err.OperationalError) as info:
                conn._read_ok_packet()
            assert info.value.args == (1045, access_denied("mcred_chg"))
        assert proxy.metric("ClientConnectionsSetupFailedAuth", endpoint="default") == 1


CLIENT_CAPS = (Capability.LONG_PASSWORD | Capability.PROTOCOL_41 | Capability.SECURE_CONNECTION
               | Capability.PLUGIN_AUTH | Capability.TRANSACTIONS)


def asked_for_a_token(proxy: RunningProxy, user: str) -> ssl.SSLSocket:
    """A raw TLS client that starts an IAM login and stops once the proxy switches it to
    ``mysql_clear_password``."""
    sock = socket.create_connection(("127.0.0.1", proxy.port()), timeout=10)
    read_packet(sock)  # the greeting
    sock.sendall(encode_packet(SSLRequest(CLIENT_CAPS).encode(), 1)[0])
    tls = client_tls().wrap_socket(sock)
    answer = HandshakeResponse41(CLIENT_CAPS | Capability.SSL, user, b"x" * 20, None, NATIVE_PASSWORD, (),
                                 character_set=45)
    tls.sendall(encode_packet(answer.encode(), 2)[0])
    sequence, payload = read_packet(tls)
    assert (sequence, AuthSwitchRequest.decode(payload).plugin_name) == (3, CLEAR_PASSWORD)
    return tls


def read_packet(sock: socket.socket) -> tuple[int, bytes]:
    """One whole packet from ``sock`` (the proxy sends nothing unasked, so nothing is read past it)."""
    reader = PacketReader(expected_sequence=None)
    while (packet := reader.next_packet()) is NEED_DATA:
        chunk = sock.recv(65536)
        assert chunk, "the proxy closed the connection"
        reader.receive_data(chunk)
    return packet.sequence_id, packet.payload
