"""The MariaDB seed bootstrap on a fake runtime: one failure is tried again on an empty directory, two
are reported with the tool's error lines, whose quoted text (statements with passwords) is hidden."""

from __future__ import annotations

import os

import pytest

from harness.standins.base import StartFailed
from harness.standins.mysql import server


class FakeRuntime:
    def __init__(self, home: str, outcomes: list[int]) -> None:
        self.home, self.outcomes, self.removed, self.runs = home, outcomes, [], 0

    def write_file(self, path: str, text: str, mode: int) -> None:
        with open(path, "w") as fh:
            fh.write(text)

    def run_logged(self, argv, log_path: str, *, timeout: float) -> int:
        self.runs += 1
        rc = self.outcomes.pop(0)
        with open(log_path, "w") as fh:
            fh.write("Installing MariaDB/MySQL system tables ...\n")
            if rc:
                fh.write("2026-12-02 [ERROR] InnoDB: cannot start, near 'IDENTIFIED BY 'hunter2''\n")
                fh.write("Installation of system tables failed!\n")
        return rc

    def remove(self, path: str) -> None:
        self.removed.append(path)


def test_a_failed_bootstrap_is_tried_once_more_on_an_empty_directory(tmp_path) -> None:
    runtime = FakeRuntime(str(tmp_path), [1, 0])
    server.bootstrap_seed(runtime, "mariadb-install-db", str(tmp_path / "seed"), "CREATE USER ...")
    assert runtime.runs == 2 and runtime.removed == [str(tmp_path / "seed")]
    assert not [n for n in os.listdir(tmp_path) if n.endswith((".log", ".sql"))], "no log or SQL file is left"


def test_two_failures_say_why_without_the_quoted_text(tmp_path) -> None:
    runtime = FakeRuntime(str(tmp_path), [1, 1])
    with pytest.raises(StartFailed) as failed:
        server.bootstrap_seed(runtime, "mariadb-install-db", str(tmp_path / "seed"), "CREATE USER ...")
    message = str(failed.value)
    assert "failed twice" in message and "exit 1" in message and "[ERROR] InnoDB: cannot start" in message
    assert "hunter2" not in message
