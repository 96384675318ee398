"""The Secrets Manager source against moto's in-process Secrets Manager, on a fake clock."""

from __future__ import annotations

import asyncio
import logging

import pytest
from conftest import login_secret

from reference_proxy.contracts import BackendCredentials, ConfigError
from reference_proxy.credentials.methods import AuthMethod
from reference_proxy.credentials.secrets_manager import SecretsManagerSource, parse_secret_string
from reference_proxy.credentials.settings import (
    MAX_SECRETS,
    IamAuth,
    SecretConfig,
    SecretsManagerSettings,
)
from reference_proxy.credentials.source import IAM_METHOD

TTL = 60.0
MIN_INTERVAL = 1.0


def source(client, clock, *secret_ids: str, secrets: tuple[SecretConfig, ...] = ()) -> SecretsManagerSource:
    configs = secrets or tuple(SecretConfig(secret_id=s) for s in secret_ids)
    return SecretsManagerSource(client, configs, default_method="scram-sha-256", clock=clock,
                                settings=SecretsManagerSettings(cache_ttl=TTL, refresh_min_interval=MIN_INTERVAL))


def create(client, name: str, username: str, password: str, **extra) -> str:
    return client.create_secret(Name=name, SecretString=login_secret(username, password, **extra))["ARN"]


def run(coro):
    return asyncio.run(coro)


def test_each_secret_serves_the_user_it_names(secretsmanager, clock) -> None:
    app = create(secretsmanager, "db/app", "app", "app-pw", host="ignored", engine="postgres")
    create(secretsmanager, "db/report", "report", "report-pw")
    src = source(secretsmanager, clock, app, "db/report")
    assert run(src.load_all()) == {}
    creds = run(src.lookup("app"))
    assert creds is not None and not creds.requires_iam
    assert (creds.client.user, creds.client.password, creds.client.method) == ("app", "app-pw", "scram-sha-256")
    assert creds.backend == BackendCredentials("app", "app-pw")
    assert src.cached("report").backend == BackendCredentials("report", "report-pw")
    assert src.has_credentials and sorted(secretsmanager.reads) == sorted([app, "db/report"])


def test_a_secret_gives_its_method_or_iam(secretsmanager, clock) -> None:
    create(secretsmanager, "md5", "legacy", "legacy-pw")
    create(secretsmanager, "iam", "lambda", "lambda-db-pw")
    src = source(secretsmanager, clock, secrets=(SecretConfig("md5", method=AuthMethod.MD5),
                                                 SecretConfig("iam", iam_auth=IamAuth.REQUIRED)))
    run(src.load_all())
    assert src.cached("legacy").client.method == "md5"
    iam = src.cached("lambda")
    assert iam.requires_iam and iam.client.method == IAM_METHOD and iam.client.password == ""
    assert iam.backend == BackendCredentials("lambda", "lambda-db-pw")


def test_a_read_is_trusted_for_the_ttl_then_read_again(secretsmanager, clock) -> None:
    create(secretsmanager, "db/app", "app", "one")
    src = source(secretsmanager, clock, "db/app")
    assert run(src.lookup("app")).client.password == "one"
    secretsmanager.put_secret_value(SecretId="db/app", SecretString=login_secret("app", "two"))
    clock.advance(TTL - 1)
    assert run(src.lookup("app")).client.password == "one"
    assert len(secretsmanager.reads) == 1
    clock.advance(1)
    assert run(src.lookup("app")).client.password == "two"
    assert len(secretsmanager.reads) == 2


def test_only_awscurrent_is_read_through_a_four_step_rotation(secretsmanager, clock) -> None:
    """createSecret puts AWSPENDING; only finishSecret (moving AWSCURRENT) changes what the proxy uses."""
    create(secretsmanager, "db/app", "app", "old")
    src = source(secretsmanager, clock, "db/app")
    run(src.load_all())
    pending = secretsmanager.put_secret_value(SecretId="db/app", SecretString=login_secret("app", "new"),
                                              VersionStages=["AWSPENDING"])["VersionId"]
    clock.advance(TTL)
    assert run(src.lookup("app")).client.password == "old"
    current = [v for v, stages in secretsmanager.describe_secret(SecretId="db/app")["VersionIdsToStages"].items()
               if "AWSCURRENT" in stages]
    secretsmanager.update_secret_version_stage(SecretId="db/app", VersionStage="AWSCURRENT",
                                               MoveToVersionId=pending, RemoveFromVersionId=current[0])
    clock.advance(TTL)
    assert run(src.lookup("app")).client.password == "new"
    assert src.snapshot()["db/app"]["version_id"] == pending


def test_a_refused_backend_login_reads_the_secret_at_once(secretsmanager, clock) -> None:
    create(secretsmanager, "db/app", "app", "old")
    src = source(secretsmanager, clock, "db/app")
    old = run(src.lookup("app")).backend
    secretsmanager.put_secret_value(SecretId="db/app", SecretString=login_secret("app", "new"))
    clock.advance(MIN_INTERVAL)
    fresh = run(src.backend_login_failed("app", old))
    assert fresh.backend == BackendCredentials("app", "new")
    assert len(secretsmanager.reads) == 2
    # A second failure with the old login, already superseded, reads nothing.
    assert run(src.backend_login_failed("app", old)).backend == fresh.backend
    assert len(secretsmanager.reads) == 2


def test_failed_backend_logins_read_a_secret_at_most_once_per_interval(secretsmanager, clock) -> None:
    """The broken order: the database's password changed, the secret not yet. Failures must not
    turn into a read per failed login."""
    create(secretsmanager, "db/app", "app", "stale")
    src = source(secretsmanager, clock, "db/app")
    stale = run(src.lookup("app")).backend
    clock.advance(MIN_INTERVAL)
    for _ in range(20):
        assert run(src.backend_login_failed("app", stale)).backend == stale
        clock.advance(MIN_INTERVAL / 10)
    assert len(secretsmanager.reads) == 1 + 2  # the first read, then one per elapsed interval


def test_concurrent_refreshes_coalesce_into_one_read(secretsmanager, clock) -> None:
    create(secretsmanager, "db/app", "app", "old")
    src = source(secretsmanager, clock, "db/app")
    old = run(src.lookup("app")).backend
    secretsmanager.put_secret_value(SecretId="db/app", SecretString=login_secret("app", "new"))
    clock.advance(TTL)

    async def storm():
        failures = [src.backend_login_failed("app", old) for _ in range(50)]
        lookups = [src.lookup("app") for _ in range(50)]
        return await asyncio.gather(*failures, *lookups)

    results = run(storm())
    assert {r.backend.password for r in results} == {"new"}
    assert len(secretsmanager.reads) == 2 and src.reads_started == 2


def test_an_unknown_user_reads_nothing_while_every_secret_is_fresh(secretsmanager, clock) -> None:
    create(secretsmanager, "db/app", "app", "pw")
    src = source(secretsmanager, clock, "db/app")
    run(src.load_all())
    assert run(src.lookup("stranger")) is None
    assert run(src.backend_login_failed("stranger", BackendCredentials("stranger", "x"))) is None
    assert len(secretsmanager.reads) == 1


def test_alternating_users_rotation_moves_the_secret_to_the_clone(secretsmanager, clock) -> None:
    """Multi-user rotation rewrites the user name: clients of the old name then have no credentials,
    as RDS Proxy reports ("no credentials for the role")."""
    create(secretsmanager, "db/app", "app", "pw1")
    src = source(secretsmanager, clock, "db/app")
    run(src.load_all())
    secretsmanager.put_secret_value(SecretId="db/app", SecretString=login_secret("app_clone", "pw2"))
    clock.advance(TTL)
    assert run(src.lookup("app_clone")).backend == BackendCredentials("app_clone", "pw2")
    assert run(src.lookup("app")) is None


@pytest.mark.parametrize("value, problem", [
    ("not json at all pw=hunter2", "is not JSON"),
    ('["hunter2"]', "is not a JSON object"),
    ('{"password": "hunter2"}', "has no 'username' string"),
    ('{"username": "app", "password": 12345}', "has no 'password' string"),
])
def test_a_secret_without_a_usable_login_is_reported_without_its_value(secretsmanager, clock, caplog, value,
                                                                        problem) -> None:
    secretsmanager.create_secret(Name="db/bad", SecretString=value)
    src = source(secretsmanager, clock, "db/bad")
    with caplog.at_level(logging.DEBUG, logger="reference_proxy"):
        problems = run(src.load_all())
    assert problem in problems["db/bad"]
    assert not src.has_credentials
    shown = caplog.text + str(problems) + str(src.snapshot())
    assert "hunter2" not in shown and "12345" not in shown


def test_a_binary_secret_holds_no_login(secretsmanager, clock) -> None:
    secretsmanager.create_secret(Name="db/binary", SecretBinary=b"\x00\x01")
    src = source(secretsmanager, clock, "db/binary")
    assert "has no SecretString" in run(src.load_all())["db/binary"]


def test_a_missing_secret_gives_its_user_no_credentials_and_names_aws_error(secretsmanager, clock) -> None:
    create(secretsmanager, "db/app", "app", "pw")
    src = source(secretsmanager, clock, "db/app", "db/missing")
    problems = run(src.load_all())
    assert list(problems) == ["db/missing"]
    assert "ResourceNotFoundException" in problems["db/missing"]
    assert src.cached("app") is not None and src.has_credentials


def test_a_failed_read_keeps_the_last_good_value(secretsmanager, clock, caplog) -> None:
    create(secretsmanager, "db/app", "app", "kept-pw")
    src = source(secretsmanager, clock, "db/app")
    run(src.load_all())
    secretsmanager.delete_secret(SecretId="db/app", ForceDeleteWithoutRecovery=True)
    clock.advance(TTL)
    with caplog.at_level(logging.WARNING, logger="reference_proxy"):
        assert run(src.lookup("app")).backend.password == "kept-pw"
    assert "could not be read" in src.problems()["db/app"]
    assert "using the value read before" in caplog.text and "kept-pw" not in caplog.text
    # The failure is not retried on every login: only after the minimum interval.
    reads = len(secretsmanager.reads)
    run(src.lookup("app"))
    assert len(secretsmanager.reads) == reads


def test_two_secrets_naming_one_user_the_first_listed_wins(secretsmanager, clock) -> None:
    create(secretsmanager, "first", "app", "first-pw")
    create(secretsmanager, "second", "app", "second-pw")
    src = source(secretsmanager, clock, "first", "second")
    problems = run(src.load_all())
    assert src.cached("app").backend.password == "first-pw"
    assert problems == {"second": "secret second names user app, already served by secret first"}


def test_the_snapshot_shows_versions_and_ages_but_no_password(secretsmanager, clock) -> None:
    create(secretsmanager, "db/app", "app", "sn4pshot-pw")
    src = source(secretsmanager, clock, "db/app")
    run(src.load_all())
    clock.advance(5)
    snap = src.snapshot()["db/app"]
    assert snap["user"] == "app" and snap["age"] == 5 and snap["version_id"] and snap["problem"] is None
    assert "sn4pshot-pw" not in repr(src.snapshot())


def test_more_secrets_than_rds_reads_or_a_secret_listed_twice_is_a_config_error(clock) -> None:
    too_many = tuple(SecretConfig(f"s{n}") for n in range(MAX_SECRETS + 1))
    with pytest.raises(ConfigError, match="at most 200 secrets"):
        SecretsManagerSource(None, too_many, default_method="md5", clock=clock)
    with pytest.raises(ConfigError, match="repeated: \\['s1'\\]"):
        SecretsManagerSource(None, (SecretConfig("s1"), SecretConfig("s1")), default_method="md5", clock=clock)
    SecretsManagerSource(None, too_many[:MAX_SECRETS], default_method="md5", clock=clock)


def test_parse_secret_string_takes_username_and_password_only() -> None:
    assert parse_secret_string("s", login_secret("u", "p", dbname="x", port=5432)) == ("u", "p")
    assert parse_secret_string("s", login_secret("u", "")) == ("u", "")


def test_refresh_due_keeps_the_synchronous_view_current(secretsmanager, clock) -> None:
    create(secretsmanager, "db/app", "app", "one")
    create(secretsmanager, "db/report", "report", "r1")
    src = source(secretsmanager, clock, "db/app", "db/report")
    run(src.load_all())
    secretsmanager.put_secret_value(SecretId="db/app", SecretString=login_secret("app", "two"))
    run(src.refresh_due())
    assert src.cached("app").client.password == "one" and len(secretsmanager.reads) == 2
    clock.advance(TTL)
    run(src.refresh_due())
    assert src.cached("app").client.password == "two" and len(secretsmanager.reads) == 4


def test_the_same_code_reads_secrets_over_http_from_a_moto_server(monkeypatch, clock) -> None:
    """What ``aurora-harness up`` will run: a moto server on loopback, reached through an endpoint URL."""
    from moto.server import ThreadedMotoServer

    from reference_proxy.credentials.secrets_manager import make_client

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        settings = SecretsManagerSettings(region="us-east-1", endpoint_url=f"http://{host}:{port}",
                                          cache_ttl=TTL, refresh_min_interval=MIN_INTERVAL)
        client = make_client(settings)
        client.create_secret(Name="http/app", SecretString=login_secret("app", "over-http"))
        src = SecretsManagerSource(client, (SecretConfig("http/app"),), default_method="md5", clock=clock,
                                   settings=settings)
        old = run(src.lookup("app")).backend
        assert old == BackendCredentials("app", "over-http")
        client.put_secret_value(SecretId="http/app", SecretString=login_secret("app", "rotated"))
        clock.advance(MIN_INTERVAL)
        assert run(src.backend_login_failed("app", old)).backend.password == "rotated"
        assert run(src.load_all()) == {}
    finally:
        server.stop()


def test_a_client_already_using_the_rotated_password_makes_the_proxy_read_again(secretsmanager, clock) -> None:
    """Within the TTL the proxy still holds the old secret; a client proving the new password fails
    once, and the read it causes lets the client's retry (or a re-check) succeed."""
    create(secretsmanager, "db/app", "app", "old")
    src = source(secretsmanager, clock, "db/app")
    held = run(src.lookup("app")).client
    secretsmanager.put_secret_value(SecretId="db/app", SecretString=login_secret("app", "new"))
    clock.advance(MIN_INTERVAL)
    assert run(src.client_login_failed("app", held)).client.password == "new"
    assert run(src.client_login_failed("app", held)).client.password == "new"  # superseded: no read
    assert len(secretsmanager.reads) == 2
    # A client guessing passwords causes at most one read per interval.
    now_held = src.cached("app").client
    for _ in range(10):
        run(src.client_login_failed("app", now_held))
    assert len(secretsmanager.reads) == 2
