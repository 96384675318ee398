"""What a MariaDB stand-in instance is told at start-up, and the SQL that seeds a cluster.

Every instance runs with ``--defaults-file`` pointing at the file rendered here, so no system-wide
option file (``/etc/mysql``) leaks in and two clusters never share a setting by accident.  The file
depends only on the instance and its current role: it is rewritten at every start, so an
instance that changed role in a failover comes back in its new role.

Why these settings:

* ``report_host`` is the instance id, so ``SELECT @@report_host`` tells a client who served it
  (Aurora's ``@@aurora_server_id``).
* GTID replication with ``log_slave_updates`` and ``gtid_strict_mode``: every instance's binary log
  holds the whole history, so any reader can become the writer and the others follow it by GTID.
* Binary logs are never expired: new and rebuilt readers start from the seed copy and replay the
  writer's binary log from its very first event.
* Lossless semi-synchronous replication (``AFTER_SYNC``): the writer commits to its engine only
  once a reader has the transaction in its relay log, so an acknowledged commit is on a reader.
* Readers start with ``init_rpl_role=SLAVE`` and the semi-sync slave enabled, which makes crash
  recovery roll back (and cut from the binary log) transactions that were prepared but never
  acknowledged; a demoted writer that crashed therefore rejoins without extra transactions.
* ``skip_slave_start``: a reader only replicates after it is pointed at the *current* writer.
* No fsync (``sync_binlog=0``, ``innodb_flush_log_at_trx_commit=2``): the stand-ins simulate
  process crashes, which the OS page cache survives; fsyncs would only slow a small box down.
* Small buffers, because many instances share a couple of cores.
* A performance schema cut down to the two tables the suites read: ``session_connect_attrs``
  (the process list has no program name, and the harness must tell the proxy's own monitor and
  the stand-in's control sessions from the proxy's client backends) and ``metadata_locks`` with
  its ``mdl`` instrument (who holds which named lock, for the isolation checks).  Every other
  table is sized to nothing: with MariaDB's automatic sizing the schema adds about 100 MB to each
  instance's resident memory; cut down it adds about 7 MB.
* MySQL 8.0's default collation, ``utf8mb4_0900_ai_ci`` (id 255), is defined in a private
  character-set directory.  Aurora MySQL 3 has it and MySQL 8 drivers ask for it (Connector/Python
  sends ``SET NAMES 'utf8mb4' COLLATE 'utf8mb4_0900_ai_ci'`` to any server whose version is 8.0 or
  later, which is what a proxy imitating Aurora reports); MariaDB 10.11 lacks it and would answer
  1273.  MariaDB builds a UCA collation from an LDML entry at start-up; the entry's tailoring is a
  no-op (MariaDB crashes on an empty rule list), which leaves UCA's accent- and case-insensitive
  order, the ``ai_ci`` behaviour.  The compiled-in character sets need no files, so the directory
  holds only this index.
"""

from __future__ import annotations

import dataclasses

from pymysql.converters import escape_string

LOOPBACK = "127.0.0.1"

_PS_SIZED_TO_NOTHING = (
    "accounts-size", "hosts-size", "users-size", "digests-size", "max-digest-length", "max-sql-text-length",
    "events-stages-history-size", "events-stages-history-long-size",
    "events-statements-history-size", "events-statements-history-long-size",
    "events-transactions-history-size", "events-transactions-history-long-size",
    "events-waits-history-size", "events-waits-history-long-size",
    "max-cond-instances", "max-file-instances", "max-file-handles", "max-mutex-instances",
    "max-rwlock-instances", "max-socket-instances", "max-table-handles", "max-table-instances",
    "max-prepared-statements-instances", "max-program-instances", "max-index-stat",
    "max-table-lock-stat", "max-statement-classes", "max-memory-classes", "max-stage-classes",
)

PERFORMANCE_SCHEMA = (
    "performance-schema = ON",
    *(f"performance-schema-{name} = 0" for name in _PS_SIZED_TO_NOTHING),
    "performance-schema-max-statement-stack = 1",
    "performance-schema-session-connect-attrs-size = 512",
    "performance-schema-max-metadata-locks = 2000",
    "performance-schema-instrument = wait/lock/metadata/sql/mdl=ON",
)
"""The performance schema the suites need (connect attributes, named-lock owners) and no more."""

#: Engine sizes shared by the seed bootstrap and the instances (the redo log size must match
#: so the copy of the seed starts without resizing it).
ENGINE_SETTINGS = (
    "innodb-buffer-pool-size = 32M",
    "innodb-log-file-size = 16M",
    "innodb-log-buffer-size = 4M",
    "innodb-buffer-pool-load-at-startup = OFF",
    "innodb-buffer-pool-dump-at-shutdown = OFF",
    *PERFORMANCE_SCHEMA,
    "aria-pagecache-buffer-size = 8M",
    "key-buffer-size = 1M",
    "character-set-server = utf8mb4",
    "collation-server = utf8mb4_general_ci",
)


@dataclasses.dataclass(frozen=True)
class InstanceOptions:
    """Everything that varies between instances' option files."""

    instance_id: str
    server_id: int
    port: int
    instance_dir: str
    data_dir: str
    writer: bool
    semi_sync_master: bool
    semi_sync_timeout_ms: int
    max_connections: int


def socket_path(instance_dir: str) -> str:
    return f"{instance_dir}/mysqld.sock"


def pid_file_path(instance_dir: str) -> str:
    return f"{instance_dir}/mysqld.pid"


def option_file_path(instance_dir: str) -> str:
    return f"{instance_dir}/my.cnf"


def charsets_dir_path(instance_dir: str) -> str:
    return f"{instance_dir}/charsets"


MYSQL8_COLLATIONS_INDEX = """<?xml version="1.0" encoding="utf-8"?>
<charsets max-id="255">
  <charset name="utf8mb4">
    <collation name="utf8mb4_0900_ai_ci" id="255">
      <rules><reset>a</reset><i>a</i></rules>
    </collation>
  </charset>
</charsets>
"""
"""The character-set index of every instance: MySQL 8.0's default collation (see the module notes)."""


def _on(flag: bool) -> str:
    return "ON" if flag else "OFF"


def render_instance(o: InstanceOptions) -> str:
    """The option file of one instance in its current role."""
    lines = [
        f"# {o.instance_id}: written at each start from its current role ({'writer' if o.writer else 'reader'}).",
        "[mariadbd]",
        f"datadir = {o.data_dir}",
        f"tmpdir = {o.instance_dir}",
        f"socket = {socket_path(o.instance_dir)}",
        f"pid-file = {pid_file_path(o.instance_dir)}",
        f"port = {o.port}",
        f"bind-address = {LOOPBACK}",
        "skip-name-resolve",
        f"server-id = {o.server_id}",
        f"report-host = {o.instance_id}",
        f"report-port = {o.port}",
        f"max-connections = {o.max_connections}",
        f"character-sets-dir = {charsets_dir_path(o.instance_dir)}",
        "log-bin = binlog",
        "relay-log = relay-bin",
        "log-slave-updates",
        "binlog-format = ROW",
        "gtid-domain-id = 0",
        "gtid-strict-mode = ON",
        "binlog-expire-logs-seconds = 0",
        "skip-slave-start",
        "slave-net-timeout = 10",
        f"read-only = {_on(not o.writer)}",
        f"init-rpl-role = {'MASTER' if o.writer else 'SLAVE'}",
        f"rpl-semi-sync-master-enabled = {_on(o.writer and o.semi_sync_master)}",
        "rpl-semi-sync-master-wait-point = AFTER_SYNC",
        f"rpl-semi-sync-master-timeout = {o.semi_sync_timeout_ms}",
        f"rpl-semi-sync-slave-enabled = {_on(not o.writer)}",
        "sync-binlog = 0",
        "innodb-flush-log-at-trx-commit = 2",
        *ENGINE_SETTINGS,
    ]
    return "\n".join(lines) + "\n"


def render_seed(data_dir: str) -> str:
    """The option file mariadb-install-db bootstraps the seed data directory with."""
    return "\n".join(["[mariadbd]", f"datadir = {data_dir}", "skip-networking", *ENGINE_SETTINGS]) + "\n"


def seed_sql(*, user: str, password: str, database: str, admin_user: str, admin_password: str,
             replication_user: str, replication_password: str) -> str:
    """Accounts and database created in the seed, so every copy starts with them and the writer's
    binary log starts empty.

    The login user gets every privilege except ``READ_ONLY ADMIN``: in MariaDB 10.11 that one
    (not SUPER) lets a session write on a ``read_only`` server, and readers must refuse the login
    user's writes exactly like Aurora readers do.  The control user keeps it, to manage readers.
    """
    def lit(s: str) -> str:
        return "'" + escape_string(s) + "'"

    return "\n".join([
        # Bootstrap runs without grant tables loaded; account statements need them.
        "FLUSH PRIVILEGES;",
        f"CREATE USER {lit(admin_user)}@{lit(LOOPBACK)} IDENTIFIED BY {lit(admin_password)};",
        f"GRANT ALL PRIVILEGES ON *.* TO {lit(admin_user)}@{lit(LOOPBACK)} WITH GRANT OPTION;",
        f"CREATE USER {lit(replication_user)}@{lit(LOOPBACK)} IDENTIFIED BY {lit(replication_password)};",
        f"GRANT REPLICATION SLAVE ON *.* TO {lit(replication_user)}@{lit(LOOPBACK)};",
        f"CREATE USER {lit(user)}@'%' IDENTIFIED BY {lit(password)};",
        f"GRANT ALL PRIVILEGES ON *.* TO {lit(user)}@'%';",
        f"REVOKE READ_ONLY ADMIN ON *.* FROM {lit(user)}@'%';",
        f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4;",
    ]) + "\n"
