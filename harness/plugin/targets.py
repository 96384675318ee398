"""What the suites need from the target beyond its endpoints: sibling proxies, pool caps, reader weights.

Targets are built from the command line through :mod:`harness.targets.registry`; this module only
asks them what they can do (capabilities), never which kind they are, and turns what they cannot
tell into ``None`` so the guarantees concerned are unknown.
"""

from __future__ import annotations

import contextlib
from typing import Any

from harness.plugin import PluginError
from harness.targets.base import Capability, Target, TargetError


def extra_proxy(target: Target, *, pool: dict[str, Any] | None = None, require_tls: bool = False,
                relays: bool = False) -> Target:
    """Another proxy on the same cluster as ``target``, with its own settings (not up yet).

    ``relays`` puts TCP relays between that proxy and the instances, for network faults that must
    not disturb the other suites.  A target without ``sibling_proxy`` raises
    :class:`~harness.targets.base.Unsupported`: the test's guarantees are then unknown.
    """
    target.require(Capability.SIBLING_PROXY)
    return target.sibling_proxy(pool=pool, require_tls=require_tls, relays=relays)


DEFAULT_MAX_CONNECTIONS_PERCENT = 100
"""RDS Proxy's default MaxConnectionsPercent."""


def pool_caps(target: Target) -> dict[str, int] | None:
    """Each instance's backend cap, computed without asking the proxy under test.

    The cap is known independently only for a target whose pool settings are known without asking
    the proxy (``pool_settings``) and whose instances can be reached directly (``direct``): those
    settings times each instance's ``max_connections`` read from the server itself, rounded down
    as RDS Proxy does.  Taking the cap from the proxy's own status would let a proxy that misjudges
    its cap certify itself.  An instance that does not answer (crashed) is left out, so the others'
    caps stay known.  Other targets, or none answering: ``None`` (the guarantee is then unknown).
    """
    settings = target.pool_settings
    if not (target.supports(Capability.POOL_SETTINGS) and target.supports(Capability.DIRECT)) or settings is None:
        return None
    percent = settings.get("max_connections_percent") or DEFAULT_MAX_CONNECTIONS_PERCENT
    caps: dict[str, int] = {}
    try:
        for i in target.direct_instances():
            with contextlib.suppress(PluginError):
                caps[i["id"]] = server_max_connections(target.engine, i) * int(percent) // 100
    except (TargetError, KeyError, TypeError, ValueError, OSError):
        return None
    return caps or None


def server_max_connections(engine: str, instance: dict[str, Any], timeout: float = 5.0) -> int:
    """``max_connections`` of one instance, asked directly (``instance`` as in ``direct_instances``)."""
    # Imported here: the plugin loads in every pytest run, the drivers only when a cap is needed.
    from harness.clients.address import Address
    from harness.clients.client import query_value
    from harness.clients.dialects import dialect_for

    try:
        value = query_value(Address.of_instance(engine, instance), dialect_for(engine).max_connections_sql,
                            connect_timeout=timeout)
        return int(value)
    except Exception as e:  # any driver error, or no number, means "not known"
        raise PluginError(f"cannot read max_connections of {instance.get('id')!r}: {e}") from e


def reader_weights(target: Target) -> dict[str, float] | None:
    """Readers' weights for balancing: each reader's max_connections, read from the server itself
    (RDS Proxy weighs readers by it), so a proxy that ignores the weights is judged against them.
    A reader that does not answer is left out; None when the readers cannot be reached directly."""
    if not target.supports(Capability.DIRECT):
        return None
    weights: dict[str, float] = {}
    try:
        for i in target.direct_instances():
            if i.get("role") == "reader":
                with contextlib.suppress(PluginError):
                    weights[i["id"]] = float(server_max_connections(target.engine, i))
    except (TargetError, KeyError, TypeError, ValueError, OSError):
        return None
    return weights or None
