"""MariaDB server processes of the stand-in: bootstrap a seed, copy it, start, wait, stop.

Everything here deals with files and servers, through the cluster's runtime; nothing speaks SQL
except the readiness probe the caller passes in.  Servers run as the ``mysql`` account when we are
root (MariaDB refuses root).  Each instance directory holds the data directory, the option file,
the socket, the pid file and the log.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Sequence

from harness import process
from harness.standins.base import Instance, PortInUse, StartFailed
from harness.standins.mysql import options as opts
from harness.standins.runtime import ServerLayout, ServerRuntime

SERVICE_USER = "mysql"
PACKAGE = "mariadb-server"
BASE_PREFIX = f"{process.SCRATCH_PREFIX}my-"
INSTALL_TIMEOUT = 120.0
log = logging.getLogger(__name__)
BINARIES = ("mariadbd", "mariadb-install-db")


def layout(search_dirs: Sequence[str]) -> ServerLayout:
    """How MariaDB servers are laid out: ``instance-N/{data,my.cnf,mysqld.pid,server.log}``; mariadbd
    is started with only ``--defaults-file=.../my.cnf`` and sizes its caches by our descriptor limit."""
    return ServerLayout(home_prefix=BASE_PREFIX, service_account=SERVICE_USER, package=PACKAGE,
                        search_dirs=tuple(search_dirs), log_name="server.log",
                        pid_file=os.path.basename(opts.pid_file_path("")),
                        command_mark=os.path.basename(opts.option_file_path("")),
                        instance_dir_mode=0o755, many_files=True)


def bootstrap_seed(runtime: ServerRuntime, install_db: str, seed_dir: str, sql: str) -> None:
    """Create the seed data directory with ``mariadb-install-db``, running ``sql`` (accounts and
    database) in the same bootstrap.  StartFailed with the tool's own error lines if it fails.

    A bootstrap that fails is tried once more on an empty directory: on a machine running many
    stand-ins at once, the bootstrap's server has been seen to exit 1 with nothing but the tool's
    generic advice in the tail of its output; the first failure's error lines are logged."""
    for attempt in (1, 2):
        failure = _bootstrap_once(runtime, install_db, seed_dir, sql)
        if failure is None:
            return
        if attempt == 1:
            log.warning("mariadb-install-db failed, trying once more: %s", failure)
            runtime.remove(seed_dir)
    raise StartFailed(f"mariadb-install-db failed twice; {failure}")


def _bootstrap_once(runtime: ServerRuntime, install_db: str, seed_dir: str, sql: str) -> str | None:
    """One bootstrap; None when it worked, else why not (exit status and the output's error lines, or
    its last lines when it has none)."""
    cnf = os.path.join(runtime.home, "seed.cnf")
    sql_path = os.path.join(runtime.home, "seed.sql")
    log_path = os.path.join(runtime.home, "install-db.log")
    runtime.write_file(cnf, opts.render_seed(seed_dir), mode=0o644)
    runtime.write_file(sql_path, sql, mode=0o600)
    argv = [install_db, f"--defaults-file={cnf}", "--auth-root-authentication-method=normal",
            "--skip-test-db", f"--extra-file={sql_path}", f"--datadir={seed_dir}"]
    try:
        rc = runtime.run_logged(argv, log_path, timeout=INSTALL_TIMEOUT)
    finally:
        os.remove(sql_path)  # it holds passwords
    output = process.log_tail(log_path, lines=400)
    os.remove(log_path)  # it echoes the seed's statements, passwords included (0600 while it exists)
    if rc == 0:
        return None
    # Everything from a line's first quote on is hidden: an SQL error quotes its statement, and the
    # seed's statements hold passwords.
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line or "rror:" in line] or lines
    reason = "timed out" if rc is None else f"exit {rc}"
    return f"{reason}; its output: " + " | ".join(re.sub(r"'.*", "'...", line) for line in errors[-8:])


def copy_seed(runtime: ServerRuntime, seed_dir: str, inst: Instance) -> None:
    """Replace the instance's data directory with a copy of the seed (owned by the service account)."""
    runtime.make_dir(runtime.instance_dir(inst.id), 0o755)
    data_dir = runtime.data_dir(inst.id)
    runtime.remove(data_dir)
    runtime.run_tool(["cp", "-a", seed_dir, data_dir], timeout=INSTALL_TIMEOUT)


def launch(runtime: ServerRuntime, mariadbd: str, inst: Instance, options: opts.InstanceOptions) -> None:
    """Write the option file (and the character-set index it names) and start mariadbd with only
    it (no wait)."""
    instance_dir = runtime.instance_dir(inst.id)
    charsets = opts.charsets_dir_path(instance_dir)
    runtime.make_dir(charsets, 0o755)
    runtime.write_file(f"{charsets}/Index.xml", opts.MYSQL8_COLLATIONS_INDEX, mode=0o644)
    cnf = opts.option_file_path(instance_dir)
    runtime.write_file(cnf, opts.render_instance(options), mode=0o644)
    runtime.start(inst.id, [mariadbd, f"--defaults-file={cnf}"], port=inst.port)


def await_ready(runtime: ServerRuntime, inst: Instance, probe: Callable[[], bool], timeout: float) -> None:
    """Poll ``probe`` (a login attempt) until it succeeds; PortInUse or StartFailed with the log
    tail if the server exits or stays silent."""
    deadline = time.monotonic() + timeout
    while True:
        if not runtime.running(inst.id):
            tail = runtime.log_tail(inst.id)
            if "Address already in use" in tail or "Do you already have another" in tail:
                raise PortInUse(f"{inst.id}: port {inst.port} on {inst.host} is already in use; "
                                f"mariadbd log:\n{tail}")
            raise StartFailed(f"{inst.id}: mariadbd exited during start-up; log tail:\n{tail}")
        if process.port_open(inst.port) and probe():
            return
        if time.monotonic() >= deadline:
            raise StartFailed(f"{inst.id}: no connection within {timeout:.0f}s; log tail:\n"
                              f"{runtime.log_tail(inst.id)}")
        time.sleep(0.05)


def shut_down(runtime: ServerRuntime, inst: Instance, timeout: float = 15.0) -> None:
    """Graceful shutdown (SIGTERM), SIGKILL after ``timeout``; also stops a server that was started
    but never recorded (a start interrupted between spawn and bookkeeping), found by its pid file."""
    runtime.stop(inst.id, timeout=timeout)
