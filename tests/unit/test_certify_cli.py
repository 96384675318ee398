"""``aurora-harness certify`` refuses bad input before starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.cli.certify import child_env, pytest_command
from harness.targets.base import TargetOptions


@pytest.mark.parametrize(("args", "message"), [
    (["--target", "reference", "--engine", "oracle"], "Invalid value for '--engine'"),
    (["--target", "external"], "needs --writer-dsn"),
    (["--target", "reference", "--writer-dsn", "host=127.0.0.1 user=x"], "are for --target external"),
    (["--target", "nowhere"], "Invalid value for '--target'"),
    (["--target", "reference", "--proxy-setting", "endpoints.port=1"], "only the pool and testing"),
])
def test_bad_options_are_refused_with_a_reason(args, message):
    result = CliRunner().invoke(cli, ["certify", *args])
    assert result.exit_code == 2  # usage and configuration: the run cannot be carried out
    assert message in result.output


def test_a_bad_thresholds_file_is_refused(tmp_path):
    bad = tmp_path / "t.json"
    bad.write_text('{"NO-SUCH-GUARANTEE": 1}')
    result = CliRunner().invoke(cli, ["certify", "--target", "reference", "--thresholds", str(bad)])
    assert result.exit_code == 2 and "NO-SUCH-GUARANTEE" in result.output


def test_a_used_run_directory_is_refused(tmp_path):
    (tmp_path / "old").write_text("x")
    result = CliRunner().invoke(cli, ["certify", "--target", "reference", "--run-dir", str(tmp_path)])
    assert result.exit_code == 2 and "not empty" in result.output


def test_strict_and_allow_unknown_contradict():
    result = CliRunner().invoke(cli, ["certify", "--target", "reference", "--strict", "--allow-unknown"])
    assert result.exit_code == 2 and "contradict" in result.output


def test_proxy_settings_travel_to_the_suites_run():
    options = TargetOptions("mysql", proxy_settings=("testing.failpoint=leak_session_state",))
    cmd = pytest_command(target="reference", options=options, profile="quick", run_dir=Path("run"),
                         ini=Path("pytest.ini"), seed=1)
    assert cmd[cmd.index("--proxy-setting") + 1] == "testing.failpoint=leak_session_state"
    assert cmd[cmd.index("--engine") + 1] == "mysql"


def test_dsns_travel_in_the_environment_and_never_on_the_command_line():
    options = TargetOptions("postgres", writer_dsn="host=w user=u password=hunter22",
                            reader_dsns=("host=r1 user=u password=hunter22", "host=r2 user=u password=hunter22"),
                            metrics_url="http://127.0.0.1:9/metrics")
    cmd = pytest_command(target="external", options=options, profile="quick", run_dir=Path("run"),
                         ini=Path("pytest.ini"), seed=1)
    assert not any("hunter22" in part for part in cmd)
    assert cmd[cmd.index("--metrics-url") + 1] == "http://127.0.0.1:9/metrics"
    env = child_env(options)
    assert env["AURORA_HARNESS_WRITER_DSN"] == options.writer_dsn
    assert env["AURORA_HARNESS_READER_DSNS"].splitlines() == list(options.reader_dsns)


def test_a_parents_dsns_do_not_leak_into_a_child_run(monkeypatch):
    monkeypatch.setenv("AURORA_HARNESS_READER_DSNS", "host=stale user=u")
    assert "AURORA_HARNESS_READER_DSNS" not in child_env(TargetOptions("postgres"))


def test_the_command_line_reaches_the_run_with_its_passwords_masked(tmp_path, monkeypatch):
    from harness.cli.certify import masked_command_line
    from harness.plugin.run import HarnessRun
    from harness.pytest_plugin import COMMAND_ENV
    from harness.runstore import RunStore

    argv = ["certify", "--target", "external", "--writer-dsn", "host=w user=u password=hunter22 dbname=app"]
    line = masked_command_line(argv, ["hunter22"])
    assert line == "aurora-harness certify --target external --writer-dsn 'host=w user=u password=*** dbname=app'"
    monkeypatch.setenv(COMMAND_ENV, "stale from a parent run")
    assert child_env(TargetOptions("postgres"), command=line)[COMMAND_ENV] == line
    assert COMMAND_ENV not in child_env(TargetOptions("postgres"))
    # The run masks it again with the passwords it learns later (a rotation's new one).
    run = HarnessRun(RunStore.create(tmp_path / "run", target="external", engine="postgres"),
                     target="external", engine="postgres", profile="quick")
    run.command, run.secrets = "aurora-harness certify --writer-dsn 'password=rotated-pw-9'", ["rotated-pw-9"]
    assert run.results()["run"]["command"] == "aurora-harness certify --writer-dsn 'password=***'"
