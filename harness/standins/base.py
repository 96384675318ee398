"""The stand-in cluster model shared by every engine and runtime.

A stand-in imitates an Aurora cluster: one writer instance and N reader instances that replicate
from it, each knowing its own instance identifier so a query can tell who served it.  Engines
(`postgres.py`, `mysql.py`) implement :class:`Cluster`; everything above them (the CLI, targets,
faults, suites) talks only to this interface.

A cluster's whole identity is serialisable (:meth:`Cluster.to_state` / :func:`cluster_from_state`)
so that the CLI can start a cluster, exit, and a later CLI invocation can fail it over or tear it
down: the server processes are started in their own session and outlive the process that started
them.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
from typing import Any, Self

from harness.errors import HarnessError


class StandinError(HarnessError):
    """Root of every error raised by the stand-ins."""


class BinaryMissing(StandinError):
    """An engine binary is not installed; the message names the Debian package that provides it."""


class PortInUse(StandinError):
    """The port an instance was asked to use is taken by another process."""


class StartFailed(StandinError):
    """A server did not come up; the message carries the tail of its log."""


class UnknownInstance(StandinError):
    """An instance id that this cluster does not have."""


class ReplicationTimeout(StandinError):
    """Readers did not catch up with the writer in the time allowed."""


class Role(str, enum.Enum):
    """The role an instance plays in the cluster, with the exact strings of the public JSON."""

    WRITER = "writer"
    READER = "reader"


@dataclasses.dataclass
class Instance:
    """One database server of a stand-in cluster and what is needed to reach and manage it.

    ``pid`` and ``pid_start_time`` (the kernel's start time of that pid, in clock ticks) together
    identify the server process even after the CLI that started it has exited, so a later ``down``
    never signals an unrelated process that reused the pid.
    """

    id: str
    role: Role
    host: str
    port: int
    data_dir: str
    log_path: str
    pid: int | None = None
    pid_start_time: int | None = None

    def to_state(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["role"] = self.role.value
        return d

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> Self:
        d = dict(d)
        d["role"] = Role(d["role"])
        return cls(**d)


@dataclasses.dataclass(frozen=True)
class ConnectionParams:
    """How a client reaches one instance directly (host, port, credentials, database)."""

    host: str
    port: int
    user: str
    password: str
    database: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ReaderStatus:
    """A reader's health as seen from the writer: is it streaming, and how far behind is it."""

    id: str
    replicating: bool
    lag_seconds: float | None
    lag_bytes: int | None = None


@dataclasses.dataclass(frozen=True)
class Topology:
    """Who is the writer and how the readers are doing, as measured now (not as remembered)."""

    writer: str | None
    readers: tuple[ReaderStatus, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "writer": self.writer,
            "readers": [dataclasses.asdict(r) for r in self.readers],
        }


class Cluster(abc.ABC):
    """One writer and N readers of one engine; usable as a context manager that cleans up.

    Implementations must make :meth:`stop` safe to call at any point, including after a partial
    :meth:`start` and after the instances were killed from outside, and must leave no process and
    no data directory behind.
    """

    engine: str = ""

    def __init__(self, *, base_dir: str, user: str, password: str, database: str,
                 instances: list[Instance] | None = None) -> None:
        self.base_dir = base_dir
        self.user = user
        self.password = password
        self.database = database
        self.instances: list[Instance] = instances or []

    # -- lifecycle ---------------------------------------------------------------------------
    @abc.abstractmethod
    def start(self) -> None:
        """Create, start and wire up the writer and readers; raise a StandinError saying why if not."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop every instance and remove all data. Idempotent."""

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- operations --------------------------------------------------------------------------
    @abc.abstractmethod
    def topology(self) -> Topology:
        """Ask the servers who is writer and how far each reader is behind."""

    @abc.abstractmethod
    def failover(self, target: str | None = None) -> str:
        """Promote ``target`` (or the most advanced reader), repoint the other readers, fence the old
        writer and bring it back as a reader. Returns the new writer's id."""

    @abc.abstractmethod
    def crash(self, instance_id: str) -> None:
        """SIGKILL the instance's server process, with no shutdown."""

    @abc.abstractmethod
    def restart(self, instance_id: str) -> None:
        """Start a stopped or crashed instance again in its current role, and wait until it answers."""

    @abc.abstractmethod
    def add_reader(self) -> str:
        """Create a new reader from the current writer; returns its id once it replicates."""

    @abc.abstractmethod
    def wait_replicated(self, timeout: float = 30.0) -> None:
        """Block until every running reader has replayed everything the writer has committed."""

    # -- description -------------------------------------------------------------------------
    def instance(self, instance_id: str) -> Instance:
        for inst in self.instances:
            if inst.id == instance_id:
                return inst
        raise UnknownInstance(f"no instance {instance_id!r} in this cluster "
                              f"(have: {', '.join(i.id for i in self.instances)})")

    @property
    def writer(self) -> Instance:
        """The instance this cluster last made writer (its own record, not a live query)."""
        for inst in self.instances:
            if inst.role is Role.WRITER:
                return inst
        raise StandinError("cluster has no writer")

    @property
    def readers(self) -> list[Instance]:
        return [i for i in self.instances if i.role is Role.READER]

    def connection_params(self, instance_id: str) -> ConnectionParams:
        inst = self.instance(instance_id)
        return ConnectionParams(inst.host, inst.port, self.user, self.password, self.database)

    def describe(self) -> dict[str, Any]:
        """The public JSON contract of ``standin up --json`` / ``standin status --json``."""
        return {
            "engine": self.engine,
            "instances": [
                {"id": i.id, "role": i.role.value, "host": i.host, "port": i.port,
                 "user": self.user, "password": self.password, "database": self.database}
                for i in self.instances
            ],
        }

    def to_state(self) -> dict[str, Any]:
        """Everything needed to rebuild this object in another process (see cluster_from_state)."""
        return {
            "engine": self.engine,
            "base_dir": self.base_dir,
            "user": self.user,
            "password": self.password,
            "database": self.database,
            "instances": [i.to_state() for i in self.instances],
            "extra": self._extra_state(),
        }

    def _extra_state(self) -> dict[str, Any]:
        """Engine-specific fields to persist; override when an engine needs more."""
        return {}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        obj = cls.__new__(cls)
        Cluster.__init__(obj, base_dir=state["base_dir"], user=state["user"],
                         password=state["password"], database=state["database"],
                         instances=[Instance.from_state(d) for d in state["instances"]])
        obj._load_extra_state(state.get("extra", {}))
        return obj

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        """Counterpart of _extra_state; also must set any attribute __init__ would have set."""


def cluster_class(engine: str) -> type[Cluster]:
    """The Cluster implementation for an engine name ('postgres' or 'mysql')."""
    if engine == "postgres":
        from harness.standins.postgres import PostgresCluster
        return PostgresCluster
    if engine == "mysql":
        from harness.standins.mysql import MySQLCluster
        return MySQLCluster
    raise StandinError(f"unknown engine {engine!r}: expected 'postgres' or 'mysql'")


def cluster_from_state(state: dict[str, Any]) -> Cluster:
    """Rebuild a running cluster's handle from what :meth:`Cluster.to_state` wrote."""
    return cluster_class(state["engine"]).from_state(state)
