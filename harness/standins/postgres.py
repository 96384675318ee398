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

Layout of the base directory (removed by :meth:`PostgresCluster.stop`)::

    aurora-harness-pg-XXXX/
        sockets/                     unix sockets of all instances
        instance-1/data/             PGDATA
        instance-1/postgres.log      server output

Control queries use psycopg over TCP as the cluster user (a superuser: the proxy reads settings
and runs ``DISCARD ALL``).  Servers run as the ``postgres`` system account when we are root.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import secrets
import signal
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from harness.standins import pgconf, process
from harness.standins.base import (
    Cluster,
    Instance,
    PortInUse,
    ReaderStatus,
    ReplicationTimeout,
    Role,
    StandinError,
    StartFailed,
    Topology,
)
from harness.standins.pgcontrol import ServerControl

PG_BIN_DIR = "/usr/lib/postgresql/15/bin"
PG_PACKAGE = "postgresql-15"
SERVICE_ACCOUNT = "postgres"
BASE_DIR_PREFIX = "aurora-harness-pg-"

_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 10.0
_STREAM_TIMEOUT = 60.0
_BINARIES = ("initdb", "postgres", "pg_basebackup", "pg_rewind", "pg_controldata")


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

    def __init__(self, readers: int = 2, *, user: str = "harness", password: str | None = None,
                 database: str = "harness", synchronous: bool = True, max_connections: int = 100,
                 bin_dirs: Sequence[str] = (PG_BIN_DIR,)) -> None:
        if not isinstance(readers, int) or isinstance(readers, bool) or not 0 <= readers <= 15:
            raise StandinError(f"readers must be an integer from 0 to 15, not {readers!r}")
        if not isinstance(max_connections, int) or not 10 <= max_connections <= 10000:
            raise StandinError(f"max_connections must be an integer from 10 to 10000, "
                               f"not {max_connections!r}")
        pgconf.validate_identifier("user", user)
        pgconf.validate_identifier("database", database)
        if user == pgconf.REPLICATION_USER:
            raise StandinError(f"user {user!r} is reserved for replication")
        password = pgconf.validate_password(password if password is not None
                                            else secrets.token_urlsafe(18))
        super().__init__(base_dir="", user=user, password=password, database=database)
        self.initial_readers = readers
        self.synchronous = synchronous
        self.max_connections = max_connections
        self.bin_dirs = list(bin_dirs)
        self.replication_password = secrets.token_urlsafe(18)
        self.next_number = 1

    # -- state -------------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {"initial_readers": self.initial_readers, "synchronous": self.synchronous,
                "max_connections": self.max_connections, "bin_dirs": self.bin_dirs,
                "replication_password": self.replication_password,
                "next_number": self.next_number}

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

    @property
    def socket_dir(self) -> str:
        return os.path.join(self.base_dir, "sockets")

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """initdb the writer, start it, base-backup and start the readers, then turn on sync."""
        if self.instances:
            raise StandinError("cluster already started; build a new PostgresCluster to start another")
        for name in _BINARIES:  # fail before creating anything
            self._bin(name)
        process.service_user(SERVICE_ACCOUNT)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.base_dir = process.make_base_dir(BASE_DIR_PREFIX, SERVICE_ACCOUNT)
        process.make_owned_dir(self.socket_dir, SERVICE_ACCOUNT, 0o755)
        writer = self._new_instance(Role.WRITER)
        self._initdb(writer)
        self._spawn(writer)
        self._control(writer).bootstrap(self.replication_password)
        readers = [self._new_instance(Role.READER) for _ in range(self.initial_readers)]
        for r in readers:
            self._control(writer).ensure_slot(pgconf.slot_name(r.id))
        # Base backups of a fresh cluster are small; taking them side by side halves start time.
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(readers))) as pool:
            for f in [pool.submit(self._base_backup, r, writer) for r in readers]:
                f.result()
        for r in readers:
            self._spawn(r)
        self._wait_streaming(writer, [r.id for r in readers])
        self._apply_synchronous_names(writer)

    def stop(self) -> None:
        """Fast-shut down every instance at once, SIGKILL stragglers, then delete the base dir."""
        live = [(inst, *pid) for inst in self.instances if (pid := self._live_pid(inst))]
        for _, pid, _ in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown
        process.wait_until(lambda: not any(process.pid_alive(p, s) for _, p, s in live),
                           _STOP_TIMEOUT)
        for _, pid, start in live:
            process.kill(pid, start)
        for inst in self.instances:
            inst.pid = inst.pid_start_time = None
        if self.base_dir and os.path.basename(self.base_dir.rstrip("/")).startswith(BASE_DIR_PREFIX):
            process.remove_tree(self.base_dir)

    # -- operations --------------------------------------------------------------------------
    def topology(self) -> Topology:
        """Ask every running instance whether it is in recovery, and the writer about its readers."""
        answers: dict[str, bool] = {}
        for inst in self.instances:
            with contextlib.suppress(psycopg.Error):
                answers[inst.id] = self._control(inst).scalar("SELECT pg_is_in_recovery()")
        primaries = [i for i, in_recovery in answers.items() if not in_recovery]
        recorded = next((i.id for i in self.instances if i.role is Role.WRITER), None)
        writer_id = recorded if recorded in primaries else (primaries[0] if primaries else None)
        from_writer: dict[str, ReaderStatus] = {}
        if writer_id is not None:
            with contextlib.suppress(psycopg.Error):
                from_writer = self._control(self.instance(writer_id)).replication_view()
        statuses = []
        for inst in self.instances:
            if inst.id == writer_id:
                continue
            status = from_writer.get(inst.id)
            if status is None:
                status = (self._control(inst).reader_self_view(inst.id) if inst.id in answers
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
            if not self._live_pid(chosen):
                raise StandinError(f"cannot promote {target}: it is not running")
        running = [r for r in self.readers if self._live_pid(r)]
        if not running:
            raise StandinError("cannot fail over: no running reader to promote")

        end_of_wal = self._fence(old)
        if end_of_wal is not None:  # clean shutdown: readers get all of it, wait briefly for that
            process.wait_until(lambda: all((self._control(r).received_lsn() or 0) > end_of_wal
                                           for r in running), 5.0)
        positions = {r.id: self._control(r).received_lsn() or 0 for r in running}
        if target is None:
            chosen = max(running, key=lambda r: (positions[r.id], -self._number(r)))
        fork_point = positions[chosen.id]

        self._control(chosen).promote(chosen.id)
        old.role, chosen.role = Role.READER, Role.WRITER
        self._configure_new_writer(chosen)
        for r in self.readers:
            if r is old:
                continue
            if r.id not in positions:  # stopped: it follows the new writer when restarted
                self._write_standby_files(r, chosen)
            elif positions[r.id] > fork_point:  # has WAL the new writer never saw
                self._rejoin(r, chosen)
            else:
                self._repoint(r, chosen)
        self._rejoin(old, chosen)
        self._wait_streaming(chosen, [r.id for r in self.readers if self._live_pid(r)])
        return chosen.id

    def crash(self, instance_id: str) -> None:
        """SIGKILL the postmaster and its whole process group: no shutdown checkpoint, no goodbye."""
        inst = self.instance(instance_id)
        live = self._live_pid(inst)
        if live:
            process.kill(*live)
        inst.pid = inst.pid_start_time = None

    def restart(self, instance_id: str) -> None:
        """Start the instance again in its current role and wait until it accepts connections."""
        inst = self.instance(instance_id)
        if self._live_pid(inst):
            self._wait_accepting(inst)
            return
        self._spawn(inst)

    def add_reader(self) -> str:
        """Base-backup the writer into a new instance, start it, wait until it streams."""
        writer = self.writer
        if not self._live_pid(writer):
            raise StandinError(f"cannot add a reader: the writer {writer.id} is not running")
        inst = self._new_instance(Role.READER)
        try:
            self._control(writer).ensure_slot(pgconf.slot_name(inst.id))
            self._base_backup(inst, writer)
            self._spawn(inst)
            self._wait_streaming(writer, [inst.id])
        except BaseException:
            self._discard(inst, writer)
            raise
        self._apply_synchronous_names(writer)
        return inst.id

    def wait_replicated(self, timeout: float = 30.0) -> None:
        """Block until every running reader has replayed up to the writer's current WAL position."""
        writer = self.writer
        try:
            target = self._control(writer).current_lsn()
        except psycopg.Error as e:
            raise ReplicationTimeout(f"cannot read the writer {writer.id}'s WAL position: {e}") from e
        readers = [r for r in self.readers if self._live_pid(r)]
        behind: list[str] = []

        def caught_up() -> bool:
            behind[:] = [r.id for r in readers if (self._control(r).replayed_lsn() or -1) < target]
            return not behind

        if not process.wait_until(caught_up, timeout, interval=0.05):
            raise ReplicationTimeout(f"readers {', '.join(behind)} did not replay up to the writer's "
                                     f"WAL position within {timeout:.1f}s")

    # -- instances ---------------------------------------------------------------------------
    def _bin(self, name: str) -> str:
        return process.find_binary(name, self.bin_dirs, PG_PACKAGE)

    def _new_instance(self, role: Role) -> Instance:
        """Register the next instance id (instance-1 is the first writer) with a free port."""
        number = self.next_number
        self.next_number += 1
        home = process.make_owned_dir(os.path.join(self.base_dir, f"instance-{number}"),
                                      SERVICE_ACCOUNT, 0o700)
        taken = {i.port for i in self.instances}
        port = process.free_port()
        for _ in range(20):
            if port not in taken:
                break
            port = process.free_port()
        inst = Instance(id=f"instance-{number}", role=role, host=process.LOOPBACK, port=port,
                        data_dir=os.path.join(home, "data"),
                        log_path=os.path.join(home, "postgres.log"))
        self.instances.append(inst)
        return inst

    @staticmethod
    def _number(inst: Instance) -> int:
        return int(inst.id.rsplit("-", 1)[1])

    def _live_pid(self, inst: Instance) -> tuple[int, int] | None:
        """(pid, start time) of the instance's postmaster if it runs.

        Falls back to the data directory's postmaster.pid, so that a handle rebuilt from a stale
        state still finds a server that another process restarted.
        """
        if process.pid_alive(inst.pid, inst.pid_start_time):
            assert inst.pid is not None
            return inst.pid, inst.pid_start_time or 0
        try:
            with open(os.path.join(inst.data_dir, "postmaster.pid")) as f:
                pid = int(f.readline().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().split(b"\0")
        except (OSError, ValueError):
            return None
        if inst.data_dir.encode() in cmdline and process.pid_alive(pid):
            return pid, process.start_time(pid) or 0
        return None

    def _spawn(self, inst: Instance) -> None:
        """Start the instance's postmaster and wait until it accepts connections."""
        process.check_port_free(inst.port)
        self._remove_stale_lock(inst)
        argv = pgconf.server_argv(self._bin("postgres"), inst.data_dir, inst.port, inst.id)
        inst.pid, inst.pid_start_time = process.spawn(argv, log_path=inst.log_path,
                                                      owner=SERVICE_ACCOUNT)
        self._wait_accepting(inst)

    def _remove_stale_lock(self, inst: Instance) -> None:
        """Delete postmaster.pid and the socket lock file when the postmaster they name is dead or a
        zombie.

        A killed postmaster stays a zombie until its parent reaps it, and that parent may be another
        process (the CLI or the supervisor that last started it).  PostgreSQL's own check sees the
        zombie's pid as alive and refuses to start ("lock file already exists"); we know better.
        """
        for lock in (os.path.join(inst.data_dir, "postmaster.pid"),
                     os.path.join(self.socket_dir, f".s.PGSQL.{inst.port}.lock")):
            try:
                with open(lock) as f:
                    pid = int(f.readline().strip())
            except (OSError, ValueError):
                continue
            if not process.pid_alive(pid):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(lock)

    def _wait_accepting(self, inst: Instance, timeout: float = _START_TIMEOUT) -> None:
        errors: list[str] = []

        def ready() -> bool:
            if not process.pid_alive(inst.pid, inst.pid_start_time):
                raise self._start_failure(inst, "exited during startup")
            try:  # "postgres" always exists; the cluster's database may not yet
                with self._control(inst).connect(dbname="postgres"):
                    return True
            except psycopg.Error as e:
                errors[:] = [str(e).strip()]
                return False

        if not process.wait_until(ready, timeout, interval=0.05):
            raise self._start_failure(inst, f"did not accept connections within {timeout:.0f}s "
                                            f"(last error: {errors[0] if errors else 'none'})")

    def _start_failure(self, inst: Instance, what: str) -> StandinError:
        tail = process.log_tail(inst.log_path)
        if "Address already in use" in tail:
            return PortInUse(f"{inst.id} could not listen on {inst.host}:{inst.port}: "
                             f"address already in use\n{tail}")
        return StartFailed(f"{inst.id} (port {inst.port}) {what}; last lines of {inst.log_path}:\n{tail}")

    def _stop_instance(self, inst: Instance) -> None:
        live = self._live_pid(inst)
        if live:
            process.terminate(*live, sig=signal.SIGINT, timeout=_STOP_TIMEOUT)
        inst.pid = inst.pid_start_time = None

    # -- creating data directories -----------------------------------------------------------
    def _initdb(self, writer: Instance) -> None:
        pwfile = os.path.join(self.base_dir, "initdb-password")
        self._write_owned(pwfile, self.password + "\n")
        try:
            process.run([self._bin("initdb"), "-D", writer.data_dir, "-U", self.user,
                         f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8",
                         "--locale=C", "--no-sync", "--no-instructions"],
                        owner=SERVICE_ACCOUNT, env=self._tool_env())
        except StandinError as e:
            raise StartFailed(f"initdb failed for {writer.id}: {e}") from None
        finally:
            with contextlib.suppress(OSError):
                os.remove(pwfile)
        with open(os.path.join(writer.data_dir, "postgresql.conf"), "a") as f:
            f.write(pgconf.server_conf(self.socket_dir, self.max_connections))
        self._write_owned(os.path.join(writer.data_dir, "pg_hba.conf"), pgconf.hba_conf(self.user))

    def _base_backup(self, inst: Instance, writer: Instance) -> None:
        """Copy the writer into the instance's (empty) data dir and make it a standby of it."""
        process.remove_tree(inst.data_dir)
        conninfo = make_conninfo(host=writer.host, port=writer.port, user=pgconf.REPLICATION_USER,
                                 connect_timeout=5)
        try:
            process.run([self._bin("pg_basebackup"), "-D", inst.data_dir, "-d", conninfo,
                         "-X", "stream", "--checkpoint=fast", "--no-sync"],
                        owner=SERVICE_ACCOUNT, env=self._tool_env(self.replication_password),
                        timeout=300)
        except StandinError as e:
            raise StartFailed(f"base backup of {writer.id} for {inst.id} failed: {e}") from None
        self._write_standby_files(inst, writer)

    def _write_standby_files(self, inst: Instance, writer: Instance) -> None:
        """standby.signal plus an auto.conf that streams from ``writer`` through its own slot."""
        self._write_owned(os.path.join(inst.data_dir, "standby.signal"), "")
        self._write_owned(os.path.join(inst.data_dir, "postgresql.auto.conf"),
                          pgconf.standby_auto_conf(self._primary_conninfo(writer),
                                                   pgconf.slot_name(inst.id)))

    def _primary_conninfo(self, writer: Instance) -> str:
        # No application_name: the WAL receiver then reports cluster_name, i.e. the instance id.
        return make_conninfo(host=writer.host, port=writer.port, user=pgconf.REPLICATION_USER,
                             password=self.replication_password, connect_timeout=2)

    def _write_owned(self, path: str, text: str) -> None:
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o600)
        if os.geteuid() == 0:
            os.chown(path, *process.service_user(SERVICE_ACCOUNT))

    @staticmethod
    def _tool_env(password: str | None = None) -> dict[str, str]:
        """Environment of the client tools: C locale (parsable output); the password, if any,
        in PGPASSWORD rather than on a command line that every local user can read."""
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANG": "C"}
        if password is not None:
            env["PGPASSWORD"] = password
        return env

    # -- failover steps ----------------------------------------------------------------------
    def _fence(self, old: Instance) -> int | None:
        """Stop the old writer; returns its shutdown checkpoint LSN if it shut down cleanly.

        A fast shutdown sends all remaining WAL to connected readers before exiting, so after a
        clean fence the readers can be waited for until they hold everything the writer wrote.
        """
        self._stop_instance(old)
        try:
            out = process.run([self._bin("pg_controldata"), "-D", old.data_dir],
                              owner=SERVICE_ACCOUNT, env=self._tool_env()).stdout
        except StandinError:
            return None
        state, lsn = pgconf.checkpoint_lsn_from_controldata(out)
        return lsn if state == "shut down" else None

    def _configure_new_writer(self, writer: Instance) -> None:
        """Slots for every reader, synchronous names, and a checkpoint for pg_rewind's sake."""
        control = self._control(writer)
        for r in self.readers:
            control.ensure_slot(pgconf.slot_name(r.id))
        control.drop_idle_slots_except([pgconf.slot_name(r.id) for r in self.readers])
        control.become_primary_settings()
        self._apply_synchronous_names(writer)

    def _repoint(self, reader: Instance, writer: Instance) -> None:
        """Point a running reader at the new writer; rejoin it the hard way if it won't listen."""
        try:
            self._control(reader).follow(self._primary_conninfo(writer), pgconf.slot_name(reader.id))
        except psycopg.Error:
            self._rejoin(reader, writer)

    def _rejoin(self, inst: Instance, writer: Instance) -> None:
        """Make a stopped or diverged instance a reader of ``writer``: pg_rewind, else re-clone."""
        self._stop_instance(inst)
        source = make_conninfo(host=writer.host, port=writer.port, user=self.user,
                               dbname=self.database, connect_timeout=5)
        try:
            process.run([self._bin("pg_rewind"), f"--target-pgdata={inst.data_dir}",
                         f"--source-server={source}", "--no-sync"],
                        owner=SERVICE_ACCOUNT, env=self._tool_env(self.password), timeout=300)
            self._clear_slots(inst)
            self._write_standby_files(inst, writer)
        except StandinError:
            self._base_backup(inst, writer)
        self._spawn(inst)

    @staticmethod
    def _clear_slots(inst: Instance) -> None:
        """Drop the slots a former writer kept for its readers: on a reader they would pin WAL."""
        slots = os.path.join(inst.data_dir, "pg_replslot")
        with contextlib.suppress(OSError):
            for name in os.listdir(slots):
                process.remove_tree(os.path.join(slots, name))

    def _discard(self, inst: Instance, writer: Instance) -> None:
        """Undo a half-made reader: stop it, drop its slot and its directory, forget it."""
        self._stop_instance(inst)
        self.instances.remove(inst)
        with contextlib.suppress(psycopg.Error):
            self._control(writer).drop_idle_slots_except([pgconf.slot_name(r.id) for r in self.readers])
        process.remove_tree(os.path.dirname(inst.data_dir))

    def _apply_synchronous_names(self, writer: Instance) -> None:
        self._control(writer).set_synchronous_names(
            pgconf.synchronous_standby_names([r.id for r in self.readers], self.synchronous))

    def _wait_streaming(self, writer: Instance, reader_ids: list[str],
                        timeout: float = _STREAM_TIMEOUT) -> None:
        missing: list[str] = []

        def all_streaming() -> bool:
            streaming = self._control(writer).streaming_names()
            missing[:] = [i for i in reader_ids if i not in streaming]
            for i in missing:
                inst = self.instance(i)
                if not self._live_pid(inst):
                    raise self._start_failure(inst, "stopped before it started streaming")
            return not missing

        if not process.wait_until(all_streaming, timeout, interval=0.05):
            logs = "\n".join(f"--- {i}:\n{process.log_tail(self.instance(i).log_path, 10)}"
                             for i in missing)
            raise ReplicationTimeout(f"{', '.join(missing)} did not start streaming from "
                                     f"{writer.id} within {timeout:.0f}s\n{logs}")

    def _control(self, inst: Instance) -> ServerControl:
        return ServerControl(inst.host, inst.port, self.user, self.password, self.database)
