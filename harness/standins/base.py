"""The stand-in cluster model shared by every engine and runtime.

A stand-in imitates an Aurora cluster: one writer instance and N reader instances that replicate
from it, each knowing its own instance identifier so a query can tell who served it.  Engines
(the ``postgres`` and ``mysql`` packages next to this module) implement :class:`Cluster` and are
looked up by name in :mod:`harness.standins.registry`; everything above them (the CLI, targets,
faults, suites) talks only to this interface.  An :class:`Instance` is what a client sees (id,
role, address); how its server runs and where its files are belong to the engine's runtime
(:mod:`harness.standins.runtime`).

A cluster's whole identity is serialisable (:meth:`Cluster.to_state` /
:func:`harness.standins.registry.cluster_from_state`) so that the CLI can start a cluster, exit,
and a later CLI invocation can fail it over or tear it down: the servers outlive the process that
started them.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
from collections.abc import Sequence
from typing import Any, Self

from harness.errors import HarnessError

PROBE_PROGRAM_NAME = "aurora-harness-supervisor"
"""The program (application) name of :meth:`Cluster.query_value`'s one-shot connections (the
supervisor's pings), by which the suites tell them from the proxy's backends on either engine."""


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
    """One database server of a stand-in cluster as its clients see it: its id, role and address.

    Whatever identifies the server itself (a process, a container) and where its files are is kept
    by the cluster's runtime, not here.
    """

    id: str
    role: Role
    host: str
    port: int

    def to_state(self) -> dict[str, Any]:
        return {"id": self.id, "role": self.role.value, "host": self.host, "port": self.port}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> Self:
        """Rebuild from a state entry (which also carries the runtime's fields: ignored here)."""
        return cls(id=d["id"], role=Role(d["role"]), host=d["host"], port=int(d["port"]))


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


def check_reader_max_connections(values: Sequence[int] | None, readers: int, low: int,
                                 high: int) -> tuple[int, ...] | None:
    """Validate per-reader ``max_connections`` (one per initial reader, like Aurora instance classes
    of different sizes): RDS Proxy weighs readers by it, so a stand-in needs readers that differ."""
    if values is None:
        return None
    values = tuple(values)
    if len(values) != readers:
        raise StandinError(f"reader_max_connections must give one value per reader ({readers}), got {len(values)}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise StandinError(f"each reader's max_connections must be a whole number from {low} to {high}, "
                               f"not {v!r}")
    return values


class Cluster(abc.ABC):
    """One writer and N readers of one engine; usable as a context manager that cleans up.

    Implementations must make :meth:`stop` safe to call at any point, including after a partial
    :meth:`start` and after the instances were killed from outside, and must leave no process and
    no data directory behind.
    """

    engine: str = ""
    #: A query that returns true on an instance that takes writes (promoted, or never demoted).
    writable_query: str = ""

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
        """Kill the instance's server outright (SIGKILL for a process), with no shutdown."""

    @abc.abstractmethod
    def restart(self, instance_id: str) -> None:
        """Start a stopped or crashed instance again in its current role, and wait until it answers."""

    @abc.abstractmethod
    def add_reader(self) -> str:
        """Create a new reader from the current writer; returns its id once it replicates."""

    @abc.abstractmethod
    def wait_replicated(self, timeout: float = 30.0) -> None:
        """Block until every running reader has replayed everything the writer has committed."""

    @abc.abstractmethod
    def running(self, instance_id: str) -> bool:
        """Whether the instance's server runs (started and not crashed or stopped), answering or not."""

    @abc.abstractmethod
    def query_value(self, instance_id: str, query: str, timeout: float) -> Any:
        """Run ``query`` on the instance as the cluster's user over a fresh connection that gives up
        after ``timeout`` seconds; the first value of the first row.  Raises the driver's errors."""

    # -- logins (what a password rotation acts on) ---------------------------------------------
    def create_login(self, user: str, password: str) -> None:
        """Create a login on the writer that may use the cluster's database (or, if it exists, give
        it ``password``): a database user whose password a rotation can change without touching
        the cluster's own user, which the stand-in's control operations log in as."""
        raise StandinError(f"{type(self).__name__} cannot create logins")

    def set_password(self, user: str, password: str) -> None:
        """Change a login's password on the writer (a rotation's setSecret step)."""
        raise StandinError(f"{type(self).__name__} cannot change passwords")

    def check_login(self, user: str, password: str, timeout: float = 5.0) -> None:
        """Log in to the writer as ``user`` with ``password`` and run a trivial query (a rotation's
        testSecret step); raises the driver's error when the server refuses."""
        raise StandinError(f"{type(self).__name__} cannot check logins")

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
            "instances": [{**i.to_state(), **self._server_state(i.id)} for i in self.instances],
            "extra": self._extra_state(),
        }

    def _extra_state(self) -> dict[str, Any]:
        """Engine-specific fields to persist; override when an engine needs more."""
        return {}

    def _server_state(self, instance_id: str) -> dict[str, Any]:
        """The runtime's record of one instance, stored in that instance's entry of the state."""
        return {}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        obj = cls.__new__(cls)
        Cluster.__init__(obj, base_dir=state["base_dir"], user=state["user"],
                         password=state["password"], database=state["database"],
                         instances=[Instance.from_state(d) for d in state["instances"]])
        obj._load_extra_state(state.get("extra", {}))
        obj._load_server_state({d["id"]: d for d in state["instances"]})
        return obj

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        """Counterpart of _extra_state; also must set any attribute __init__ would have set."""

    def _load_server_state(self, entries: dict[str, dict[str, Any]]) -> None:
        """Counterpart of _server_state: each instance's whole state entry, by instance id."""
