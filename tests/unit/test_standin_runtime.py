"""The stand-ins' seams without a server: the engine registry, the runtime's records and files,
and the process toolkit's helpers that decide which process is whose."""

from __future__ import annotations

import os

import pytest

from harness import process
from harness.standins.base import BinaryMissing, Instance, PortInUse, Role, StandinError
from harness.standins.mysql.cluster import MySQLCluster
from harness.standins.postgres.cluster import PostgresCluster
from harness.standins.registry import cluster_class, cluster_from_state, engine_names
from harness.standins.runtime import (
    ProcessRuntime,
    ServerLayout,
    ServerRecord,
    clear_stale_lock,
    standin_errors,
)

NO_SUCH_PID = 99_999_999  # above the kernel's largest pid_max


def layout() -> ServerLayout:
    """A layout that needs no service account, so the runtime works in a unit test."""
    return ServerLayout(home_prefix="aurora-harness-unit-", service_account="", package="pkg",
                        search_dirs=("/nonexistent",), log_name="server.log", pid_file="server.pid",
                        command_mark="data")


def test_registry_lists_each_engine_once_and_names_the_choices_when_asked_for_another():
    assert engine_names() == ["postgres", "mysql"]
    assert cluster_class("postgres") is PostgresCluster and cluster_class("mysql") is MySQLCluster
    with pytest.raises(StandinError, match="'postgres' or 'mysql'"):
        cluster_class("oracle")


@pytest.mark.parametrize("cls", [PostgresCluster, MySQLCluster])
def test_cluster_record_keeps_the_runtime_fields_in_each_instance_entry(cls):
    cluster = cls(readers=0)
    cluster.instances = [Instance("instance-1", Role.WRITER, "127.0.0.1", 5432)]
    cluster.runtime.records["instance-1"] = ServerRecord("/h/instance-1/data", "/h/instance-1/x.log",
                                                         pid=NO_SUCH_PID, pid_start_time=7)
    state = cluster.to_state()
    assert state["instances"] == [{"id": "instance-1", "role": "writer", "host": "127.0.0.1", "port": 5432,
                                   "data_dir": "/h/instance-1/data", "log_path": "/h/instance-1/x.log",
                                   "pid": NO_SUCH_PID, "pid_start_time": 7}]
    rebuilt = cluster_from_state(state)
    assert type(rebuilt) is cls and rebuilt.instances == cluster.instances
    assert rebuilt.runtime.records == cluster.runtime.records
    assert rebuilt.runtime.data_dir("instance-1") == "/h/instance-1/data"
    assert not rebuilt.running("instance-1")  # that pid cannot exist


def test_runtime_places_and_forgets_instances_under_its_home():
    runtime = ProcessRuntime(layout())
    home = runtime.create_home()
    try:
        assert os.path.basename(home).startswith("aurora-harness-unit-")
        runtime.place("instance-1")
        assert runtime.instance_dir("instance-1") == os.path.join(home, "instance-1")
        assert runtime.data_dir("instance-1") == os.path.join(home, "instance-1", "data")
        assert runtime.log_path("instance-1") == os.path.join(home, "instance-1", "server.log")
        assert os.path.isdir(runtime.instance_dir("instance-1"))
        assert not runtime.running("instance-1")
        runtime.forget("instance-1")
        assert not os.path.exists(os.path.join(home, "instance-1"))
        with pytest.raises(StandinError, match="no record of instance-1"):
            runtime.data_dir("instance-1")
    finally:
        runtime.remove_home()
    assert not os.path.exists(home)


def test_runtime_removes_only_a_home_it_could_have_made(tmp_path):
    runtime = ProcessRuntime(layout(), home=str(tmp_path))
    runtime.remove_home()
    assert tmp_path.exists()


def test_runtime_reports_a_missing_binary_as_a_stand_in_error():
    with pytest.raises(BinaryMissing, match="apt-get install pkg"):
        ProcessRuntime(layout()).binary("surely-not-installed-anywhere")


def test_process_errors_become_stand_in_errors():
    with pytest.raises(BinaryMissing), standin_errors():
        raise process.ExecutableMissing("x")
    with pytest.raises(PortInUse), standin_errors():
        raise process.PortTaken("x")
    with pytest.raises(StandinError, match="boom"), standin_errors():
        raise process.CommandFailed("boom")


def test_pid_file_names_a_process_only_when_its_command_line_carries_the_mark(tmp_path):
    with open("/proc/self/cmdline", "rb") as f:
        first_argument = f.read().split(b"\0")[0].decode()
    pid_file = tmp_path / "server.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    assert process.pid_from_file(str(pid_file), first_argument) == os.getpid()
    assert process.pid_from_file(str(pid_file), "/not/among/our/arguments") is None
    pid_file.write_text(f"{NO_SUCH_PID}\n")
    assert process.pid_from_file(str(pid_file), first_argument) is None
    assert process.pid_from_file(str(tmp_path / "missing.pid"), first_argument) is None


def test_a_lock_naming_a_dead_process_is_cleared_and_a_live_one_is_kept(tmp_path):
    dead, live, unreadable = tmp_path / "dead.lock", tmp_path / "live.lock", tmp_path / "bad.lock"
    dead.write_text(f"{NO_SUCH_PID}\n")
    live.write_text(f"{os.getpid()}\n")
    unreadable.write_text("not a pid\n")
    for lock in (dead, live, unreadable, tmp_path / "missing.lock"):
        clear_stale_lock(str(lock))
    assert not dead.exists() and live.exists() and unreadable.exists()
