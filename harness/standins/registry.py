"""Engine name -> stand-in cluster class: the one place where the engines are listed.

Everything that picks an engine by name (the CLI's ``--engine``, targets, a cluster record read
back from disk) asks here, so a new engine is one package under ``harness/standins/`` plus one
line in :data:`ENGINES`.
"""

from __future__ import annotations

from typing import Any

from harness.standins.base import Cluster, StandinError
from harness.standins.mysql.cluster import MySQLCluster
from harness.standins.postgres.cluster import PostgresCluster

#: Every stand-in engine, by the name used on command lines and in cluster records.
ENGINES: dict[str, type[Cluster]] = {cls.engine: cls for cls in (PostgresCluster, MySQLCluster)}


def engine_names() -> list[str]:
    """The engine names, in the order they are offered to users."""
    return list(ENGINES)


def cluster_class(engine: str) -> type[Cluster]:
    """The Cluster implementation for an engine name."""
    try:
        return ENGINES[engine]
    except KeyError:
        expected = " or ".join(repr(name) for name in ENGINES)
        raise StandinError(f"unknown engine {engine!r}: expected {expected}") from None


def cluster_from_state(state: dict[str, Any]) -> Cluster:
    """Rebuild a running cluster's handle from what :meth:`Cluster.to_state` wrote."""
    return cluster_class(state["engine"]).from_state(state)
