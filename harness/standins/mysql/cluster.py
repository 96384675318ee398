"""The MySQL-protocol stand-in: MariaDB servers as child processes, replicating by GTID.

How a cluster is built, and why:

* **One seed per cluster.**  ``mariadb-install-db`` bootstraps a seed data directory once, with
  the accounts and database created in the same bootstrap.  Every instance starts as a copy of
  the seed, so the writer's binary log starts empty and a reader only has to replay it from the
  first event.  The seed stays in the cluster's directory: a new reader (:meth:`add_reader`) or a
  reader whose history diverged is a fresh copy of it plus GTID replication from the writer.  That
  needs no dump, no backup tool and no pause of another instance; it relies on binary logs never
  being purged, which the option file ensures (:mod:`~harness.standins.mysql.options`).
* **Lossless semi-sync.**  An acknowledged commit is in at least one reader's relay log before
  the writer commits it (``AFTER_SYNC``).
* **Failover.**  A live writer is fenced (``read_only`` plus killing client sessions; the login
  user lacks ``READ_ONLY ADMIN`` so it cannot write any more), every reader receives the rest of
  its binary log, then a reader is promoted and the old writer simply replicates from it: nothing
  committed anywhere is lost.  A dead or unresponsive (then killed) writer cannot be drained:
  readers apply what they received, the most advanced is promoted (a named target first catches
  up from it), and the old writer restarts as a reader.  It may hold transactions nobody
  acknowledged; its crash recovery as a semi-sync replica rolls those back, and should it still
  diverge, it is rebuilt from the seed.
* Control sessions use a private account over TCP; instances listen on 127.0.0.1 only.

This module tells that story; :mod:`~harness.standins.mysql.server` starts and stops servers
(through a :class:`~harness.standins.runtime.ProcessRuntime`) and
:mod:`~harness.standins.mysql.replication` does each replication step in SQL.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import os
import re
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pymysql

from harness import process
from harness.standins.base import (
    PROBE_PROGRAM_NAME,
    Cluster,
    Instance,
    ReaderStatus,
    ReplicationTimeout,
    Role,
    StandinError,
    Topology,
    check_reader_max_connections,
)
from harness.standins.mysql import options as opts
from harness.standins.mysql import replication as repl
from harness.standins.mysql import server
from harness.standins.mysql.gtid import GtidPosition, most_advanced
from harness.standins.mysql.replication import ReplicationDiverged
from harness.standins.runtime import ProcessRuntime, standin_errors

__all__ = ["SEARCH_DIRS", "MySQLCluster", "ReplicationDiverged"]

SEARCH_DIRS = ("/usr/sbin", "/usr/bin")
ADMIN_USER = "standin_admin"
REPLICATION_USER = "standin_repl"

START_TIMEOUT = 60.0
CATCH_UP_TIMEOUT = 10.0
STREAM_TIMEOUT = 15.0

_NAME = re.compile(r"[A-Za-z0-9_]{1,32}\Z")
_Method = TypeVar("_Method", bound=Callable[..., Any])


def _server_errors_as_standin_errors(method: _Method) -> _Method:
    """Public operations raise StandinError only: a driver error becomes one saying what failed."""
    @functools.wraps(method)
    def wrapper(self: MySQLCluster, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except pymysql.err.MySQLError as e:
            raise StandinError(f"{method.__name__} failed: MariaDB said {e.args}") from e
    return wrapper  # type: ignore[return-value]


def _number(inst: Instance) -> int:
    """``instance-3`` -> 3, also its server_id."""
    return int(inst.id.rsplit("-", 1)[1])


class MySQLCluster(Cluster):
    """One MariaDB writer and ``readers`` replicas on 127.0.0.1, each reporting its instance id
    as ``@@report_host``.

    ``semi_sync_timeout`` (seconds) is how long a commit waits for a reader's acknowledgement
    before the writer falls back to asynchronous replication until a reader catches up again; it
    bounds the stall of writes when every reader is down.  ``ports`` pins the ports (writer
    first) and ``search_dirs`` is where binaries are looked for before PATH; both serve tests and
    unusual installations.
    """

    engine = "mysql"
    writable_query = "SELECT @@global.read_only = 0"

    def __init__(self, readers: int = 2, *, user: str = "harness", password: str | None = None,
                 database: str = "harness", max_connections: int = 151,
                 reader_max_connections: Sequence[int] | None = None, semi_sync_timeout: float = 10.0,
                 ports: Sequence[int] | None = None,
                 search_dirs: Sequence[str] = SEARCH_DIRS) -> None:
        if not isinstance(readers, int) or isinstance(readers, bool) or readers < 0:
            raise StandinError(f"readers must be a whole number >= 0, got {readers!r}")
        for what, name in (("user", user), ("database", database)):
            if not isinstance(name, str) or not _NAME.match(name):
                raise StandinError(f"{what} {name!r} must be 1-32 letters, digits or underscores")
        if user in (ADMIN_USER, REPLICATION_USER, "root"):
            raise StandinError(f"user {user!r} is reserved for the stand-in's own use")
        if not 10 <= max_connections <= 100_000:
            raise StandinError(f"max_connections must be between 10 and 100000, got {max_connections}")
        reader_max = check_reader_max_connections(reader_max_connections, readers, 10, 100_000)
        if not 0.1 <= semi_sync_timeout <= 3600:
            raise StandinError(f"semi_sync_timeout must be 0.1-3600 s, got {semi_sync_timeout}")
        if ports is not None and len(ports) != readers + 1:
            raise StandinError(f"ports must give {readers + 1} ports (writer first), got {len(ports)}")
        super().__init__(base_dir="", user=user, database=database,
                         password=secrets.token_urlsafe(12) if password is None else password)
        self.initial_readers = readers
        self.max_connections = max_connections
        #: Instances whose own max_connections differs from the cluster's (by instance number, the
        #: first reader being 2), like Aurora instances of different classes.
        self.instance_max_connections: dict[int, int] = {n + 2: v for n, v in enumerate(reader_max or ())}
        self.semi_sync_timeout = semi_sync_timeout
        self.requested_ports = list(ports) if ports is not None else None
        self.search_dirs = tuple(search_dirs)
        self.admin_password = secrets.token_hex(16)
        self.replication_password = secrets.token_hex(16)
        #: Readers this handle rebuilt from the seed because their history diverged (diagnostics).
        self.rebuilt: list[str] = []
        self.runtime = ProcessRuntime(server.layout(self.search_dirs))

    # -- persistence ---------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {"admin_password": self.admin_password,
                "replication_password": self.replication_password,
                "max_connections": self.max_connections,
                "instance_max_connections": {str(k): v for k, v in self.instance_max_connections.items()},
                "semi_sync_timeout": self.semi_sync_timeout,
                "search_dirs": list(self.search_dirs)}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.admin_password = extra["admin_password"]
        self.replication_password = extra["replication_password"]
        self.max_connections = extra.get("max_connections", 151)
        self.instance_max_connections = {int(k): int(v) for k, v in
                                         (extra.get("instance_max_connections") or {}).items()}
        self.semi_sync_timeout = extra.get("semi_sync_timeout", 10.0)
        self.search_dirs = tuple(extra.get("search_dirs", SEARCH_DIRS))
        self.initial_readers = len(self.readers)
        self.requested_ports = None
        self.rebuilt = []
        self.runtime = ProcessRuntime(server.layout(self.search_dirs), home=self.base_dir)

    def _server_state(self, instance_id: str) -> dict[str, Any]:
        return self.runtime.record_state(instance_id)

    def _load_server_state(self, entries: dict[str, dict[str, Any]]) -> None:
        for instance_id, entry in entries.items():
            self.runtime.load_record(instance_id, entry)

    # -- instances -----------------------------------------------------------------------------
    def _binary(self, name: str) -> str:
        return self.runtime.binary(name)

    @property
    def _seed_dir(self) -> str:
        return os.path.join(self.runtime.home, "seed")

    def _new_instance(self, number: int, role: Role, port: int) -> Instance:
        inst = Instance(id=f"instance-{number}", role=role, host=opts.LOOPBACK, port=port)
        self.runtime.place(inst.id)
        return inst

    def _running(self, inst: Instance) -> bool:
        return self.runtime.running(inst.id)

    def running(self, instance_id: str) -> bool:
        return self._running(self.instance(instance_id))

    def query_value(self, instance_id: str, query: str, timeout: float) -> Any:
        """``query``'s first value on a new login-user connection named :data:`PROBE_PROGRAM_NAME`."""
        p = self.connection_params(instance_id)
        conn = pymysql.connect(host=p.host, port=p.port, user=p.user, password=p.password,
                               database=p.database, connect_timeout=timeout,
                               read_timeout=timeout, write_timeout=timeout, program_name=PROBE_PROGRAM_NAME)
        try:
            with conn.cursor() as cur:
                cur.execute(query)
                return cur.fetchone()[0]  # type: ignore[index]
        finally:
            conn.close()

    def create_login(self, user: str, password: str) -> None:
        """``user``@'%' with every privilege on the cluster's database (created on the writer, so the
        readers get it through replication); an existing one gets ``password``."""
        if not _NAME.match(user) or user in (ADMIN_USER, REPLICATION_USER, "root"):
            raise StandinError(f"user {user!r} must be 1-32 letters, digits or underscores and not reserved")
        self._on_writer("CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s", (user, password))
        self._on_writer("ALTER USER %s@'%%' IDENTIFIED BY %s", (user, password))
        self._on_writer(f"GRANT ALL PRIVILEGES ON `{self.database}`.* TO %s@'%%'", (user,))

    def set_password(self, user: str, password: str) -> None:
        self._on_writer("ALTER USER %s@'%%' IDENTIFIED BY %s", (user, password))

    def check_login(self, user: str, password: str, timeout: float = 5.0) -> None:
        w = self.writer
        conn = pymysql.connect(host=w.host, port=w.port, user=user, password=password, database=self.database,
                               connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout,
                               program_name=PROBE_PROGRAM_NAME)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
        finally:
            conn.close()

    def _on_writer(self, statement: str, args: tuple[Any, ...]) -> None:
        self._require_started()
        conn = self._connect(self.writer, timeout=10)
        try:
            with conn.cursor() as cur:
                cur.execute(statement, args)
        finally:
            conn.close()

    def _connect(self, inst: Instance, timeout: float = 2.0) -> pymysql.connections.Connection:
        """A control session (every privilege) on one instance."""
        return pymysql.connect(host=inst.host, port=inst.port, user=ADMIN_USER,
                               password=self.admin_password, connect_timeout=timeout,
                               read_timeout=60, write_timeout=60, autocommit=True)

    def _answers(self, inst: Instance) -> bool:
        if not self._running(inst):
            return False
        try:
            self._connect(inst, timeout=1.0).close()
            return True
        except pymysql.err.MySQLError:
            return False

    def _launch(self, inst: Instance) -> None:
        """Start the instance in its current role, without waiting for it."""
        writer = inst.role is Role.WRITER
        server.launch(self.runtime, self._binary("mariadbd"), inst, opts.InstanceOptions(
            instance_id=inst.id, server_id=_number(inst), port=inst.port,
            instance_dir=self.runtime.instance_dir(inst.id), data_dir=self.runtime.data_dir(inst.id),
            writer=writer,
            semi_sync_master=writer and any(r is not inst for r in self.readers),
            semi_sync_timeout_ms=int(self.semi_sync_timeout * 1000),
            max_connections=self.instance_max_connections.get(_number(inst), self.max_connections)))

    def _await_ready(self, inst: Instance) -> None:
        server.await_ready(self.runtime, inst, lambda: self._answers(inst), START_TIMEOUT)

    # -- lifecycle -----------------------------------------------------------------------------
    @_server_errors_as_standin_errors
    def start(self) -> None:
        """Bootstrap, start 1 writer + N readers in parallel and wire up replication.  On any
        failure (or Ctrl-C) everything started so far is stopped and deleted before raising."""
        if self.base_dir:
            raise StandinError("this cluster was already started; make a new MySQLCluster")
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.runtime.preflight(server.BINARIES)  # fail before creating anything
        install_db = self._binary("mariadb-install-db")
        ports = self.requested_ports or [process.free_port() for _ in range(self.initial_readers + 1)]
        with standin_errors():
            for port in ports:
                process.check_port_free(port)
        self.base_dir = self.runtime.create_home()
        self.instances = [self._new_instance(n + 1, Role.WRITER if n == 0 else Role.READER, port)
                          for n, port in enumerate(ports)]
        server.bootstrap_seed(self.runtime, install_db, self._seed_dir, opts.seed_sql(
            user=self.user, password=self.password, database=self.database,
            admin_user=ADMIN_USER, admin_password=self.admin_password,
            replication_user=REPLICATION_USER, replication_password=self.replication_password))
        for inst in self.instances:
            server.copy_seed(self.runtime, self._seed_dir, inst)
        for inst in self.instances:
            self._launch(inst)
        for inst in self.instances:
            self._await_ready(inst)
        for inst in self.readers:
            self._follow(inst, self.writer)
        for inst in self.readers:
            with self._connect(inst) as conn:
                repl.await_streaming(conn, inst.id, STREAM_TIMEOUT)

    def stop(self) -> None:
        """Shut every instance down (in parallel, SIGKILL after 15 s) and delete the cluster's
        directory.  Idempotent; works on a handle rebuilt with ``from_state``."""
        errors: list[BaseException] = []
        if self.instances:
            with concurrent.futures.ThreadPoolExecutor(max_workers=len(self.instances)) as pool:
                for future in [pool.submit(server.shut_down, self.runtime, i) for i in self.instances]:
                    if future.exception() is not None:
                        errors.append(future.exception())
        self.runtime.remove_home()
        if errors:
            raise StandinError(f"could not stop every instance: {errors[0]}") from errors[0]

    def _require_started(self) -> None:
        if not self.base_dir or not self.instances:
            raise StandinError("the cluster is not started")

    # -- replication wiring --------------------------------------------------------------------
    def _follow(self, inst: Instance, source: Instance) -> None:
        with self._connect(inst) as conn:
            repl.follow(conn, host=source.host, port=source.port, user=REPLICATION_USER,
                        password=self.replication_password)

    def _join_as_reader(self, inst: Instance) -> None:
        """Point a running reader at the writer; rebuild it from the seed if its history diverged."""
        self._follow(inst, self.writer)
        if not self._running(self.writer):
            return  # it connects when the writer is back (connect retry is 1 s)
        try:
            with self._connect(inst) as conn:
                repl.await_streaming(conn, inst.id, STREAM_TIMEOUT)
        except ReplicationDiverged:
            self._rebuild(inst)

    def _rebuild(self, inst: Instance) -> None:
        """Replace a reader's data with a fresh seed copy that replays the writer's history."""
        server.shut_down(self.runtime, inst)
        server.copy_seed(self.runtime, self._seed_dir, inst)
        self._launch(inst)
        self._await_ready(inst)
        self._follow(inst, self.writer)
        with self._connect(inst) as conn:
            repl.await_streaming(conn, inst.id, STREAM_TIMEOUT)
        self.rebuilt.append(inst.id)

    # -- operations ----------------------------------------------------------------------------
    @_server_errors_as_standin_errors
    def topology(self) -> Topology:
        """Ask every instance; the writer is the one that is writable and not a replica."""
        self._require_started()
        seen: dict[str, tuple[bool, dict[str, Any] | None]] = {}
        for inst in self.instances:
            if not self._running(inst):
                continue
            with contextlib.suppress(pymysql.err.MySQLError), self._connect(inst, 1.0) as conn:
                seen[inst.id] = (bool(repl.value(conn, "SELECT @@global.read_only")),
                                 repl.slave_status(conn))
        writable = [i for i, (read_only, status) in seen.items() if not read_only and not status]
        writer = self.writer.id if self.writer.id in writable else (writable[0] if writable else None)
        readers = []
        for inst in self.instances:
            if inst.id == writer:
                continue
            _, status = seen.get(inst.id, (True, None))
            lag = status.get("Seconds_Behind_Master") if status else None
            readers.append(ReaderStatus(inst.id, replicating=repl.streaming(status),
                                        lag_seconds=float(lag) if lag is not None else None))
        return Topology(writer, tuple(readers))

    def positions(self) -> dict[str, str]:
        """Each answering instance's ``@@gtid_current_pos`` (diagnostics, reports)."""
        out = {}
        for inst in self.instances:
            if self._running(inst):
                with contextlib.suppress(pymysql.err.MySQLError), self._connect(inst, 1.0) as conn:
                    out[inst.id] = repl.value(conn, "SELECT @@gtid_current_pos") or ""
        return out

    @_server_errors_as_standin_errors
    def wait_replicated(self, timeout: float = 30.0) -> None:
        """Until every running reader has applied the writer's whole binary log."""
        self._require_started()
        with self._connect(self.writer) as conn:
            target = repl.binlog_position(conn)
        deadline = time.monotonic() + timeout
        for inst in self.readers:
            if self._running(inst):
                with self._connect(inst) as conn:
                    try:
                        repl.await_applied(conn, inst.id, target, max(0.0, deadline - time.monotonic()))
                    except ReplicationDiverged as e:
                        raise ReplicationTimeout(str(e)) from e

    def crash(self, instance_id: str) -> None:
        """SIGKILL the instance (no shutdown, no flush beyond what the OS already has)."""
        self.runtime.kill(self.instance(instance_id).id)

    @_server_errors_as_standin_errors
    def restart(self, instance_id: str) -> None:
        """Start an instance in its current role (shutting it down first if it runs) and wait
        until it answers; a reader also resumes replicating, a writer's readers reconnect."""
        self._require_started()
        inst = self.instance(instance_id)
        server.shut_down(self.runtime, inst)
        self._launch(inst)
        self._await_ready(inst)
        if inst.role is Role.READER:
            self._join_as_reader(inst)
            return
        for reader in self.readers:  # their IO threads retry every second
            if self._running(reader):
                with self._connect(reader) as conn:
                    repl.await_streaming(conn, reader.id, 30.0)

    @_server_errors_as_standin_errors
    def add_reader(self) -> str:
        """A new reader: a seed copy replaying the writer's binary log.  Returns its id once it
        has caught up; a failed attempt leaves nothing behind."""
        self._require_started()
        inst = self._new_instance(max(_number(i) for i in self.instances) + 1, Role.READER,
                                  process.free_port())
        self.instances.append(inst)
        try:
            server.copy_seed(self.runtime, self._seed_dir, inst)
            self._launch(inst)
            self._await_ready(inst)
            self._follow(inst, self.writer)
            with self._connect(self.writer) as conn:
                repl.rows(conn, "SET GLOBAL rpl_semi_sync_master_enabled = ON")
                target = repl.binlog_position(conn)
            with self._connect(inst) as conn:
                repl.await_streaming(conn, inst.id, STREAM_TIMEOUT)
                repl.await_applied(conn, inst.id, target, START_TIMEOUT)
        except BaseException:
            self.instances.remove(inst)
            server.shut_down(self.runtime, inst)
            self.runtime.forget(inst.id)
            raise
        return inst.id

    # -- failover ------------------------------------------------------------------------------
    @_server_errors_as_standin_errors
    def failover(self, target: str | None = None) -> str:
        """Fence the writer, promote ``target`` or the most advanced reader, repoint the others
        and bring the old writer back as a reader.  Returns the new writer's id."""
        self._require_started()
        old = self.writer
        if target is not None and self.instance(target).role is not Role.READER:
            raise StandinError(f"{target} is the writer already; name a reader to promote")
        candidates = [i for i in self.readers if self._answers(i)]
        if not candidates:
            raise StandinError("no running reader to promote")
        if target is not None and target not in {c.id for c in candidates}:
            raise StandinError(f"{target} is not running; cannot promote it")

        final = self._fence(old)
        if final is not None and not all(self._received(c, final) for c in candidates):
            self.crash(old.id)  # a reader cannot drain it: treat it as dead (semi-sync covers it)
            final = None
        positions = self._drain(candidates)
        best = self.instance(most_advanced(positions, prefer=[target] if target else []))
        chosen = self.instance(target) if target else best
        if not positions[chosen.id].covers(positions[best.id]):
            self._follow(chosen, best)  # the named target first catches up from the best reader
            with self._connect(chosen) as conn:
                repl.await_applied(conn, chosen.id, positions[best.id], CATCH_UP_TIMEOUT * 3)

        with self._connect(chosen) as conn:
            repl.promote(conn, semi_sync_master=len(self.instances) > 1)
        old.role, chosen.role = Role.READER, Role.WRITER
        for c in candidates:
            if c is not chosen:
                self._join_as_reader(c)
        try:
            if final is not None:
                self._join_as_reader(old)
            else:
                self.restart(old.id)
        except StandinError as e:
            raise StandinError(f"promoted {chosen.id}, but the old writer {old.id} could not rejoin "
                               f"as a reader: {e}") from e
        return chosen.id

    def _fence(self, old: Instance) -> GtidPosition | None:
        """Stop the old writer taking writes.  Returns its final binary-log position if it is
        alive and fenced, None if it is down (an unresponsive one is killed to make sure)."""
        if not self._running(old):
            return None
        try:
            with self._connect(old, timeout=2.0) as conn:
                return repl.fence(conn, spare_users=(ADMIN_USER, REPLICATION_USER))
        except pymysql.err.MySQLError:
            self.crash(old.id)
            return None

    def _received(self, inst: Instance, final: GtidPosition) -> bool:
        with self._connect(inst) as conn:
            return repl.received(conn, final, CATCH_UP_TIMEOUT)

    def _drain(self, candidates: list[Instance]) -> dict[str, GtidPosition]:
        """Stop every candidate receiving, let each apply its relay log; what each one holds."""
        for c in candidates:
            with self._connect(c) as conn:
                repl.stop_receiving(conn)
        deadline = time.monotonic() + CATCH_UP_TIMEOUT
        positions = {}
        for c in candidates:
            with self._connect(c) as conn:
                positions[c.id] = repl.drained_position(conn, deadline)
        return positions
