"""Target kinds by name, so that ``--target`` and building a target come from one table.

Each :class:`TargetKind` names the class that implements it; the class builds itself from the
command line's :class:`~harness.targets.base.TargetOptions` (``Target.from_options``) and refuses
options that do not apply to it.  The pytest plugin's and ``aurora-harness certify``'s ``--target``
choices are :func:`kind_names`, and both build through :func:`build_target`, so a new kind (``rds``)
is one more entry here and nothing else changes.

The table names modules instead of importing them: the plugin reads the choices in every pytest
run, and a kind's module may pull in stand-ins, drivers or cloud SDKs that only its targets need.
"""

from __future__ import annotations

import dataclasses
import importlib

from harness.targets.base import Target, TargetError, TargetOptions


@dataclasses.dataclass(frozen=True)
class TargetKind:
    """One kind of target: its name, a line for ``--help``, and where its class lives."""

    name: str
    summary: str
    module: str
    class_name: str

    def target_class(self) -> type[Target]:
        cls = getattr(importlib.import_module(self.module), self.class_name)
        if not (isinstance(cls, type) and issubclass(cls, Target)):
            raise TargetError(f"target kind {self.name!r}: {self.module}.{self.class_name} is not a Target")
        return cls

    def build(self, options: TargetOptions) -> Target:
        return self.target_class().from_options(options)


_KINDS: dict[str, TargetKind] = {}


def register(kind: TargetKind) -> TargetKind:
    """Add a kind; a name can be registered once."""
    if kind.name in _KINDS and _KINDS[kind.name] != kind:
        raise TargetError(f"target kind {kind.name!r} is already registered ({_KINDS[kind.name].module})")
    _KINDS[kind.name] = kind
    return kind


register(TargetKind("reference", "a stand-in cluster behind the reference proxy, started here",
                    "harness.targets.reference", "ReferenceTarget"))
register(TargetKind("external", "a running proxy given by --writer-dsn", "harness.targets.external",
                    "ExternalTarget"))


def registered() -> dict[str, TargetKind]:
    """Every known kind by name, in registration order."""
    return dict(_KINDS)


def kind_names() -> tuple[str, ...]:
    return tuple(_KINDS)


def get_kind(name: str) -> TargetKind:
    try:
        return _KINDS[name]
    except KeyError:
        raise TargetError(f"unknown target {name!r}; registered: {', '.join(sorted(_KINDS))}") from None


def build_target(kind: str, options: TargetOptions) -> Target:
    """A target of ``kind`` built from ``options``, not up yet (use it as a context manager)."""
    return get_kind(kind).build(options)
