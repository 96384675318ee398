"""MariaDB server processes of the stand-in: bootstrap a seed, copy it, start, wait, stop.

Everything here deals with files and processes; nothing speaks SQL except the readiness probe the
caller passes in.  Servers run as the ``mysql`` account when we are root (MariaDB refuses root),
each in its own session so it outlives the process that started it (see
:mod:`harness.standins.process`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence

from harness.standins import mysql_options as opts
from harness.standins import process
from harness.standins.base import Instance, PortInUse, StartFailed

SERVICE_USER = "mysql"
INSTALL_TIMEOUT = 120.0


def instance_dir(inst: Instance) -> str:
    """The directory holding an instance's data directory, option file, socket, pid file and log."""
    return os.path.dirname(inst.data_dir)


def write_owned_file(path: str, text: str, mode: int = 0o644) -> None:
    """Write a file the service account owns (it must read option files; SQL files are 0600)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, mode)
    if os.geteuid() == 0:
        os.chown(path, *process.service_user(SERVICE_USER))


def bootstrap_seed(install_db: str, base_dir: str, seed_dir: str, sql: str) -> None:
    """Create the seed data directory with ``mariadb-install-db``, running ``sql`` (accounts and
    database) in the same bootstrap.  StartFailed with the tool's output if it fails."""
    cnf = os.path.join(base_dir, "seed.cnf")
    sql_path = os.path.join(base_dir, "seed.sql")
    log = os.path.join(base_dir, "install-db.log")
    write_owned_file(cnf, opts.render_seed(seed_dir))
    write_owned_file(sql_path, sql, mode=0o600)
    argv = [install_db, f"--defaults-file={cnf}", "--auth-root-authentication-method=normal",
            "--skip-test-db", f"--extra-file={sql_path}", f"--datadir={seed_dir}"]
    try:
        rc = run_in_own_group(argv, log, timeout=INSTALL_TIMEOUT)
    finally:
        os.remove(sql_path)  # it holds passwords
    if rc != 0:
        reason = "timed out" if rc is None else f"exit {rc}"
        raise StartFailed(f"mariadb-install-db failed ({reason}); output tail:\n{process.log_tail(log)}")


def copy_seed(seed_dir: str, inst: Instance) -> None:
    """Replace the instance's data directory with a copy of the seed (owned by the service account)."""
    process.make_owned_dir(instance_dir(inst), SERVICE_USER, 0o755)
    process.remove_tree(inst.data_dir)
    process.run(["cp", "-a", seed_dir, inst.data_dir], owner=SERVICE_USER, timeout=INSTALL_TIMEOUT)


def launch(mariadbd: str, inst: Instance, options: opts.InstanceOptions) -> None:
    """Write the option file and start mariadbd with only it (no wait); records pid and start time."""
    cnf = opts.option_file_path(instance_dir(inst))
    write_owned_file(cnf, opts.render_instance(options))
    process.check_port_free(inst.port)
    process.raise_fd_limit()  # inherited: mariadbd sizes max_connections and table cache by it
    inst.pid, inst.pid_start_time = process.spawn([mariadbd, f"--defaults-file={cnf}"],
                                                  log_path=inst.log_path, owner=SERVICE_USER)


def await_ready(inst: Instance, probe: Callable[[], bool], timeout: float) -> None:
    """Poll ``probe`` (a login attempt) until it succeeds; PortInUse or StartFailed with the log
    tail if the server exits or stays silent."""
    deadline = time.monotonic() + timeout
    while True:
        if not process.pid_alive(inst.pid, inst.pid_start_time):
            tail = process.log_tail(inst.log_path)
            if "Address already in use" in tail or "Do you already have another" in tail:
                raise PortInUse(f"{inst.id}: port {inst.port} on {inst.host} is already in use; "
                                f"mariadbd log:\n{tail}")
            raise StartFailed(f"{inst.id}: mariadbd exited during start-up; log tail:\n{tail}")
        if process.port_open(inst.port) and probe():
            return
        if time.monotonic() >= deadline:
            raise StartFailed(f"{inst.id}: no connection within {timeout:.0f}s; log tail:\n"
                              f"{process.log_tail(inst.log_path)}")
        time.sleep(0.05)


def shut_down(inst: Instance, timeout: float = 15.0) -> None:
    """Graceful shutdown (SIGTERM), SIGKILL after ``timeout``.  Also stops a server whose pid was
    never recorded (a start interrupted between spawn and bookkeeping) through its pid file."""
    process.terminate(inst.pid, inst.pid_start_time, timeout=timeout)
    stray = _pid_from_file(inst)
    if stray:
        process.terminate(stray, None, timeout=timeout)
    inst.pid = inst.pid_start_time = None


def _pid_from_file(inst: Instance) -> int | None:
    """The pid in the instance's pid file, if that process is a mariadbd of this instance."""
    directory = instance_dir(inst)
    try:
        with open(opts.pid_file_path(directory), encoding="ascii") as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if opts.option_file_path(directory) in cmdline else None


def run_in_own_group(argv: Sequence[str], log_path: str, *, timeout: float) -> int | None:
    """Run a tool that starts children of its own (install-db runs ``mariadbd --bootstrap``) in a
    new process group as the service account; kill the whole group if it overruns (returns None)
    or we are interrupted (re-raises)."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, cwd="/", start_new_session=True,
                                **process._demote(SERVICE_USER))
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return None
    except BaseException:
        _kill_group(proc)
        raise


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
