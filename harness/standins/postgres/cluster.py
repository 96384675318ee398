"""PostgreSQL 15 stand-in cluster: one writer and N streaming-replication readers on 127.0.0.1.

How it imitates Aurora PostgreSQL closely enough for a proxy to be tested against it:

* Each instance's ``cluster_name`` is its instance id, and every database has
  ``aurora_db_instance_identifier()`` returning it, so a query can tell which instance served it.
  A reader's WAL receiver reports the same name as its ``application_name`` on the writer.
* Readers are hot standbys made with ``pg_basebackup`` and stream through a physical slot each.
  With ``synchronous=True`` a commit is acknowledged only once at least one reader has flushed it
  (``synchronous_standby_names = 'ANY 1 (...)'``), so promoting the most advanced reader after a
  failover loses no acknowledged commit.
* A failover fences the old writer (fast shutdown, SIGKILL if it hangs) *before* promoting, so
  there is never a moment with two writers; then it repoints the other readers and brings the
  old writer back as a reader with ``pg_rewind`` (or a fresh base backup when rewind fails).

This module tells that story; :mod:`~harness.standins.postgres.server` runs one server (initdb,
start, stop) and :mod:`~harness.standins.postgres.replication` does each replication step.  The
servers run through a :class:`~harness.standins.runtime.ProcessRuntime`, which keeps every file
under one base directory (removed by :meth:`PostgresCluster.stop`)::

    aurora-harness-pg-XXXX/
        sockets/                     unix sockets of all instances
        instance-1/data/             PGDATA
        instance-1/postgres.log      server output
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import secrets
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from harness import process
from harness.standins.base import (
    Cluster,
    Instance,
    ReaderStatus,
    Role,
    StandinError,
    Topology,
    check_reader_max_connections,
)
from harness.standins.postgres import conf
from harness.standins.postgres.replication import PostgresReplication
from harness.standins.postgres.server import PG_BIN_DIR, PROBE_APPLICATION_NAME, PostgresServers, layout
from harness.standins.runtime import ProcessRuntime

__all__ = ["PG_BIN_DIR", "PostgresCluster"]


class PostgresCluster(Cluster):
    """A PostgreSQL 15 writer plus ``readers`` hot standbys, started as local processes.

    Use it as a context manager (``with PostgresCluster(readers=2) as c: ...``) or call
    :meth:`start` / :meth:`stop`; both clean up everything on failure.  ``bin_dirs`` is where the
    server binaries are looked for first (then ``PATH``).

    Operations are not thread-safe: one caller drives a cluster (clients may of course use the
    servers from any thread).  A failover to a *named* reader after the writer crashed can lose
    commits that only another reader received, exactly as promoting a lagging replica would;
    without a target, or after a clean fence, the promoted reader holds every acknowledged commit.
    """

    engine = "postgres"
    writable_query = "SELECT NOT pg_is_in_recovery()"

    def __init__(self, readers: int = 2, *, user: str = "harness", password: str | None = None,
                 database: str = "harness", synchronous: bool = True, max_connections: int = 100,
                 reader_max_connections: Sequence[int] | None = None,
                 bin_dirs: Sequence[str] = (PG_BIN_DIR,)) -> None:
        if not isinstance(readers, int) or isinstance(readers, bool) or not 0 <= readers <= 15:
            raise StandinError(f"readers must be an integer from 0 to 15, not {readers!r}")
        if not isinstance(max_connections, int) or not 10 <= max_connections <= 10000:
            raise StandinError(f"max_connections must be an integer from 10 to 10000, "
                               f"not {max_connections!r}")
        reader_max = check_reader_max_connections(reader_max_connections, readers, 10, 10000)
        conf.validate_identifier("user", user)
        conf.validate_identifier("database", database)
        if user == conf.REPLICATION_USER:
            raise StandinError(f"user {user!r} is reserved for replication")
        password = conf.validate_password(password if password is not None
                                          else secrets.token_urlsafe(18))
        super().__init__(base_dir="", user=user, password=password, database=database)
        self.initial_readers = readers
        self.synchronous = synchronous
        self.max_connections = max_connections
        self.bin_dirs = list(bin_dirs)
        self.replication_password = secrets.token_urlsafe(18)
        self.next_number = 1
        self._build_runtime()
        self._initial_reader_max = reader_max

    def _build_runtime(self) -> None:
        self.runtime = ProcessRuntime(layout(self.bin_dirs), home=self.base_dir)
        self.servers = PostgresServers(self.runtime, user=self.user, password=self.password,
                                       database=self.database, max_connections=self.max_connections)
        self.replication = PostgresReplication(self.servers, self.replication_password)

    # -- state -------------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {"initial_readers": self.initial_readers, "synchronous": self.synchronous,
                "max_connections": self.max_connections, "bin_dirs": self.bin_dirs,
                "replication_password": self.replication_password,
                "next_number": self.next_number,
                "instance_max_connections": dict(self.servers.instance_max_connections)}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.initial_readers = int(extra.get("initial_readers", len(self.readers)))
        self.synchronous = bool(extra.get("synchronous", True))
        self.max_connections = int(extra.get("max_connections", 100))
        self.bin_dirs = list(extra.get("bin_dirs", [PG_BIN_DIR]))
        if not extra.get("replication_password"):
            raise StandinError("PostgreSQL stand-in state lacks 'replication_password': "
                               "it was not written by PostgresCluster.to_state()")
        self.replication_password = str(extra["replication_password"])
        self.next_number = int(extra.get("next_number", len(self.instances) + 1))
        self._build_runtime()
        self.servers.instance_max_connections = {str(k): int(v) for k, v in
                                                 (extra.get("instance_max_connections") or {}).items()}
        if self.instances:
            self.servers.writer_max_connections = self.servers.own_max_connections(self.writer)

    def _server_state(self, instance_id: str) -> dict[str, Any]:
        return self.runtime.record_state(instance_id)

    def _load_server_state(self, entries: dict[str, dict[str, Any]]) -> None:
        for instance_id, entry in entries.items():
            self.runtime.load_record(instance_id, entry)

    @property
    def socket_dir(self) -> str:
        return self.servers.socket_dir

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """initdb the writer, start it, base-backup and start the readers, then turn on sync."""
        if self.instances:
            raise StandinError("cluster already started; build a new PostgresCluster to start another")
        self.servers.preflight()  # fail before creating anything
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.servers.create_home()
        self.base_dir = self.runtime.home
        writer = self._new_instance(Role.WRITER)
        self.servers.initdb(writer)
        self.servers.start(writer)
        self.servers.control(writer).bootstrap(self.replication_password)
        readers = [self._new_instance(Role.READER) for _ in range(self.initial_readers)]
        for r, own in zip(readers, self._initial_reader_max or (), strict=False):
            self.servers.instance_max_connections[r.id] = own
        for r in readers:
            self.replication.ensure_slot(writer, r.id)
        # Base backups of a fresh cluster are small; taking them side by side halves start time.
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(readers))) as pool:
            for f in [pool.submit(self.replication.base_backup, r, writer) for r in readers]:
                f.result()
        for r in readers:
            self.servers.start(r)
        self.replication.wait_streaming(writer, readers, self._running)
        self._apply_synchronous_names(writer)

    def stop(self) -> None:
        """Fast-shut down every instance at once, SIGKILL stragglers, then delete the base dir."""
        self.servers.stop_all(self.instances)
        self.runtime.remove_home()

    # -- operations --------------------------------------------------------------------------
    def running(self, instance_id: str) -> bool:
        return self.runtime.running(self.instance(instance_id).id)

    def _running(self, inst: Instance) -> bool:
        return self.runtime.running(inst.id)

    def query_value(self, instance_id: str, query: str, timeout: float) -> Any:
        p = self.connection_params(instance_id)
        with psycopg.connect(host=p.host, port=p.port, user=p.user, password=p.password,
                             dbname=p.database, connect_timeout=max(2, math.ceil(timeout)),  # libpq's minimum
                             autocommit=True, application_name=PROBE_APPLICATION_NAME) as conn:
            return conn.execute(query).fetchone()[0]  # type: ignore[index]

    def create_login(self, user: str, password: str) -> None:
        conf.validate_identifier("user", user)
        with self._writer_session() as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(sql.SQL(verb + " ROLE {} WITH LOGIN PASSWORD {}").format(
                sql.Identifier(user), sql.Literal(password)))
            conn.execute(sql.SQL("GRANT ALL ON DATABASE {} TO {}").format(
                sql.Identifier(self.database), sql.Identifier(user)))
            conn.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(sql.Identifier(user)))

    def set_password(self, user: str, password: str) -> None:
        with self._writer_session() as conn:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(user), sql.Literal(password)))

    def check_login(self, user: str, password: str, timeout: float = 5.0) -> None:
        w = self.writer
        with psycopg.connect(host=w.host, port=w.port, user=user, password=password, dbname=self.database,
                             connect_timeout=max(2, math.ceil(timeout)), autocommit=True,
                             application_name=PROBE_APPLICATION_NAME) as conn:
            conn.execute("SELECT 1")

    def _writer_session(self) -> psycopg.Connection:
        """A control session on the writer as the cluster's user (a superuser)."""
        w = self.writer
        return psycopg.connect(host=w.host, port=w.port, user=self.user, password=self.password,
                               dbname=self.database, connect_timeout=10, autocommit=True,
                               application_name=PROBE_APPLICATION_NAME)

    def topology(self) -> Topology:
        """Ask every running instance whether it is in recovery, and the writer about its readers."""
        answers: dict[str, bool] = {}
        for inst in self.instances:
            with contextlib.suppress(psycopg.Error):
                answers[inst.id] = self.servers.control(inst).scalar("SELECT pg_is_in_recovery()")
        primaries = [i for i, in_recovery in answers.items() if not in_recovery]
        recorded = next((i.id for i in self.instances if i.role is Role.WRITER), None)
        writer_id = recorded if recorded in primaries else (primaries[0] if primaries else None)
        from_writer: dict[str, ReaderStatus] = {}
        if writer_id is not None:
            with contextlib.suppress(psycopg.Error):
                from_writer = self.servers.control(self.instance(writer_id)).replication_view()
        statuses = []
        for inst in self.instances:
            if inst.id == writer_id:
                continue
            status = from_writer.get(inst.id)
            if status is None:
                status = (self.servers.control(inst).reader_self_view(inst.id) if inst.id in answers
                          else ReaderStatus(inst.id, replicating=False, lag_seconds=None))
            statuses.append(status)
        return Topology(writer=writer_id, readers=tuple(statuses))

    def failover(self, target: str | None = None) -> str:
        """Fence the writer, promote ``target`` or the most advanced reader, rewire the rest."""
        old = self.writer
        if target is not None:
            chosen = self.instance(target)
            if chosen is old:
                raise StandinError(f"{target} is already the writer")
            if not self._running(chosen):
                raise StandinError(f"cannot promote {target}: it is not running")
        running = [r for r in self.readers if self._running(r)]
        if not running:
            raise StandinError("cannot fail over: no running reader to promote")

        end_of_wal = self.replication.fence(old)
        if end_of_wal is not None:  # clean shutdown: readers get all of it, wait briefly for that
            process.wait_until(lambda: all(self.replication.received_lsn(r) > end_of_wal
                                           for r in running), 5.0)
        positions = {r.id: self.replication.received_lsn(r) for r in running}
        if target is None:
            chosen = max(running, key=lambda r: (positions[r.id], -self._number(r)))
        fork_point = positions[chosen.id]

        self.replication.promote(chosen)
        old.role, chosen.role = Role.READER, Role.WRITER
        lifted = self._readers_below(chosen)
        self.servers.writer_max_connections = self.servers.own_max_connections(chosen)
        self.replication.configure_new_writer(chosen, self.readers, self.synchronous)
        for r in self.readers:
            if r is old:
                continue
            if r.id not in positions:  # stopped: it follows the new writer when restarted
                self.replication.write_standby_files(r, chosen)
            elif positions[r.id] > fork_point or r.id in lifted:  # WAL the new writer never saw, or too small
                self.replication.rejoin(r, chosen)
            else:
                self.replication.repoint(r, chosen)
        self.replication.rejoin(old, chosen)
        self.replication.wait_streaming(chosen, [r for r in self.readers if self._running(r)],
                                        self._running)
        return chosen.id

    def crash(self, instance_id: str) -> None:
        """SIGKILL the postmaster and its whole process group: no shutdown checkpoint, no goodbye."""
        self.runtime.kill(self.instance(instance_id).id)

    def restart(self, instance_id: str) -> None:
        """Start the instance again in its current role and wait until it accepts connections."""
        inst = self.instance(instance_id)
        if self._running(inst):
            self.servers.wait_accepting(inst)
            return
        self.servers.start(inst)

    def add_reader(self) -> str:
        """Base-backup the writer into a new instance, start it, wait until it streams."""
        writer = self.writer
        if not self._running(writer):
            raise StandinError(f"cannot add a reader: the writer {writer.id} is not running")
        inst = self._new_instance(Role.READER)
        try:
            self.replication.ensure_slot(writer, inst.id)
            self.replication.base_backup(inst, writer)
            self.servers.start(inst)
            self.replication.wait_streaming(writer, [inst], self._running)
        except BaseException:
            self._discard(inst, writer)
            raise
        self._apply_synchronous_names(writer)
        return inst.id

    def wait_replicated(self, timeout: float = 30.0) -> None:
        """Block until every running reader has replayed up to the writer's current WAL position."""
        self.replication.wait_replayed(self.writer, [r for r in self.readers if self._running(r)], timeout)

    # -- instances ---------------------------------------------------------------------------
    def _new_instance(self, role: Role) -> Instance:
        """Register the next instance id (instance-1 is the first writer) with a free port."""
        number = self.next_number
        self.next_number += 1
        taken = {i.port for i in self.instances}
        port = process.free_port()
        for _ in range(20):
            if port not in taken:
                break
            port = process.free_port()
        inst = Instance(id=f"instance-{number}", role=role, host=process.LOOPBACK, port=port)
        self.runtime.place(inst.id)
        self.instances.append(inst)
        return inst

    def _readers_below(self, writer: Instance) -> set[str]:
        """Running readers whose max_connections is below ``writer``'s: a hot standby pauses replay
        when its primary allows more connections than it does, so these restart with the writer's."""
        need = self.servers.own_max_connections(writer)
        return {r.id for r in self.readers if r is not writer and self._running(r)
                and self.servers.effective_max_connections(r) < need}

    @staticmethod
    def _number(inst: Instance) -> int:
        return int(inst.id.rsplit("-", 1)[1])

    def _discard(self, inst: Instance, writer: Instance) -> None:
        """Undo a half-made reader: stop it, drop its slot and its directory, forget it."""
        self.servers.stop(inst)
        self.instances.remove(inst)
        with contextlib.suppress(psycopg.Error):
            self.replication.drop_slots_except(writer, self.readers)
        self.runtime.forget(inst.id)

    def _apply_synchronous_names(self, writer: Instance) -> None:
        self.replication.apply_synchronous_names(writer, self.readers, self.synchronous)
