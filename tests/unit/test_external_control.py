"""User-supplied control of an external target, without servers: the hook runner, the options that
give (or refuse) capabilities, the faults that run hooks, and how a failed hook is judged.

The hooks here are real shell commands (``/bin/sh -c``), run by the hook runner as a certification
runs them; no database is involved.
"""

from __future__ import annotations

import os
import sys
import time

import pytest

from harness.checkers import CheckContext, Validity
from harness.checkers.availability import FailoverWriteGapChecker
from harness.checkers.synthetic import HistoryBuilder
from harness.faults import failover as failover_fault
from harness.faults.base import FaultError
from harness.faults.registry import fault_from_spec
from harness.faults.rotation import RotateSecret
from harness.history import OpType, Phase, Recorder
from harness.plugin.faults import Faults
from harness.redaction import redact
from harness.targets import hooks, registry
from harness.targets.base import (
    Capability,
    ControlFailed,
    TargetError,
    TargetOptions,
    Unsupported,
    control_failure,
)
from harness.targets.external import ExternalTarget
from harness.targets.hooks import HookFailed, run_hook

WRITER_DSN = "host=127.0.0.1 port=1 user=app password=Writer-Secret-123 dbname=app"
READER_DSN = "host=127.0.0.1 port=2 user=ro password=Reader-Secret-456 dbname=app"


def external(**options) -> ExternalTarget:
    return registry.build_target("external", TargetOptions("postgres", writer_dsn=WRITER_DSN,
                                                           reader_dsns=(READER_DSN,), **options))


# -- the hook runner -------------------------------------------------------------------------------
def test_a_hook_that_exits_0_reports_its_status_duration_and_output():
    outcome = run_hook("failover", "echo promoting; echo done >&2")
    assert outcome.ok and outcome.exit_status == 0 and not outcome.timed_out
    assert outcome.output_tail.splitlines() == ["promoting", "done"]  # stderr kept with stdout
    assert outcome.duration_s >= 0
    assert outcome.as_event()["exit_status"] == 0 and outcome.as_event()["action"] == "failover"


def test_a_hook_that_exits_1_raises_with_its_status_and_last_line():
    with pytest.raises(HookFailed) as caught:
        run_hook("failover", "echo 'cannot reach the cluster'; exit 1")
    assert caught.value.outcome.exit_status == 1
    assert str(caught.value) == "the failover command failed with exit status 1: cannot reach the cluster"
    assert caught.value.details["exit_status"] == 1 and isinstance(caught.value, ControlFailed)


def test_a_hook_that_outlives_its_timeout_is_killed_with_its_children(tmp_path):
    marker = tmp_path / "child.pid"
    started = time.monotonic()
    with pytest.raises(HookFailed) as caught:
        run_hook("rotate", f"sleep 60 & echo $! > {marker}; wait", timeout=0.5)
    assert caught.value.outcome.timed_out and "did not finish within" in str(caught.value)
    assert time.monotonic() - started < 30  # the hook did not run its 60 s
    child = int(marker.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child), "the hook's child outlived the hook"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_output_kept_is_scrubbed_of_secrets_and_of_the_new_password():
    with pytest.raises(HookFailed) as caught:
        run_hook("rotate", 'echo "login app/Writer-Secret-123 -> $AURORA_HARNESS_NEW_PASSWORD"; exit 3',
                 wanted={hooks.NEW_PASSWORD_ENV: "Brand-New-Password-789"}, secrets=["Writer-Secret-123"])
    tail = caught.value.outcome.output_tail
    assert "Writer-Secret-123" not in tail and "Brand-New-Password-789" not in tail
    assert tail.strip() == "login app/*** -> ***" and "Brand-New" not in str(caught.value)


def test_what_is_wanted_travels_in_the_environment_and_never_on_a_command_line(tmp_path):
    seen = tmp_path / "seen"
    command = (f'echo "$AURORA_HARNESS_ACTION $AURORA_HARNESS_ROTATE_USER $AURORA_HARNESS_NEW_PASSWORD" > {seen}; '
               f'cat /proc/$$/cmdline | tr "\\0" " " >> {seen}')
    run_hook("rotate", command, wanted={hooks.ROTATE_USER_ENV: "app", hooks.NEW_PASSWORD_ENV: "Pw-In-Env-000"})
    first, cmdline = seen.read_text().splitlines()
    assert first == "rotate app Pw-In-Env-000"
    assert "Pw-In-Env-000" not in cmdline and cmdline.startswith("/bin/sh -c")


def test_the_output_tail_is_bounded():
    outcome = run_hook("failover", f"{sys.executable} -c \"print('x' * 100000)\"")
    assert len(outcome.output_tail) == hooks.OUTPUT_TAIL_CHARS


# -- options and capabilities ----------------------------------------------------------------------
def test_an_external_target_gains_a_capability_per_control_given():
    assert external().capabilities == frozenset()
    t = external(failover_command="true", rotate_command="true", iam_user="iam_app", iam_region="eu-west-1")
    assert {Capability.FAILOVER, Capability.ROTATE_SECRET, Capability.IAM_AUTH} <= t.capabilities
    access = t.iam_access()
    assert (access.user, access.host, access.port, access.region) == ("iam_app", "127.0.0.1", 1, "eu-west-1")
    assert access.access_key_id is None  # boto3's usual chain signs
    assert external(iam_user="u", iam_region="r", iam_host="db.example.com").iam_access().host == "db.example.com"


def test_the_rotated_login_defaults_to_the_writer_dsns_and_can_be_named():
    assert external(rotate_command="true").own_rotation_login().user == "app"
    named = external(rotate_command="true", rotate_dsn="host=x user=rotor password=Rotor-Secret-1 dbname=app")
    assert named.own_rotation_login().user == "rotor"
    assert "Rotor-Secret-1" in named.secret_texts()
    assert external().own_rotation_login() is None


def test_the_control_is_described_without_its_commands_or_passwords():
    t = external(failover_command="secret-tool --token=Hook-Token-42", rotate_command="true", hook_timeout=9.0,
                 iam_user="iam_app", iam_region="eu-west-1")
    control = t.describe()["control"]
    assert control["failover_command"] is True and control["hook_timeout_s"] == 9.0
    assert control["iam"] == {"user": "iam_app", "region": "eu-west-1", "host": None}
    assert "Hook-Token-42" not in repr(t.describe())


def test_the_region_comes_from_the_environment_when_not_given(monkeypatch):
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    assert external(iam_user="u").iam_access().region == "ap-south-1"
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    with pytest.raises(TargetError, match=r"--iam-user needs --iam-region"):
        external(iam_user="u")


@pytest.mark.parametrize(("options", "message"), [
    ({"rotate_dsn": WRITER_DSN}, "give --rotate-command too"),
    ({"iam_region": "eu-west-1"}, "give --iam-user too"),
    ({"iam_host": "h"}, "give --iam-user too"),
    ({"failover_command": "true", "hook_timeout": 0.0}, "--hook-timeout must be seconds"),
])
def test_incomplete_control_is_refused(options, message):
    with pytest.raises(TargetError, match=message):
        external(**options)


@pytest.mark.parametrize("options", [
    {"failover_command": "true"}, {"rotate_command": "true"}, {"rotate_dsn": WRITER_DSN}, {"hook_timeout": 5.0},
    {"iam_user": "u"}, {"iam_region": "r"}, {"iam_host": "h"},
])
def test_the_reference_target_refuses_every_hook_option(options):
    with pytest.raises(TargetError, match=r"for --target external; the reference target fails over"):
        registry.build_target("reference", TargetOptions("postgres", **options))


def test_hook_commands_travel_to_the_child_run_in_the_environment():
    argv, env = TargetOptions("postgres", writer_dsn=WRITER_DSN, failover_command="fo --key=K1",
                              rotate_command="rot", rotate_dsn=WRITER_DSN, hook_timeout=7.0,
                              iam_user="u").child_arguments()
    assert env["AURORA_HARNESS_FAILOVER_COMMAND"] == "fo --key=K1" and env["AURORA_HARNESS_ROTATE_COMMAND"] == "rot"
    assert env["AURORA_HARNESS_ROTATE_DSN"] == WRITER_DSN
    assert "fo --key=K1" not in argv and WRITER_DSN not in argv
    assert argv == ["--hook-timeout", "7.0", "--iam-user", "u"]


def test_an_iam_secret_key_is_redacted_in_a_kept_description():
    kept = redact({"iam": {"access_key_id": "AKID", "secret_access_key": "S3cr3t"}, "credentials": {"password": "p"}})
    assert kept == {"iam": {"access_key_id": "AKID", "secret_access_key": "(redacted)"},
                    "credentials": {"password": "(redacted)"}}


# -- failover through a hook -----------------------------------------------------------------------
def test_a_failover_command_runs_with_the_reader_asked_for_and_the_new_writer_is_watched_for(monkeypatch, tmp_path):
    seen = tmp_path / "to"
    t = external(failover_command=f'echo "$AURORA_HARNESS_ACTION:$AURORA_HARNESS_FAILOVER_TO" > {seen}')
    reports = iter([("i1", "writer"), ("i1", "writer"), ("i2", "reader"), ("i2", "writer")])
    monkeypatch.setattr(failover_fault, "writer_endpoint_reports", lambda target: next(reports))
    monkeypatch.setattr(failover_fault, "WATCH_INTERVAL_S", 0.0)
    with Recorder() as recorder:
        assert Faults(t, recorder).failover("i2") == "i2"
        history = recorder.history()
    assert seen.read_text().strip() == "failover:i2"
    start, end = history.faults("failover")
    assert start.params == {"to": "i2", "old_writer": "i1"}
    assert end.params["new_writer"] == "i2" and end.params["promotion_observed"] is False
    assert end.params["control"]["exit_status"] == 0
    assert not history.events("new_writer")  # the promotion instant was not seen


def test_a_failing_failover_command_ends_the_window_as_failed_and_raises_control_failed():
    t = external(failover_command="echo no credentials for the cluster; exit 1")
    with Recorder() as recorder:
        with pytest.raises(ControlFailed, match="exit status 1: no credentials for the cluster"):
            Faults(t, recorder).failover()
        end = recorder.history().faults("failover")[-1]
    assert end.phase is Phase.END and end.params["outcome"] == "failed"
    assert end.params["control"]["exit_status"] == 1 and end.params["new_writer"] is None


def test_the_failover_fault_wraps_a_failed_command_but_the_control_failure_is_still_found():
    t = external(failover_command="exit 4")
    fault = fault_from_spec({"name": "failover"})
    with Recorder() as recorder, pytest.raises(FaultError) as caught:
        fault.start(t, recorder)
    assert control_failure(caught.value) is not None and "exit status 4" in str(control_failure(caught.value))


def test_no_new_writer_within_the_deadline_is_a_control_failure_not_a_verdict(monkeypatch):
    t = external(failover_command="true")
    monkeypatch.setattr(failover_fault, "writer_endpoint_reports", lambda target: ("i1", "writer"))
    with pytest.raises(ControlFailed, match=r"still reported i1 \(writer\)"):
        failover_fault.watch_for_new_writer(t, "i1", deadline_s=0.2)


def test_an_unobserved_promotion_bounds_the_write_gap_by_the_writes_each_writer_took():
    ctx = CheckContext()

    def gap(old_until: float, new_from: float) -> tuple[Validity, float | None, str]:
        """Writes every 0.1 s: served by i1 until ``old_until``, refused until ``new_from``, then by i2."""
        b = HistoryBuilder().fault("failover", start=1.0, end=2.0, new_writer="i2", promotion_observed=False)
        for n in range(120):
            at = n / 10
            if at < old_until:
                b.op(f"w{n}", "write", n, at=at, endpoint="writer", node="i1")
            elif at < new_from:
                b.op(f"w{n}", "write", n, at=at, endpoint="writer", type="fail")
            else:
                b.op(f"w{n}", "write", n, at=at, endpoint="writer", node="i2")
        v = FailoverWriteGapChecker().check(b.history(), ctx)
        return v.valid, v.figure, v.reason

    # The old writer took writes until 3.0 s and the new one from 5.0 s: the gap is at most 2 s,
    # although the fault began at 1.0 s (a bound from the start would be 4 s).
    valid, figure, reason = gap(3.05, 5.0)
    assert valid is Validity.TRUE and figure == pytest.approx(2.01, abs=0.02) and "bounded from above" in reason
    # 6 s between the last write of one and the first of the other: the promotion may have come late
    # in it, so the gap is unknown, not false.
    valid, _, reason = gap(3.05, 9.0)
    assert valid is Validity.UNKNOWN and "could only be bounded by 6.0" in reason
    # No write reached the new writer at all: nothing bounds the gap.
    valid, _, reason = gap(3.05, 99.0)
    assert valid is Validity.UNKNOWN and "no write showed the new writer" in reason


# -- rotation through a hook -----------------------------------------------------------------------
def test_a_rotate_command_gets_the_new_password_and_the_target_then_logs_in_with_it(tmp_path):
    seen = tmp_path / "seen"
    t = external(rotate_command=f'echo "$AURORA_HARNESS_ROTATE_USER" > {seen}; '
                                f'test -n "$AURORA_HARNESS_NEW_PASSWORD"')
    rotation = RotateSecret(strategy="single_user", window_seconds=0.0)
    old = rotation.prepare(t)
    assert old.pair == ("app", "Writer-Secret-123")
    assert not rotation.steps_observed
    with Recorder() as recorder:
        rotation.start(t, recorder)
        assert not rotation.wait_database_changed(30)  # the command's setSecret is out of sight
        assert rotation.wait(30)
        rotation.stop()
        history = recorder.history()
    assert seen.read_text().strip() == "app"
    new_password = rotation.current_login().password
    assert new_password != "Writer-Secret-123"
    assert t.credentials.password == new_password and t.writer_endpoint.credentials.password == new_password
    assert t.reader_endpoints[0].credentials.password == "Reader-Secret-456"  # another user: untouched
    assert [e.value for e in history.events("rotation_step")] == ["finishSecret"]
    end = history.faults("rotate_secret")[-1].params
    assert end["unobserved_steps"] == ["createSecret", "setSecret", "testSecret"]
    assert end["control"]["exit_status"] == 0
    assert new_password not in repr(list(history)) and new_password in t.secret_texts()


def test_a_failing_rotate_command_fails_the_rotation_as_a_control_failure():
    t = external(rotate_command="echo secret store refused; exit 1")
    rotation = RotateSecret(strategy="single_user", window_seconds=0.0)
    rotation.prepare(t)
    with Recorder() as recorder:
        rotation.start(t, recorder)
        rotation.wait(30)
        with pytest.raises(FaultError) as caught:
            rotation.stop()
        end = recorder.history().faults("rotate_secret")[-1]
    assert "exit status 1: secret store refused" in str(control_failure(caught.value))
    assert end.params["outcome"] == "failed" and not any(o.type is OpType.EVENT for o in recorder.history())
    assert t.credentials.password == "Writer-Secret-123"


@pytest.mark.parametrize("strategy", ["alternating_users", "database_first"])
def test_a_rotate_command_is_asked_only_for_single_user_rotations(strategy):
    with pytest.raises(Unsupported, match="single-user rotations"):
        RotateSecret(strategy=strategy).prepare(external(rotate_command="true"))


def test_the_hook_environment_does_not_leak_into_the_harness():
    run_hook("rotate", "true", wanted={hooks.NEW_PASSWORD_ENV: "Never-Here-1"})
    assert hooks.NEW_PASSWORD_ENV not in os.environ


def test_a_rotation_by_command_is_judged_with_the_unobserved_finish_allowed_for():
    """finishSecret recorded at the command's end, which took 2 s: new-password logins failing until
    1 s after it are within the 5 s bound either way; until 4 s after it, only if the step came last."""
    from harness.checkers.rotation import FINISH_WITHIN_KEY, RotationNewLoginsChecker

    def judged(fail_after_finish: float) -> Validity:
        b = HistoryBuilder().fault("rotate_secret", start=1.0, end=3.01, strategy="single_user")
        b.event("rotation_step", "finishSecret", at=3.0, extra={FINISH_WITHIN_KEY: 2.0})
        t, n = 0.0, 0
        while t < 12.0:
            failed = 3.0 <= t < 3.0 + fail_after_finish
            b.op(f"n{n}", "connect", at=t, took=0.02, invoke_extra={"login": "new"},
                 type=OpType.FAIL if failed else OpType.OK)
            t, n = t + 0.25, n + 1
        return RotationNewLoginsChecker().check(b.history(), CheckContext()).valid

    assert judged(1.0) is Validity.TRUE
    assert judged(4.0) is Validity.UNKNOWN
    assert judged(6.0) is Validity.FALSE  # beyond the bound even from the recorded instant


def test_a_rotate_command_still_running_when_the_rotation_gives_up_is_a_control_failure():
    t = external(rotate_command="sleep 30", hook_timeout=6.0)
    rotation = RotateSecret(strategy="single_user", window_seconds=0.0, step_timeout=1.0)
    rotation.prepare(t)
    with Recorder() as recorder:
        rotation.start(t, recorder)
        with pytest.raises(FaultError, match="did not finish within 4 s") as caught:
            rotation.stop()
        assert "still running" in str(control_failure(caught.value))
        assert rotation.wait(30)  # the hook's own timeout ends the command
