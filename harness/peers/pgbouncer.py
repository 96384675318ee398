"""PgBouncer as a peer: the benchmark baseline, and an external target in each of its pool modes.

The pool mode decides when PgBouncer hands a client's server connection to another client, and so
what certifying it must show (the modes' documented behaviour):

* ``transaction`` - at the end of every transaction, without tracking session state, so a ``SET``
  made by one client can be seen by another: the harness's proof that the isolation checker catches
  a real violation.
* ``session`` - only when the client disconnects (after ``server_reset_query``): nothing leaks, but
  every connected client holds a server connection, so ``pool_size`` clients at most are served at
  once and the rest wait.
* ``statement`` - after every statement, so a transaction of more than one statement is refused
  ("transaction blocks not allowed in statement pooling mode").

It runs as the ``postgres`` account (it refuses root), in the foreground of its own session, with
its configuration in a temporary directory that is removed on stop.
"""

from __future__ import annotations

from harness import process
from harness.peers.base import Peer
from harness.standins.base import ConnectionParams

OWNER = "postgres"
POOL_MODES = ("session", "transaction", "statement")


class PgBouncer(Peer):
    """One PgBouncer in front of one PostgreSQL instance, in ``pool_mode`` with at most ``pool_size``
    server connections; a context manager."""

    binary = "pgbouncer"
    debian_package = "pgbouncer"
    owner = OWNER

    def __init__(self, upstream: ConnectionParams, *, pool_mode: str = "transaction", pool_size: int = 20,
                 max_client_conn: int = 10000, port: int | None = None) -> None:
        if pool_mode not in POOL_MODES:
            raise ValueError(f"pool_mode must be one of {', '.join(POOL_MODES)}, not {pool_mode!r}")
        super().__init__(upstream, port=port)
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.max_client_conn = max_client_conn

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

    def _arguments(self, fd_limit: int) -> list[str]:
        u = self.upstream
        self._write("userlist.txt", f'"{u.user}" "{u.password}"\n', private=True)
        return [self._write("pgbouncer.ini", self._config())]
