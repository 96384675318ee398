"""Faults by name, so that a fault schedule can be written as data.

``@register("failover")`` on a fault class makes ``fault_from_spec({"name": "failover"})`` build
it; unknown names and unknown or ill-typed parameters are rejected with the list of what is
allowed, never passed through.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from harness.faults.base import Fault, FaultError

F = TypeVar("F", bound=type[Fault])

_REGISTRY: dict[str, type[Fault]] = {}
_BUILTIN_MODULES = ("failover", "crash", "restart", "storm", "netfault", "rotation")


def register(name: str) -> Callable[[F], F]:
    """Class decorator: make the fault buildable by ``name``."""
    def decorate(cls: F) -> F:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise FaultError(f"fault name {name!r} is already registered by {_REGISTRY[name].__name__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return decorate


def _load_builtin() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(f"harness.faults.{module}")


def registered() -> dict[str, type[Fault]]:
    """Every known fault class by name."""
    _load_builtin()
    return dict(_REGISTRY)


def fault_from_spec(spec: dict[str, Any]) -> Fault:
    """Build a fault from ``{"name": "latency", "latency_ms": 200, ...}``."""
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise FaultError(f"a fault spec must be an object with a 'name', got {spec!r}")
    faults = registered()
    cls = faults.get(spec["name"])
    if cls is None:
        raise FaultError(f"unknown fault {spec['name']!r}; known: {', '.join(sorted(faults))}")
    params = {k: v for k, v in spec.items() if k != "name"}
    allowed = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise FaultError(f"{cls.name}: unknown parameter(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(sorted(allowed)) or 'none'}")
    return cls(**params)
