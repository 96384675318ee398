"""Building the target a run certifies from the plugin's options.

The reference target is a stand-in cluster (one writer, two readers) behind the reference proxy,
with a per-instance pool cap of 20 % of ``max_connections`` (100), i.e. 20 backend connections:
small enough that 200 clients must share backends, so multiplexing and the cap are observable.
Suites that need other pool settings (a short borrow timeout, TLS required) start a second proxy
on the same cluster with :func:`extra_proxy`.
"""

from __future__ import annotations

from typing import Any

from harness.plugin import PluginError
from harness.targets.base import Target, TargetError

REFERENCE_POOL = {"max_connections_percent": 20}
REFERENCE_READERS = 2


def build_target(kind: str, engine: str, *, writer_dsn: str | None = None, reader_dsns: list[str] | None = None,
                 metrics_url: str | None = None, readers: int = REFERENCE_READERS) -> Target:
    """A target that is not up yet (use it as a context manager)."""
    if kind == "reference":
        if writer_dsn or reader_dsns:
            raise PluginError("--writer-dsn/--reader-dsn are for --target external; the reference target "
                              "starts its own endpoints")
        from harness.targets.reference import ReferenceTarget

        return ReferenceTarget(engine, readers=readers, pool=dict(REFERENCE_POOL))
    if kind == "external":
        if not writer_dsn:
            raise PluginError("--target external needs --writer-dsn (and optionally --reader-dsn, --metrics-url)")
        from harness.targets.external import ExternalTarget

        try:
            return ExternalTarget(engine, writer_dsn, list(reader_dsns or []), metrics_url)
        except TargetError as e:
            raise PluginError(str(e)) from None
    raise PluginError(f"unknown target {kind!r}: expected reference or external")


def extra_proxy(target: Target, *, pool: dict[str, Any] | None = None, require_tls: bool = False,
                relays: bool = False) -> Target:
    """Another reference proxy on the same stand-in cluster, with its own settings (not up yet).

    ``relays`` puts TCP relays between this proxy and the instances, for network faults that must
    not disturb the other suites.
    """
    from harness.targets.reference import ReferenceTarget

    if not isinstance(target, ReferenceTarget) or target.cluster is None:
        raise PluginError("a second proxy can only be started in front of the reference target's cluster")
    return ReferenceTarget(target.engine, readers=target.readers, pool=pool, require_tls=require_tls,
                           cluster=target.cluster, relays=relays)


DEFAULT_MAX_CONNECTIONS_PERCENT = 100
"""RDS Proxy's default MaxConnectionsPercent."""


def pool_caps(target: Target) -> dict[str, int] | None:
    """Each instance's backend cap, computed without asking the proxy under test.

    Only the reference target's cap is known independently: the pool settings it was started with
    times each instance's ``max_connections`` read from the server itself, rounded down as RDS
    Proxy does.  Taking the cap from the proxy's own status would let a proxy that misjudges its
    cap certify itself.  Other targets: ``None`` (the guarantee is then unknown).
    """
    from harness.targets.base import Capability

    settings = getattr(target, "pool_settings", None)
    if target.kind != "reference" or settings is None or not target.supports(Capability.DIRECT):
        return None
    percent = settings.get("max_connections_percent") or DEFAULT_MAX_CONNECTIONS_PERCENT
    try:
        instances = target.direct_instances()
        return {i["id"]: server_max_connections(target.engine, i) * int(percent) // 100 for i in instances}
    except (TargetError, KeyError, TypeError, ValueError, OSError, PluginError):
        return None


def server_max_connections(engine: str, instance: dict[str, Any], timeout: float = 5.0) -> int:
    """``max_connections`` of one instance, asked directly (``instance`` as in ``direct_instances``)."""
    try:
        if engine == "postgres":
            import psycopg

            with psycopg.connect(host=instance["host"], port=instance["port"], user=instance["user"],
                                 password=instance["password"], dbname=instance["database"],
                                 connect_timeout=max(1, round(timeout)), autocommit=True) as conn:
                row = conn.execute("SHOW max_connections").fetchone()
        else:
            import pymysql

            conn = pymysql.connect(host=instance["host"], port=instance["port"], user=instance["user"],
                                   password=instance["password"], database=instance["database"],
                                   connect_timeout=timeout, read_timeout=timeout)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT @@max_connections")
                    row = cur.fetchone()
            finally:
                conn.close()
    except Exception as e:  # any driver error means "not known"
        raise PluginError(f"cannot read max_connections of {instance.get('id')!r}: {e}") from e
    if row is None:
        raise PluginError(f"{instance.get('id')!r} returned no max_connections")
    return int(row[0])


def reader_weights(target: Target) -> dict[str, float] | None:
    """Readers' weights for balancing, from the stand-in's own max_connections (equal here)."""
    from harness.targets.base import Capability

    if not target.supports(Capability.DIRECT):
        return None
    try:
        return {i["id"]: 1.0 for i in target.direct_instances() if i.get("role") == "reader"}
    except (TargetError, KeyError, TypeError):
        return None
