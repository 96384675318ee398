"""Configuration text and small value helpers for the PostgreSQL stand-in (no I/O).

Everything here is a pure function of its arguments so that the exact server settings, access
rules and standby wiring can be unit-tested without starting a server.  The server and
replication modules (:mod:`harness.standins.postgres.server`,
:mod:`harness.standins.postgres.replication`) write these strings into data directories.

Why these settings:

* ``wal_level = replica``, enough WAL senders and slots, and ``wal_log_hints = on``: streaming
  replication, physical slots per reader, and ``pg_rewind`` of a fenced writer need them.
* ``fsync = off``: the stand-in only has to survive a *process* crash (SIGKILL), never an operating
  system crash, and the page cache survives a killed process.  Commit acknowledgement still waits
  for a standby's flush when replication is synchronous, so an acknowledged commit is on two
  servers before the client hears about it.
* Short ``wal_receiver_status_interval`` and ``wal_retrieve_retry_interval``: readers report
  their position and reconnect to a new writer within a fraction of a second, which keeps
  failovers quick and lag numbers fresh.
"""

from __future__ import annotations

import re

from harness.standins.base import StandinError

#: SQL run in template1, postgres and the cluster's database, so that every database answers
#: ``SELECT aurora_db_instance_identifier()`` like Aurora PostgreSQL does.
INSTANCE_ID_FUNCTION_SQL = (
    "CREATE OR REPLACE FUNCTION aurora_db_instance_identifier() RETURNS text "
    "LANGUAGE sql STABLE PARALLEL SAFE "
    "AS $$ SELECT current_setting('cluster_name') $$"
)

#: Role used by readers (and base backups) to stream WAL from the writer.
REPLICATION_USER = "replicator"

def hba_conf(user: str) -> str:
    """Client authentication: passwords over TCP on loopback only, nothing else.

    The cluster's own user must use SCRAM (its password is stored as a SCRAM secret).  Other
    roles may use md5 -- a role created with ``password_encryption = md5`` lets a test exercise
    a backend that asks for md5, as older Aurora parameter groups do.  Under the ``md5`` method
    a role with a SCRAM secret still authenticates with SCRAM.
    """
    return (
        "# TYPE  DATABASE     USER  ADDRESS        METHOD\n"
        "local   all          all                  scram-sha-256\n"
        f"host    all          {user}  127.0.0.1/32   scram-sha-256\n"
        "host    replication  all   127.0.0.1/32   scram-sha-256\n"
        "host    all          all   127.0.0.1/32   md5\n"
    )


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def validate_identifier(kind: str, value: str) -> str:
    """Return ``value`` if it is a plain SQL identifier (so it never needs quoting), else raise.

    User and database names end up in SQL, in configuration files and in connection strings;
    restricting them to plain identifiers keeps every one of those places simple and safe.
    """
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise StandinError(f"{kind} {value!r} is not a plain identifier: use letters, digits and "
                           "underscores, starting with a letter or underscore, at most 63 characters")
    return value


def validate_password(password: str) -> str:
    """Return ``password`` if it can be written to a password file and a configuration string."""
    if not isinstance(password, str) or not password:
        raise StandinError("password must be a non-empty string")
    if any(c in password for c in "\0\r\n"):
        raise StandinError("password must not contain NUL or line breaks")
    return password


def quote_conf_value(value: str) -> str:
    """A string literal for postgresql.conf / postgresql.auto.conf (quotes doubled, backslashes escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def slot_name(instance_id: str) -> str:
    """The physical replication slot a reader uses (slot names allow only ``[a-z0-9_]``)."""
    return re.sub(r"[^a-z0-9_]", "_", instance_id.lower())


def synchronous_standby_names(reader_ids: list[str], synchronous: bool) -> str:
    """``ANY 1 ("instance-2", ...)``: a commit waits until at least one reader has flushed it.

    Empty (asynchronous) when synchronous replication is off or there is no reader, so that a
    cluster without readers never blocks its commits.
    """
    if not synchronous or not reader_ids:
        return ""
    names = ", ".join('"' + r.replace('"', '""') + '"' for r in reader_ids)
    return f"ANY 1 ({names})"


def server_conf(socket_dir: str, max_connections: int) -> str:
    """Settings appended to every instance's postgresql.conf (base backups copy it to readers).

    The port and ``cluster_name`` differ per instance and are given on the server's command line
    instead (see :func:`server_argv`), so one file serves every instance.
    """
    settings = {
        "listen_addresses": "'127.0.0.1'",
        "unix_socket_directories": quote_conf_value(socket_dir),
        "max_connections": str(max_connections),
        "password_encryption": "'scram-sha-256'",
        "shared_buffers": "'16MB'",
        "huge_pages": "off",
        "wal_level": "replica",
        "max_wal_senders": "20",
        "max_replication_slots": "20",
        "wal_keep_size": "'256MB'",
        "max_slot_wal_keep_size": "'2GB'",
        "wal_log_hints": "on",
        "full_page_writes": "on",
        "fsync": "off",
        "synchronous_commit": "on",
        "hot_standby": "on",
        "hot_standby_feedback": "on",
        "wal_receiver_status_interval": "'1s'",
        "wal_retrieve_retry_interval": "'200ms'",
        "wal_receiver_timeout": "'10s'",
        "wal_sender_timeout": "'10s'",
        "max_wal_size": "'256MB'",
        "min_wal_size": "'32MB'",
        "logging_collector": "off",
        "log_line_prefix": "'%m [%p] %q%a '",
    }
    lines = ["", "# --- stand-in settings ---"]
    lines += [f"{k} = {v}" for k, v in settings.items()]
    return "\n".join(lines) + "\n"


def standby_auto_conf(primary_conninfo: str, primary_slot: str) -> str:
    """postgresql.auto.conf of a reader: where to stream from and with which slot.

    Written whole (not edited) so that settings copied from the writer by a base backup or a
    rewind, such as ``synchronous_standby_names``, never linger on a reader.
    """
    return ("# Do not edit this file manually!\n"
            "# It will be overwritten by the ALTER SYSTEM command.\n"
            f"primary_conninfo = {quote_conf_value(primary_conninfo)}\n"
            f"primary_slot_name = {quote_conf_value(primary_slot)}\n")


def server_argv(postgres_bin: str, data_dir: str, port: int, instance_id: str,
                max_connections: int | None = None) -> list[str]:
    """Command line of one instance's postmaster; per-instance settings override the shared file
    (``max_connections`` when the instance's differs from the cluster's, like an instance class)."""
    argv = [postgres_bin, "-D", data_dir, "-p", str(port), "-c", f"cluster_name={instance_id}"]
    if max_connections is not None:
        argv += ["-c", f"max_connections={max_connections}"]
    return argv


def parse_lsn(text: str | None) -> int | None:
    """A ``pg_lsn`` in its text form (``16/B374D848``) as an integer byte position."""
    if text is None:
        return None
    try:
        hi, lo = text.split("/")
        return (int(hi, 16) << 32) | int(lo, 16)
    except ValueError:
        raise StandinError(f"not a WAL position: {text!r}") from None


def checkpoint_lsn_from_controldata(output: str) -> tuple[str | None, int | None]:
    """(cluster state, latest checkpoint LSN) from ``pg_controldata`` output in the C locale."""
    state = lsn = None
    for line in output.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Database cluster state":
            state = value.strip()
        elif key.strip() == "Latest checkpoint location":
            lsn = parse_lsn(value.strip())
    return state, lsn
