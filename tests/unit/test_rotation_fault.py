"""The rotation fault's steps against moto's in-process Secrets Manager and a fake database."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from harness.faults.base import FaultError
from harness.faults.registry import fault_from_spec
from harness.history import Recorder
from harness.targets.base import Capability, Credentials, Endpoint, SecretsAccess, Target, Unsupported

REGION = "us-east-1"
KEYS = {"aws_access_key_id": "AKIDUNITTEST", "aws_secret_access_key": "unit-test-secret"}


class RotatingTarget(Target):
    """A target whose 'database' is a dict of passwords, and whose secrets live in moto."""

    kind = "fake"

    def __init__(self, capabilities=frozenset(Capability)) -> None:
        super().__init__("postgres")
        self.capabilities = frozenset(capabilities)
        self.database = {"solo": "solo-1", "alt_a": "a-1", "alt_b": "b-1"}
        self.refuse_tests = False

    writer_endpoint = Endpoint("default", "writer", "127.0.0.1", 1)
    reader_endpoints: list[Endpoint] = []  # noqa: RUF012 - a fixed answer, never changed
    credentials = Credentials("u", "p", "d")

    def secrets_access(self) -> SecretsAccess:
        self.require(Capability.ROTATE_SECRET)
        return SecretsAccess(REGION, None, KEYS["aws_access_key_id"], KEYS["aws_secret_access_key"],
                             single_user="db/solo", alternating=("db/alternating", "alt_a", "alt_b"))

    def set_database_password(self, user, password):
        self.database[user] = password

    def check_database_login(self, user, password):
        if self.refuse_tests or self.database.get(user) != password:
            raise RuntimeError(f"password authentication failed for user {user}")


@pytest.fixture
def aws(monkeypatch):
    for name, value in (("AWS_ACCESS_KEY_ID", KEYS["aws_access_key_id"]),
                        ("AWS_SECRET_ACCESS_KEY", KEYS["aws_secret_access_key"])):
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("secretsmanager", region_name=REGION, **KEYS)
        client.create_secret(Name="db/solo", SecretString=json.dumps({"username": "solo", "password": "solo-1"}))
        client.create_secret(Name="db/alternating", SecretString=json.dumps({"username": "alt_a", "password": "a-1"}))
        yield client


def current(client, secret_id: str) -> dict:
    return json.loads(client.get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")["SecretString"])


def run(fault, target, recorder):
    old = fault.prepare(target)
    fault.start(target, recorder)
    assert fault.wait(30)
    fault.stop()
    return old


def steps(recorder) -> list[str]:
    return [e.value for e in recorder.history().events("rotation_step")]


def test_single_user_rotation_runs_the_four_steps_and_moves_awscurrent(aws):
    target, recorder = RotatingTarget(), Recorder()
    fault = fault_from_spec({"name": "rotate_secret", "window_seconds": 0})
    old = run(fault, target, recorder)
    assert (old.user, old.password) == ("solo", "solo-1")
    assert steps(recorder) == ["createSecret", "setSecret", "testSecret", "finishSecret"]
    new = fault.current_login()
    assert new.user == "solo" and new.password != "solo-1" and new.generation == "new"
    assert current(aws, "db/solo") == {"username": "solo", "password": new.password}
    assert target.database["solo"] == new.password
    stages = aws.describe_secret(SecretId="db/solo")["VersionIdsToStages"]
    assert not any("AWSPENDING" in labels for labels in stages.values())
    (window,) = recorder.history().fault_windows("rotate_secret")
    assert window.end is not None and window.params["strategy"] == "single_user"
    assert "solo-1" not in json.dumps([op.to_dict() for op in recorder.history()])
    assert new.password not in json.dumps([op.to_dict() for op in recorder.history()])


def test_alternating_rotation_switches_the_secret_to_the_other_user(aws):
    target, recorder = RotatingTarget(), Recorder()
    fault = fault_from_spec({"name": "rotate_secret", "strategy": "alternating_users", "window_seconds": 0})
    run(fault, target, recorder)
    switched = current(aws, "db/alternating")
    assert switched["username"] == "alt_b" and target.database["alt_b"] == switched["password"]
    assert target.database["alt_a"] == "a-1"  # the previous user keeps its password
    again = fault_from_spec({"name": "rotate_secret", "strategy": "alternating_users", "window_seconds": 0})
    run(again, target, Recorder())
    assert current(aws, "db/alternating")["username"] == "alt_a"


def test_database_first_changes_the_database_then_puts_the_secret(aws):
    target, recorder = RotatingTarget(), Recorder()
    fault = fault_from_spec({"name": "rotate_secret", "strategy": "database_first", "window_seconds": 0})
    run(fault, target, recorder)
    assert steps(recorder) == ["setSecret", "finishSecret"]
    assert current(aws, "db/solo")["password"] == target.database["solo"] != "solo-1"


def test_a_failed_test_step_leaves_awscurrent_alone_and_fails_the_fault(aws):
    target, recorder = RotatingTarget(), Recorder()
    target.refuse_tests = True
    fault = fault_from_spec({"name": "rotate_secret", "window_seconds": 0})
    fault.prepare(target)
    fault.start(target, recorder)
    assert fault.wait(30)
    with pytest.raises(FaultError, match="password authentication failed"):
        fault.stop()
    assert steps(recorder) == ["createSecret", "setSecret"]
    assert current(aws, "db/solo") == {"username": "solo", "password": "solo-1"}
    assert fault.current_login().generation == "old"
    (window,) = recorder.history().fault_windows("rotate_secret")
    assert "error" in window.end_op.params


def test_a_target_that_cannot_rotate_is_unsupported_and_nothing_is_recorded():
    recorder = Recorder()
    target = RotatingTarget(capabilities=set(Capability) - {Capability.ROTATE_SECRET})
    with pytest.raises(Unsupported):
        fault_from_spec({"name": "rotate_secret"}).start(target, recorder)
    assert len(recorder.history()) == 0


@pytest.mark.parametrize(("spec", "message"), [
    ({"strategy": "both"}, "strategy must be one of"),
    ({"window_seconds": -1}, "window_seconds must be a number"),
    ({"password": "x"}, "unknown parameter"),
])
def test_bad_rotation_specs_are_refused(spec, message):
    with pytest.raises(FaultError, match=message):
        fault_from_spec({"name": "rotate_secret", **spec})


def test_the_database_change_is_seen_as_soon_as_set_secret_ran(aws):
    target, recorder = RotatingTarget(), Recorder()
    fault = fault_from_spec({"name": "rotate_secret", "window_seconds": 0.5})
    fault.prepare(target)
    assert fault.steps_observed
    fault.start(target, recorder)
    assert fault.wait_database_changed(30)
    assert target.database["solo"] != "solo-1" and "setSecret" in steps(recorder)
    assert fault.wait(30)
    fault.stop()


def test_a_rotation_that_failed_before_set_secret_is_not_waited_for(aws):
    target, recorder = RotatingTarget(), Recorder()
    fault = fault_from_spec({"name": "rotate_secret", "window_seconds": 0})
    fault.prepare(target)
    aws.delete_secret(SecretId="db/solo", ForceDeleteWithoutRecovery=True)  # the first step cannot read it
    fault.start(target, recorder)
    assert not fault.wait_database_changed(30)
    with pytest.raises(FaultError):
        fault.stop()
