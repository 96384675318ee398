"""PostgreSQL server lifecycle for the stand-in: create a data directory, start, wait, stop.

This module knows one server at a time and nothing about replication: ``initdb`` and the
configuration of a new writer, starting a postmaster through the cluster's runtime and waiting
until it accepts connections, fast shutdown, and the error a failed start deserves (the tail of
its log).  Replication control (:mod:`~harness.standins.postgres.replication`) and the cluster's
story (:mod:`~harness.standins.postgres.cluster`) are built on it.

Servers run as the ``postgres`` system account when we are root; control queries use psycopg over
TCP as the cluster user (a superuser: the proxy reads settings and runs ``DISCARD ALL``).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Sequence

import psycopg

from harness import process
from harness.standins.base import PROBE_PROGRAM_NAME, Instance, PortInUse, Role, StandinError, StartFailed
from harness.standins.postgres import conf
from harness.standins.postgres.control import ServerControl
from harness.standins.runtime import ServerLayout, ServerRuntime

PG_BIN_DIR = "/usr/lib/postgresql/15/bin"
#: application_name of the one-shot probes of :meth:`PostgresCluster.query_value` (the supervisor's
#: pings), which the suites tell apart from the proxy's backends.
PROBE_APPLICATION_NAME = PROBE_PROGRAM_NAME
PG_PACKAGE = "postgresql-15"
SERVICE_ACCOUNT = "postgres"
BASE_DIR_PREFIX = f"{process.SCRATCH_PREFIX}pg-"
BINARIES = ("initdb", "postgres", "pg_basebackup", "pg_rewind", "pg_controldata")

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


def layout(bin_dirs: Sequence[str]) -> ServerLayout:
    """How PostgreSQL servers are laid out: ``instance-N/data`` (PGDATA) and ``instance-N/postgres.log``;
    the postmaster writes its pid into ``data/postmaster.pid`` and is started with ``-D data``."""
    return ServerLayout(home_prefix=BASE_DIR_PREFIX, service_account=SERVICE_ACCOUNT, package=PG_PACKAGE,
                        search_dirs=tuple(bin_dirs), log_name="postgres.log",
                        pid_file="data/postmaster.pid", command_mark="data")


def tool_env(password: str | None = None) -> dict[str, str]:
    """Environment of the client tools: C locale (parsable output); the password, if any, in
    PGPASSWORD rather than on a command line that every local user can read."""
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANG": "C"}
    if password is not None:
        env["PGPASSWORD"] = password
    return env


class PostgresServers:
    """Start, stop and ask the PostgreSQL servers of one cluster, through its runtime."""

    def __init__(self, runtime: ServerRuntime, *, user: str, password: str, database: str,
                 max_connections: int) -> None:
        self.runtime = runtime
        self.user, self.password, self.database = user, password, database
        self.max_connections = max_connections
        #: Instances whose own max_connections differs from the cluster's (their "instance class").
        self.instance_max_connections: dict[str, int] = {}
        #: The writer's max_connections: a hot standby refuses to replay WAL from a primary whose
        #: max_connections exceeds its own, so a reader runs with at least this (see start()).
        self.writer_max_connections = max_connections

    def own_max_connections(self, inst: Instance) -> int:
        return self.instance_max_connections.get(inst.id, self.max_connections)

    def effective_max_connections(self, inst: Instance) -> int:
        """What the instance runs with: its own, lifted to the writer's for a reader."""
        own = self.own_max_connections(inst)
        return own if inst.role is Role.WRITER else max(own, self.writer_max_connections)

    @property
    def socket_dir(self) -> str:
        """Unix sockets of every instance (and their lock files) live in one directory of the cluster."""
        return os.path.join(self.runtime.home, "sockets")

    def create_home(self) -> None:
        self.runtime.create_home()
        self.runtime.make_dir(self.socket_dir, 0o755)

    def preflight(self) -> None:
        """BinaryMissing naming the package, before anything is created."""
        self.runtime.preflight(BINARIES)

    def control(self, inst: Instance) -> ServerControl:
        return ServerControl(inst.host, inst.port, self.user, self.password, self.database)

    # -- data directories ------------------------------------------------------------------------
    def initdb(self, writer: Instance) -> None:
        """A new data directory for the first writer, with the cluster's user, settings and access rules."""
        data_dir = self.runtime.data_dir(writer.id)
        pwfile = os.path.join(self.runtime.home, "initdb-password")
        self.runtime.write_file(pwfile, self.password + "\n")
        try:
            self.runtime.run_tool([self.runtime.binary("initdb"), "-D", data_dir, "-U", self.user,
                                   f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8",
                                   "--locale=C", "--no-sync", "--no-instructions"], env=tool_env())
        except StandinError as e:
            raise StartFailed(f"initdb failed for {writer.id}: {e}") from None
        finally:
            with contextlib.suppress(OSError):
                os.remove(pwfile)
        with open(os.path.join(data_dir, "postgresql.conf"), "a") as f:
            f.write(conf.server_conf(self.socket_dir, self.max_connections))
        self.runtime.write_file(os.path.join(data_dir, "pg_hba.conf"), conf.hba_conf(self.user))

    def checkpoint_state(self, inst: Instance) -> tuple[str | None, int | None]:
        """(cluster state, latest checkpoint LSN) from a stopped server's control file; (None, None)
        if it cannot be read."""
        try:
            out = self.runtime.run_tool([self.runtime.binary("pg_controldata"), "-D",
                                         self.runtime.data_dir(inst.id)], env=tool_env())
        except StandinError:
            return None, None
        return conf.checkpoint_lsn_from_controldata(out)

    # -- processes -------------------------------------------------------------------------------
    def start(self, inst: Instance) -> None:
        """Start the instance's postmaster and wait until it accepts connections.

        A postmaster killed earlier may have left ``postmaster.pid`` and its socket's lock file
        behind (it stays a zombie until whoever started it reaps it); those are cleared first.
        """
        wanted = self.effective_max_connections(inst)
        argv = conf.server_argv(self.runtime.binary("postgres"), self.runtime.data_dir(inst.id),
                                inst.port, inst.id, None if wanted == self.max_connections else wanted)
        self.runtime.start(inst.id, argv, port=inst.port, stale_locks=[
            os.path.join(self.runtime.data_dir(inst.id), "postmaster.pid"),
            os.path.join(self.socket_dir, f".s.PGSQL.{inst.port}.lock")])
        self.wait_accepting(inst)

    def wait_accepting(self, inst: Instance, timeout: float = START_TIMEOUT) -> None:
        errors: list[str] = []

        def ready() -> bool:
            if not self.runtime.running(inst.id):
                raise self.start_failure(inst, "exited during startup")
            try:  # "postgres" always exists; the cluster's database may not yet
                with self.control(inst).connect(dbname="postgres"):
                    return True
            except psycopg.Error as e:
                errors[:] = [str(e).strip()]
                return False

        if not process.wait_until(ready, timeout, interval=0.05):
            raise self.start_failure(inst, f"did not accept connections within {timeout:.0f}s "
                                           f"(last error: {errors[0] if errors else 'none'})")

    def start_failure(self, inst: Instance, what: str) -> StandinError:
        tail = self.runtime.log_tail(inst.id)
        if "Address already in use" in tail:
            return PortInUse(f"{inst.id} could not listen on {inst.host}:{inst.port}: "
                             f"address already in use\n{tail}")
        return StartFailed(f"{inst.id} (port {inst.port}) {what}; last lines of "
                           f"{self.runtime.log_path(inst.id)}:\n{tail}")

    def stop(self, inst: Instance) -> None:
        """Fast shutdown (SIGINT), SIGKILL if it hangs."""
        self.runtime.stop(inst.id, sig=signal.SIGINT, timeout=STOP_TIMEOUT)

    def stop_all(self, instances: Sequence[Instance]) -> None:
        """Fast-shut down every instance at once, SIGKILL stragglers."""
        self.runtime.stop_all([i.id for i in instances], sig=signal.SIGINT, timeout=STOP_TIMEOUT)
