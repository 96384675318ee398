"""Which instance a new client session goes to, by endpoint kind, as RDS Proxy routes them.

* A read/write endpoint sends everything to the current writer (:meth:`Router.choose_writer`).
* A read-only endpoint spreads *new client sessions* over the available readers by "least
  outstanding connections" weighted by each reader's ``max_connections``: readers with
  500/500/1000 end up with sessions in about a 1:1:2 ratio.  It never sends a session to the writer,
  even when no reader is left (AWS documents reader endpoints failing rather than reading from the
  writer).  Existing sessions stay where they are.

Roles come from the topology monitor through :meth:`Router.update`; until it reports, the roles
given at construction (from the configuration) hold.  The router only counts sessions: it is
synchronous and does no I/O, so it can be tested on its own and called from any session.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reference_proxy.contracts import InstanceAddress, NoReader, NoWriter, ProxyError, Role


class RoutingError(ProxyError):
    """A routing call named an instance the router does not know, or was otherwise misused."""


class Router:
    """Chooses instances for new sessions and counts the sessions each instance serves."""

    def __init__(self, instances: Iterable[InstanceAddress | tuple[InstanceAddress, Role]],
                 roles: Mapping[str, Role] | None = None,
                 reader_endpoints: Mapping[str, Sequence[str] | None] | None = None,
                 ignore_weights: bool = False) -> None:
        """``instances`` are addresses, optionally paired with their role; ``roles`` may give roles
        by id instead.  ``reader_endpoints`` maps each read-only endpoint name to the reader ids it
        covers (None: all readers); an endpoint not listed covers all readers.  ``ignore_weights``
        is failpoint ``readers_round_robin`` (reference_proxy.failpoints): new reader sessions go
        to the readers in turn, whatever their max_connections."""
        self._addresses: dict[str, InstanceAddress] = {}
        self._roles: dict[str, Role] = {}
        for item in instances:
            address, role = item if isinstance(item, tuple) else (item, Role.UNKNOWN)
            if address.id in self._addresses:
                raise RoutingError(f"instance {address.id!r} is listed twice")
            self._addresses[address.id] = address
            self._roles[address.id] = Role(role)
        if roles:
            self.update(roles)
        self._weights: dict[str, int] = {}
        self._sessions: dict[str, int] = dict.fromkeys(self._addresses, 0)
        self._coverage: dict[str, frozenset[str] | None] = {}
        self._ignore_weights = ignore_weights
        self._turn = 0
        for name, readers in (reader_endpoints or {}).items():
            if readers is not None:
                self._check_known(readers)
            self._coverage[name] = None if readers is None else frozenset(readers)

    def update(self, roles: Mapping[str, Role]) -> None:
        """Replace the roles of the instances named (the monitor's latest view of the cluster).

        The topology monitor reports every instance in each update, so a failover lands in one call
        (old writer READER or UNKNOWN, new writer WRITER).  "No writer" - a failover in progress, or
        a split brain fenced by the monitor - is every instance READER or UNKNOWN: then
        :meth:`choose_writer` raises :class:`NoWriter` until an update names a writer again.
        """
        self._check_known(roles)
        merged = {**self._roles, **{i: Role(r) for i, r in roles.items()}}
        writers = [i for i, r in merged.items() if r is Role.WRITER]
        if len(writers) > 1:
            raise RoutingError(f"more than one writer reported: {sorted(writers)}; "
                               "report the old writer's new role in the same update")
        self._roles = merged

    def set_weight(self, instance_id: str, max_connections: int) -> None:
        """Weigh a reader by its ``max_connections`` (unweighted ones count as the average weight)."""
        self._check_known([instance_id])
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise RoutingError(f"weight of {instance_id!r} must be a whole number ≥ 1, got {max_connections!r}")
        self._weights[instance_id] = max_connections

    def choose_writer(self) -> InstanceAddress:
        """The writer, for a new session on a read/write endpoint; raises :class:`NoWriter`."""
        for instance_id, role in self._roles.items():
            if role is Role.WRITER:
                self._sessions[instance_id] += 1
                return self._addresses[instance_id]
        raise NoWriter("no instance is currently the writer")

    def writer(self) -> InstanceAddress:
        """The current writer without counting a session (for a session already counted)."""
        for instance_id, role in self._roles.items():
            if role is Role.WRITER:
                return self._addresses[instance_id]
        raise NoWriter("no instance is currently the writer")

    def readers_of(self, endpoint_name: str) -> list[str]:
        """Ids of the instances a read-only endpoint may use right now (role READER), in order."""
        covered = self._coverage.get(endpoint_name)
        return [i for i, r in self._roles.items() if r is Role.READER and (covered is None or i in covered)]

    def could_serve_reads(self, endpoint_name: str) -> bool:
        """True when the endpoint covers any instance that is not the writer now.

        An instance that is down (UNKNOWN) still counts: it may come back, so a reader endpoint
        waits for it; only a cluster with no reader instance at all fails at once.
        """
        covered = self._coverage.get(endpoint_name)
        return any(r is not Role.WRITER and (covered is None or i in covered) for i, r in self._roles.items())

    def choose_reader(self, endpoint_name: str, eligible: Iterable[str] | None = None) -> InstanceAddress:
        """A reader for a new session on a read-only endpoint; raises :class:`NoReader`.

        Picks the reader whose load after adding this session, ``(sessions + 1) / weight``, is
        lowest; ties go to the reader listed first.  ``eligible`` narrows the choice (a session
        moving off a lost reader may only go to readers that are not behind it).
        """
        candidates = self.readers_of(endpoint_name)
        if eligible is not None:
            allowed = set(eligible)
            candidates = [i for i in candidates if i in allowed]
        if not candidates:
            raise NoReader(f"endpoint {endpoint_name!r} has no reader instance available")
        # A reader not weighed yet (its max_connections is read on the first connection to it)
        # counts as an average one; weight 1 next to weights in the hundreds would starve it.
        if self._ignore_weights:
            chosen = candidates[self._turn % len(candidates)]
            self._turn += 1
        else:
            known = list(self._weights.values())
            default = sum(known) / len(known) if known else 1
            chosen = min(candidates, key=lambda i: (self._sessions[i] + 1) / self._weights.get(i, default))
        self._sessions[chosen] += 1
        return self._addresses[chosen]

    def session_ended(self, instance_id: str) -> None:
        """A session chosen by this router ended (call exactly once per choice)."""
        self._check_known([instance_id])
        if self._sessions[instance_id] <= 0:
            raise RoutingError(f"no session is open on {instance_id!r}")
        self._sessions[instance_id] -= 1

    def move_session(self, from_id: str, to_id: str) -> None:
        """A counted session now runs on ``to_id`` (failover moved it off ``from_id``)."""
        self._check_known([from_id, to_id])
        if from_id == to_id:
            return
        self.session_ended(from_id)
        self._sessions[to_id] += 1

    def role(self, instance_id: str) -> Role:
        try:
            return self._roles[instance_id]  # asked on every borrow: no list, no loop
        except KeyError:
            self._check_known([instance_id])
            raise

    def address(self, instance_id: str) -> InstanceAddress:
        self._check_known([instance_id])
        return self._addresses[instance_id]

    def snapshot(self) -> dict[str, Any]:
        """Roles, weights and session counts, for the status document."""
        return {
            "instances": {
                i: {"host": a.host, "port": a.port, "role": self._roles[i].value,
                    "weight": self._weights.get(i, 1), "sessions": self._sessions[i]}
                for i, a in self._addresses.items()},
            "reader_endpoints": {name: None if ids is None else sorted(ids)
                                 for name, ids in self._coverage.items()},
        }

    def _check_known(self, instance_ids: Iterable[str]) -> None:
        for instance_id in instance_ids:
            if instance_id not in self._addresses:
                raise RoutingError(f"unknown instance {instance_id!r}; known: {sorted(self._addresses)}")
