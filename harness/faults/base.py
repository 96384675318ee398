"""The fault protocol: one small object per fault, with start, stop and its own history events.

A fault (Jepsen's nemesis) is plain data first - a dataclass of typed parameters, built from a
schedule with :func:`harness.faults.registry.fault_from_spec` - and an action second:

* :meth:`Fault.start` checks that the target offers the capability the fault needs (the target
  raises :class:`~harness.targets.base.Unsupported`, which the caller records as *unknown*), writes
  the ``fault`` start event, and does the damage;
* :meth:`Fault.stop` heals, if there is anything to heal, and writes the end event.

Some faults are instantaneous (a planned failover ends when the new writer is promoted; a restart
ends when the instance answers again): their ``start`` writes both events and ``stop`` does
nothing.  Parameters that are chosen at start time (which instance was the writer *then*) are
written into the start event, because after a failover "the writer" is another instance.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar, Self

from harness.errors import HarnessError
from harness.history import Phase, Recorder
from harness.targets.base import Capability, Target, control_failure


class FaultError(HarnessError):
    """Root of the faults' errors: a bad fault specification, or a fault that could not be applied."""


@dataclasses.dataclass
class Fault(abc.ABC):
    """Base of every fault.  Subclasses are dataclasses whose fields are the fault's parameters."""

    name: ClassVar[str] = ""
    requires: ClassVar[Capability | None] = None
    """The target capability the fault needs (``None``: only endpoints)."""

    def __post_init__(self) -> None:
        self.validate()
        self._target: Target | None = None
        self._recorder: Recorder | None = None
        self._active = False
        self._chosen: dict[str, Any] = {}

    def validate(self) -> None:
        """Raise :class:`FaultError` for parameters that make no sense."""

    def params(self) -> dict[str, Any]:
        """The parameters as given (JSON-ready), written into the fault's events."""
        return dataclasses.asdict(self)

    @property
    def active(self) -> bool:
        return self._active

    def start(self, target: Target, recorder: Recorder) -> None:
        """Check the capability, record the start event, and apply the fault."""
        if self._active:
            raise FaultError(f"fault {self.name!r} is already active")
        if self.requires is not None:
            target.require(self.requires)
        self._target, self._recorder = target, recorder
        chosen = self.choose(target)
        recorder.fault(self.name, Phase.START, {**self.params(), **chosen})
        self._active = True
        try:
            end_params = self.apply(target, recorder, chosen)
        except BaseException as e:
            self._active = False
            recorder.fault(self.name, Phase.END, {**chosen, **failure_params(e)})
            if isinstance(e, HarnessError):
                raise FaultError(f"fault {self.name!r} could not be applied: {e}") from e
            raise
        self._chosen = chosen
        if end_params is not None:  # instantaneous: done already
            self._active = False
            recorder.fault(self.name, Phase.END, {**chosen, **end_params})

    def stop(self) -> None:
        """Heal and record the end event; does nothing for a fault that is not active."""
        if not self._active:
            return
        assert self._target is not None and self._recorder is not None
        self._active = False
        try:
            end_params = self.heal(self._target, self._recorder, self._chosen) or {}
        except BaseException as e:
            self._recorder.fault(self.name, Phase.END, {**self._chosen, **failure_params(e)})
            if isinstance(e, HarnessError):
                raise FaultError(f"fault {self.name!r} could not be healed: {e}") from e
            raise
        self._recorder.fault(self.name, Phase.END, {**self._chosen, **end_params})

    # -- what subclasses implement ------------------------------------------------------------
    def choose(self, target: Target) -> dict[str, Any]:
        """Decide, at start time, what the fault acts on (e.g. ``{"instance": writer_id}``)."""
        return {}

    @abc.abstractmethod
    def apply(self, target: Target, recorder: Recorder, chosen: dict[str, Any]) -> dict[str, Any] | None:
        """Do the damage.  Return the end event's params for an instantaneous fault, else ``None``."""

    def heal(self, target: Target, recorder: Recorder, chosen: dict[str, Any]) -> dict[str, Any] | None:
        """Undo the damage; returns extra params for the end event.  Default: nothing to undo."""
        return None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def failure_params(error: BaseException) -> dict[str, Any]:
    """The end event's params of a fault that failed: the error, and when a control operation did not
    do what was asked (a user's command that failed), ``outcome: failed`` with what it came to."""
    params: dict[str, Any] = {"error": f"{type(error).__name__}: {error}"[:500]}
    failed = control_failure(error)
    if failed is not None:
        params.update(outcome="failed", control=failed.details)
    return params


def pick_instance(target: Target, instance: str | None, role: str) -> str:
    """``instance`` if given, else the current writer (``role="writer"``) or first reader."""
    roles = target.roles()
    if instance is not None:
        known = [roles["writer"], *roles["readers"]]
        if instance not in known:
            raise FaultError(f"no instance {instance!r} in the target (have: {', '.join(known)})")
        return instance
    if role == "writer":
        return roles["writer"]
    if not roles["readers"]:
        raise FaultError("the target has no reader to act on")
    return roles["readers"][0]


def check_number(fault: str, field: str, value: Any, *, low: float = 0.0, high: float = float("inf"),
                 integer: bool = False) -> None:
    """Raise FaultError unless ``value`` is a number (an int if ``integer``) in [low, high]."""
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        what = "an integer" if integer else "a number"
        raise FaultError(f"{fault}: {field} must be {what} from {low:g} to {high:g}, got {value!r}")


def check_instance(fault: str, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise FaultError(f"{fault}: instance must be an instance id or omitted, got {value!r}")
