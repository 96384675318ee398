"""How a stand-in's servers run: the :class:`ServerRuntime` seam and its process implementation.

An engine (PostgreSQL, MariaDB) knows what to run and in which order; a runtime knows where an
instance's files live (data directory, log, sockets, pid file) and how its server is started,
stopped, killed, frozen and thawed.  Keeping the two apart is what lets the same engine code run
its servers as local child processes today and as containers later, and what keeps process ids and
host paths out of :class:`~harness.standins.base.Instance`: the runtime keeps one record per
instance and serialises it into the cluster's state.

:class:`ProcessRuntime` runs the engine's own binaries as child processes of ours, in a scratch
directory per cluster, as the engine's service account when we are root.  It translates the
process toolkit's errors into stand-in errors, which is what a user of a cluster is told.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import os
import signal
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from harness import process
from harness.standins.base import BinaryMissing, PortInUse, StandinError


@contextlib.contextmanager
def standin_errors() -> Iterator[None]:
    """Re-raise the process toolkit's errors as the stand-in errors a cluster's user expects."""
    try:
        yield
    except process.ExecutableMissing as e:
        raise BinaryMissing(str(e)) from None
    except process.PortTaken as e:
        raise PortInUse(str(e)) from None
    except process.ProcessError as e:
        raise StandinError(str(e)) from None


@dataclasses.dataclass(frozen=True)
class ServerLayout:
    """What a runtime must know about one engine's server, given by the engine.

    ``pid_file`` and ``command_mark`` are paths relative to the instance directory: the file the
    server writes its pid into, and a path that appears among its arguments; together they let a
    handle rebuilt from a stale record still find (and stop) a server that someone else restarted.
    """

    home_prefix: str              #: name prefix of the cluster's scratch directory
    service_account: str          #: system account the server runs as when we are root
    package: str                  #: Debian package that provides the binaries
    search_dirs: tuple[str, ...]  #: where the binaries are looked for before PATH
    log_name: str                 #: server output, in the instance directory
    pid_file: str
    command_mark: str
    instance_dir_mode: int = 0o700
    many_files: bool = False      #: raise our descriptor limit first (the server sizes caches by it)


@dataclasses.dataclass
class ServerRecord:
    """Where one instance's files are and which process serves it (``pid`` None: not started by us,
    or stopped).  ``pid_start_time`` is the kernel start time that makes the pid unambiguous."""

    data_dir: str
    log_path: str
    pid: int | None = None
    pid_start_time: int | None = None

    def to_state(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> ServerRecord:
        return cls(data_dir=d["data_dir"], log_path=d["log_path"], pid=d.get("pid"),
                   pid_start_time=d.get("pid_start_time"))


class ServerRuntime(abc.ABC):
    """Runs the servers of one cluster's instances and keeps their files; one per cluster.

    ``home`` is the cluster's own directory ("" until :meth:`create_home`).  Instance ids are the
    cluster's; an instance must be :meth:`place`-d before anything else is done to it.
    """

    kind: ClassVar[str]

    def __init__(self, layout: ServerLayout, home: str = "") -> None:
        self.layout = layout
        self.home = home

    # -- files -----------------------------------------------------------------------------------
    @abc.abstractmethod
    def create_home(self) -> str:
        """Create the cluster's directory; returns its path (also kept in ``home``)."""

    @abc.abstractmethod
    def remove_home(self) -> None:
        """Delete the cluster's directory and everything in it. Idempotent."""

    @abc.abstractmethod
    def place(self, instance_id: str) -> None:
        """Make room for a new instance: its directory, data directory and log location."""

    @abc.abstractmethod
    def forget(self, instance_id: str) -> None:
        """Delete an (already stopped) instance's files and record."""

    @abc.abstractmethod
    def instance_dir(self, instance_id: str) -> str:
        """The directory holding the instance's data directory, log and server files."""

    @abc.abstractmethod
    def data_dir(self, instance_id: str) -> str: ...

    @abc.abstractmethod
    def log_path(self, instance_id: str) -> str: ...

    @abc.abstractmethod
    def log_tail(self, instance_id: str, lines: int = 30) -> str:
        """The last lines of the server's output, for error messages."""

    @abc.abstractmethod
    def make_dir(self, path: str, mode: int) -> str:
        """Create a directory the server can use (owned by its account)."""

    @abc.abstractmethod
    def write_file(self, path: str, text: str, mode: int = 0o600) -> None:
        """Write a file the server reads (owned by its account)."""

    @abc.abstractmethod
    def remove(self, path: str) -> None:
        """Delete a file tree under ``home``; a missing path is fine."""

    # -- tools -----------------------------------------------------------------------------------
    @abc.abstractmethod
    def preflight(self, binaries: Sequence[str]) -> None:
        """Fail before anything is created if the engine's servers cannot run here (BinaryMissing
        naming what to install)."""

    @abc.abstractmethod
    def binary(self, name: str) -> str:
        """How to invoke one of the engine's programs; BinaryMissing naming the package if absent."""

    @abc.abstractmethod
    def run_tool(self, argv: Sequence[str], *, env: dict[str, str] | None = None,
                 timeout: float = 120.0) -> str:
        """Run one of the engine's tools to completion as the server's account; its standard output.
        StandinError with the tool's output if it fails."""

    @abc.abstractmethod
    def run_logged(self, argv: Sequence[str], log_path: str, *, timeout: float) -> int | None:
        """Run a tool that starts servers of its own (a bootstrap), output to ``log_path``; its exit
        status, or None if it overran ``timeout`` and was killed with everything it started."""

    # -- servers ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def start(self, instance_id: str, argv: Sequence[str], *, port: int,
              stale_locks: Sequence[str] = ()) -> None:
        """Start the instance's server (no waiting for it to answer).

        PortInUse if ``port`` is taken.  ``stale_locks`` are lock files the server refuses to start
        over; they are deleted first when the process they name is gone.
        """

    @abc.abstractmethod
    def running(self, instance_id: str) -> bool:
        """Whether the instance's server process exists (it may not answer yet, or be frozen)."""

    @abc.abstractmethod
    def stop(self, instance_id: str, *, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        """Ask the server to shut down with ``sig``; SIGKILL it after ``timeout`` seconds."""

    @abc.abstractmethod
    def stop_all(self, instance_ids: Sequence[str], *, sig: int = signal.SIGTERM,
                 timeout: float = 15.0) -> None:
        """:meth:`stop` every one of them at once (one shared timeout)."""

    @abc.abstractmethod
    def kill(self, instance_id: str) -> None:
        """SIGKILL the server with everything it forked: no shutdown at all."""

    @abc.abstractmethod
    def pause(self, instance_id: str) -> bool:
        """Freeze the server (it keeps its connections but answers nothing); False if not running."""

    @abc.abstractmethod
    def resume(self, instance_id: str) -> bool:
        """Thaw a frozen server; False if not running."""

    # -- state -----------------------------------------------------------------------------------
    @abc.abstractmethod
    def record_state(self, instance_id: str) -> dict[str, Any]:
        """The instance's record as JSON-able fields (merged into the instance's entry of the state)."""

    @abc.abstractmethod
    def load_record(self, instance_id: str, state: dict[str, Any]) -> None:
        """Counterpart of :meth:`record_state`, in a handle rebuilt from a cluster's state."""


class ProcessRuntime(ServerRuntime):
    """The engine's binaries as child processes in their own sessions, files in a temporary directory.

    Layout of ``home`` (removed by :meth:`remove_home`)::

        <home_prefix>XXXX/
            instance-1/data/        the data directory
            instance-1/<log_name>   server output
    """

    kind = "process"

    def __init__(self, layout: ServerLayout, home: str = "") -> None:
        super().__init__(layout, home)
        self.records: dict[str, ServerRecord] = {}

    # -- files -----------------------------------------------------------------------------------
    def create_home(self) -> str:
        with standin_errors():
            self.home = process.make_base_dir(self.layout.home_prefix, self.layout.service_account)
        return self.home

    def remove_home(self) -> None:
        # Only ever a directory we created: a corrupted record must not delete anything else.
        if self.home and os.path.basename(self.home.rstrip("/")).startswith(self.layout.home_prefix):
            process.remove_tree(self.home)

    def place(self, instance_id: str) -> None:
        directory = os.path.join(self.home, instance_id)
        self.make_dir(directory, self.layout.instance_dir_mode)
        self.records[instance_id] = ServerRecord(data_dir=os.path.join(directory, "data"),
                                                 log_path=os.path.join(directory, self.layout.log_name))

    def forget(self, instance_id: str) -> None:
        record = self.records.pop(instance_id, None)
        if record is not None:
            process.remove_tree(os.path.dirname(record.data_dir))

    def _record(self, instance_id: str) -> ServerRecord:
        try:
            return self.records[instance_id]
        except KeyError:
            raise StandinError(f"the runtime has no record of {instance_id}") from None

    def instance_dir(self, instance_id: str) -> str:
        return os.path.dirname(self._record(instance_id).data_dir)

    def data_dir(self, instance_id: str) -> str:
        return self._record(instance_id).data_dir

    def log_path(self, instance_id: str) -> str:
        return self._record(instance_id).log_path

    def log_tail(self, instance_id: str, lines: int = 30) -> str:
        return process.log_tail(self.log_path(instance_id), lines)

    def make_dir(self, path: str, mode: int) -> str:
        with standin_errors():
            return process.make_owned_dir(path, self.layout.service_account, mode)

    def write_file(self, path: str, text: str, mode: int = 0o600) -> None:
        with standin_errors():
            process.write_private(path, text, self.layout.service_account, mode=mode, replace=True)

    def remove(self, path: str) -> None:
        process.remove_tree(path)

    # -- tools -----------------------------------------------------------------------------------
    def preflight(self, binaries: Sequence[str]) -> None:
        """The binaries exist and, when we are root, so does the account the servers run as
        (PostgreSQL and MariaDB refuse to run as root)."""
        for name in binaries:
            self.binary(name)
        if self.layout.service_account and os.geteuid() == 0:
            with standin_errors():
                process.service_user(self.layout.service_account)

    def binary(self, name: str) -> str:
        with standin_errors():
            return process.find_binary(name, self.layout.search_dirs, self.layout.package)

    def run_tool(self, argv: Sequence[str], *, env: dict[str, str] | None = None,
                 timeout: float = 120.0) -> str:
        with standin_errors():
            return process.run(argv, owner=self.layout.service_account, env=env, timeout=timeout).stdout

    def run_logged(self, argv: Sequence[str], log_path: str, *, timeout: float) -> int | None:
        return process.run_in_own_group(argv, log_path, owner=self.layout.service_account,
                                        timeout=timeout)

    # -- servers ---------------------------------------------------------------------------------
    def _live(self, instance_id: str) -> tuple[int, int | None] | None:
        """(pid, start time) of the instance's server if it runs: the recorded process, else the one
        its pid file names (a handle rebuilt from a stale record still finds a restarted server)."""
        record = self._record(instance_id)
        if process.pid_alive(record.pid, record.pid_start_time):
            assert record.pid is not None
            return record.pid, record.pid_start_time
        directory = os.path.dirname(record.data_dir)
        pid = process.pid_from_file(os.path.join(directory, self.layout.pid_file),
                                    os.path.join(directory, self.layout.command_mark))
        return (pid, process.start_time(pid)) if pid else None

    def start(self, instance_id: str, argv: Sequence[str], *, port: int,
              stale_locks: Sequence[str] = ()) -> None:
        record = self._record(instance_id)
        with standin_errors():
            process.check_port_free(port)
            for lock in stale_locks:
                clear_stale_lock(lock)
            if self.layout.many_files:
                process.raise_fd_limit()  # inherited by the server
            record.pid, record.pid_start_time = process.spawn(argv, log_path=record.log_path,
                                                              owner=self.layout.service_account)

    def running(self, instance_id: str) -> bool:
        return self._live(instance_id) is not None

    def stop(self, instance_id: str, *, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        record = self._record(instance_id)
        with standin_errors():
            process.terminate(record.pid, record.pid_start_time, sig=sig, timeout=timeout)
            stray = self._live(instance_id)  # started by someone else: known by its pid file only
            if stray:
                process.terminate(*stray, sig=sig, timeout=timeout)
        record.pid = record.pid_start_time = None

    def stop_all(self, instance_ids: Sequence[str], *, sig: int = signal.SIGTERM,
                 timeout: float = 15.0) -> None:
        live = [(i, *pid) for i in instance_ids if (pid := self._live(i))]
        for _, pid, start in live:
            _signal(pid, sig)
        process.wait_until(lambda: not any(process.pid_alive(p, s) for _, p, s in live), timeout)
        with standin_errors():
            for _, pid, start in live:
                process.kill(pid, start)
        for i in instance_ids:
            record = self._record(i)
            record.pid = record.pid_start_time = None

    def kill(self, instance_id: str) -> None:
        live = self._live(instance_id)
        if live:
            with standin_errors():
                process.kill(*live)
        record = self._record(instance_id)
        record.pid = record.pid_start_time = None

    def pause(self, instance_id: str) -> bool:
        live = self._live(instance_id)
        return live is not None and process.signal_group(*live, signal.SIGSTOP)

    def resume(self, instance_id: str) -> bool:
        live = self._live(instance_id)
        return live is not None and process.signal_group(*live, signal.SIGCONT)

    # -- state -----------------------------------------------------------------------------------
    def record_state(self, instance_id: str) -> dict[str, Any]:
        return self._record(instance_id).to_state()

    def load_record(self, instance_id: str, state: dict[str, Any]) -> None:
        self.records[instance_id] = ServerRecord.from_state(state)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def clear_stale_lock(lock: str) -> None:
    """Delete a lock file whose first line names a process that is gone or a zombie.

    A killed server stays a zombie until its parent reaps it, and that parent may be another process
    (the command or the supervisor that last started it).  A server's own check sees the zombie's pid
    as alive and refuses to start ("lock file already exists"); we know better.
    """
    try:
        with open(lock) as f:
            pid = int(f.readline().strip())
    except (OSError, ValueError):
        return
    if not process.pid_alive(pid):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
