"""PostgreSQL replication control for the stand-in: clone, follow, fence, rewind, synchronous names.

These are the steps the cluster (:mod:`~harness.standins.postgres.cluster`) composes into start-up,
failover and rejoin:

* a reader is a ``pg_basebackup`` of the writer with ``standby.signal`` and an auto.conf that
  streams through a physical slot of its own; its WAL receiver reports the instance id (the
  ``cluster_name``) as ``application_name``, which is how the writer names it;
* a fenced writer is shut down fast, and its shutdown checkpoint says whether it stopped cleanly
  (then every connected reader received all of its WAL);
* a former writer, or a reader with WAL the new writer never saw, rejoins with ``pg_rewind``, or a
  fresh base backup when rewind fails;
* ``synchronous_standby_names = 'ANY 1 (...)'`` makes every commit wait for one reader's flush.

Servers are started and stopped through :class:`~harness.standins.postgres.server.PostgresServers`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence

import psycopg
from psycopg.conninfo import make_conninfo

from harness import process
from harness.standins.base import Instance, ReplicationTimeout, StandinError, StartFailed
from harness.standins.postgres import conf
from harness.standins.postgres.server import PostgresServers, tool_env

STREAM_TIMEOUT = 60.0


class PostgresReplication:
    """Replication wiring of one cluster's servers; ``replication_password`` is the streaming role's."""

    def __init__(self, servers: PostgresServers, replication_password: str) -> None:
        self.servers = servers
        self.runtime = servers.runtime
        self.replication_password = replication_password

    # -- making readers --------------------------------------------------------------------------
    def base_backup(self, inst: Instance, writer: Instance) -> None:
        """Copy the writer into the instance's (empty) data dir and make it a standby of it."""
        data_dir = self.runtime.data_dir(inst.id)
        self.runtime.remove(data_dir)
        conninfo = make_conninfo(host=writer.host, port=writer.port, user=conf.REPLICATION_USER,
                                 connect_timeout=5)
        try:
            self.runtime.run_tool([self.runtime.binary("pg_basebackup"), "-D", data_dir, "-d", conninfo,
                                   "-X", "stream", "--checkpoint=fast", "--no-sync"],
                                  env=tool_env(self.replication_password), timeout=300)
        except StandinError as e:
            raise StartFailed(f"base backup of {writer.id} for {inst.id} failed: {e}") from None
        self.write_standby_files(inst, writer)

    def write_standby_files(self, inst: Instance, writer: Instance) -> None:
        """standby.signal plus an auto.conf that streams from ``writer`` through its own slot."""
        data_dir = self.runtime.data_dir(inst.id)
        self.runtime.write_file(os.path.join(data_dir, "standby.signal"), "")
        self.runtime.write_file(os.path.join(data_dir, "postgresql.auto.conf"),
                                conf.standby_auto_conf(self.primary_conninfo(writer), conf.slot_name(inst.id)))

    def primary_conninfo(self, writer: Instance) -> str:
        # No application_name: the WAL receiver then reports cluster_name, i.e. the instance id.
        return make_conninfo(host=writer.host, port=writer.port, user=conf.REPLICATION_USER,
                             password=self.replication_password, connect_timeout=2)

    def ensure_slot(self, writer: Instance, reader_id: str) -> None:
        self.servers.control(writer).ensure_slot(conf.slot_name(reader_id))

    def drop_slots_except(self, writer: Instance, readers: Sequence[Instance]) -> None:
        """Drop the writer's idle slots of readers that are no longer in the cluster."""
        self.servers.control(writer).drop_idle_slots_except([conf.slot_name(r.id) for r in readers])

    # -- failover steps --------------------------------------------------------------------------
    def fence(self, old: Instance) -> int | None:
        """Stop the old writer; returns its shutdown checkpoint LSN if it shut down cleanly.

        A fast shutdown sends all remaining WAL to connected readers before exiting, so after a
        clean fence the readers can be waited for until they hold everything the writer wrote.
        """
        self.servers.stop(old)
        state, lsn = self.servers.checkpoint_state(old)
        return lsn if state == "shut down" else None

    def received_lsn(self, inst: Instance) -> int:
        return self.servers.control(inst).received_lsn() or 0

    def promote(self, inst: Instance) -> None:
        self.servers.control(inst).promote(inst.id)

    def configure_new_writer(self, writer: Instance, readers: Sequence[Instance], synchronous: bool) -> None:
        """Slots for every reader, synchronous names, and a checkpoint for pg_rewind's sake."""
        control = self.servers.control(writer)
        for r in readers:
            control.ensure_slot(conf.slot_name(r.id))
        control.drop_idle_slots_except([conf.slot_name(r.id) for r in readers])
        control.become_primary_settings()
        self.apply_synchronous_names(writer, readers, synchronous)

    def repoint(self, reader: Instance, writer: Instance) -> None:
        """Point a running reader at the new writer; rejoin it the hard way if it won't listen."""
        try:
            self.servers.control(reader).follow(self.primary_conninfo(writer), conf.slot_name(reader.id))
        except psycopg.Error:
            self.rejoin(reader, writer)

    def rejoin(self, inst: Instance, writer: Instance) -> None:
        """Make a stopped or diverged instance a reader of ``writer``: pg_rewind, else re-clone."""
        self.servers.stop(inst)
        source = make_conninfo(host=writer.host, port=writer.port, user=self.servers.user,
                               dbname=self.servers.database, connect_timeout=5)
        try:
            self.runtime.run_tool([self.runtime.binary("pg_rewind"),
                                   f"--target-pgdata={self.runtime.data_dir(inst.id)}",
                                   f"--source-server={source}", "--no-sync"],
                                  env=tool_env(self.servers.password), timeout=300)
            self.clear_slots(inst)
            self.write_standby_files(inst, writer)
        except StandinError:
            self.base_backup(inst, writer)
        self.servers.start(inst)

    def clear_slots(self, inst: Instance) -> None:
        """Drop the slots a former writer kept for its readers: on a reader they would pin WAL."""
        slots = os.path.join(self.runtime.data_dir(inst.id), "pg_replslot")
        with contextlib.suppress(OSError):
            for name in os.listdir(slots):
                self.runtime.remove(os.path.join(slots, name))

    def apply_synchronous_names(self, writer: Instance, readers: Sequence[Instance], synchronous: bool) -> None:
        self.servers.control(writer).set_synchronous_names(
            conf.synchronous_standby_names([r.id for r in readers], synchronous))

    # -- waiting ---------------------------------------------------------------------------------
    def wait_streaming(self, writer: Instance, readers: Sequence[Instance],
                       is_running: Callable[[Instance], bool], timeout: float = STREAM_TIMEOUT) -> None:
        """Until the writer lists every one of ``readers`` as streaming; fails early if one stops."""
        missing: list[Instance] = []

        def all_streaming() -> bool:
            streaming = self.servers.control(writer).streaming_names()
            missing[:] = [r for r in readers if r.id not in streaming]
            for inst in missing:
                if not is_running(inst):
                    raise self.servers.start_failure(inst, "stopped before it started streaming")
            return not missing

        if not process.wait_until(all_streaming, timeout, interval=0.05):
            logs = "\n".join(f"--- {r.id}:\n{self.runtime.log_tail(r.id, 10)}" for r in missing)
            raise ReplicationTimeout(f"{', '.join(r.id for r in missing)} did not start streaming from "
                                     f"{writer.id} within {timeout:.0f}s\n{logs}")

    def wait_replayed(self, writer: Instance, readers: Sequence[Instance], timeout: float) -> None:
        """Until every one of ``readers`` has replayed up to the writer's current WAL position."""
        try:
            target = self.servers.control(writer).current_lsn()
        except psycopg.Error as e:
            raise ReplicationTimeout(f"cannot read the writer {writer.id}'s WAL position: {e}") from e
        behind: list[str] = []

        def caught_up() -> bool:
            behind[:] = [r.id for r in readers if (self.servers.control(r).replayed_lsn() or -1) < target]
            return not behind

        if not process.wait_until(caught_up, timeout, interval=0.05):
            raise ReplicationTimeout(f"readers {', '.join(behind)} did not replay up to the writer's "
                                     f"WAL position within {timeout:.1f}s")
