"""PgBouncer as a peer: the benchmark baseline, and a known-leaky external target.

In transaction mode PgBouncer hands a server connection to whichever client starts the next
transaction, without tracking session state, so a ``SET`` made by one client can be seen by another.
That makes it the harness's proof that the isolation checker catches a real violation.
It runs as the ``postgres`` account (it refuses root), in the foreground of its own session, with
its configuration in a temporary directory that is removed on stop.
"""

from __future__ import annotations

import os
from typing import Self

from harness import process
from harness.standins.base import ConnectionParams, StartFailed
from harness.standins.runtime import standin_errors

OWNER = "postgres"


class PgBouncer:
    """One PgBouncer in front of one PostgreSQL instance; a context manager."""

    def __init__(self, upstream: ConnectionParams, *, pool_mode: str = "transaction", pool_size: int = 20,
                 max_client_conn: int = 10000, port: int | None = None) -> None:
        self.upstream = upstream
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.max_client_conn = max_client_conn
        self.port = port
        self.base_dir: str | None = None
        self.pid: int | None = None
        self.pid_start: int | None = None

    @property
    def params(self) -> ConnectionParams:
        """How clients reach the upstream database through PgBouncer (same credentials)."""
        assert self.port is not None
        return ConnectionParams(process.LOOPBACK, self.port, self.upstream.user, self.upstream.password,
                                self.upstream.database)

    def _config(self) -> str:
        u = self.upstream
        return "\n".join([
            "[databases]",
            f"{u.database} = host={u.host} port={u.port} dbname={u.database}",
            "[pgbouncer]",
            f"listen_addr = {process.LOOPBACK}",
            f"listen_port = {self.port}",
            f"unix_socket_dir = {self.base_dir}",
            "auth_type = scram-sha-256",
            f"auth_file = {self.base_dir}/userlist.txt",
            f"pool_mode = {self.pool_mode}",
            f"default_pool_size = {self.pool_size}",
            f"max_db_connections = {self.pool_size}",
            f"max_client_conn = {self.max_client_conn}",
            "ignore_startup_parameters = extra_float_digits,options",
            "server_reset_query = DISCARD ALL",
            "log_connections = 0",
            "log_disconnections = 0",
            "",
        ])

    def start(self) -> None:
        """Start PgBouncer and wait until it listens; stand-in errors (BinaryMissing, PortInUse,
        StartFailed) say why not, like the stand-in servers it is measured against."""
        with standin_errors():
            self._start()

    def _start(self) -> None:
        binary = process.find_binary("pgbouncer", ["/usr/sbin", "/usr/bin"], "pgbouncer")
        self.port = self.port or process.free_port()
        process.check_port_free(self.port)
        self.base_dir = process.make_base_dir(f"{process.SCRATCH_PREFIX}pgbouncer-", OWNER)
        u = self.upstream
        with open(os.path.join(self.base_dir, "userlist.txt"), "w") as f:
            f.write(f'"{u.user}" "{u.password}"\n')
        ini = os.path.join(self.base_dir, "pgbouncer.ini")
        with open(ini, "w") as f:
            f.write(self._config())
        if os.geteuid() == 0:
            uid, gid = process.service_user(OWNER)
            for name in ("userlist.txt", "pgbouncer.ini"):
                os.chown(os.path.join(self.base_dir, name), uid, gid)
        log = os.path.join(self.base_dir, "pgbouncer.log")
        # Connection storms need many descriptors: pgbouncer inherits our soft limit, so raise it.
        process.raise_fd_limit()
        self.pid, self.pid_start = process.spawn([binary, ini], log_path=log, owner=OWNER)
        if not process.wait_until(lambda: process.port_open(self.port), 15):
            tail = process.log_tail(log)
            self.stop()
            raise StartFailed(f"pgbouncer did not listen on {self.port} within 15s:\n{tail}")

    def stop(self) -> None:
        with standin_errors():
            process.terminate(self.pid, self.pid_start, timeout=5)
        self.pid = None
        process.remove_tree(self.base_dir)
        self.base_dir = None

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

