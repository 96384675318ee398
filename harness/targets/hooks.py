"""User-supplied control: a shell command the harness runs when a fault asks for something it cannot do itself.

A proxy the harness does not run can still be failed over or have its secret rotated, by whoever runs
it: ``--failover-command`` and ``--rotate-command`` name a shell command for each.  This module is the
one place such a command is run, so every hook behaves the same way:

* it runs under ``/bin/sh -c`` in a session of its own, and is killed with its children when it
  outlives its timeout (a hook that hangs must not hang the certification);
* what is wanted is said in environment variables (``AURORA_HARNESS_ACTION``, and per action e.g.
  the reader to promote or the new password), never on a command line: ``ps`` shows command lines;
* its outcome - exit status, duration, whether it timed out, and the tail of its output with every
  secret masked - is a :class:`HookOutcome`, which the fault writes into its end event.

A hook that fails (non-zero exit, killed by a signal, timed out, not startable) raises
:class:`HookFailed`, a :class:`~harness.targets.base.ControlFailed`: the fault did not happen as
asked, so the guarantees it was meant to exercise are unknown, never judged on a half-done fault.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from typing import Any

from harness.targets.base import ControlFailed
from harness.targets.masking import scrub

DEFAULT_TIMEOUT_S = 300.0
"""How long a hook may run unless ``--hook-timeout`` says otherwise (a real Aurora failover takes
up to a minute or two; a Secrets Manager rotation a few calls)."""
OUTPUT_TAIL_CHARS = 2000
"""How much of the end of a hook's output is kept: enough for its error message, not its life story."""
ENV_PREFIX = "AURORA_HARNESS_"
ACTION_ENV = ENV_PREFIX + "ACTION"
FAILOVER_TO_ENV = ENV_PREFIX + "FAILOVER_TO"
OLD_WRITER_ENV = ENV_PREFIX + "OLD_WRITER"
ROTATE_USER_ENV = ENV_PREFIX + "ROTATE_USER"
NEW_PASSWORD_ENV = ENV_PREFIX + "NEW_PASSWORD"
"""The environment a hook reads: the action, and per action what is wanted (see each target's use)."""
_KILL_GRACE_S = 5.0


@dataclasses.dataclass(frozen=True)
class HookOutcome:
    """What one run of a hook came to; :meth:`as_event` is what the history keeps of it."""

    action: str
    exit_status: int | None
    """The command's exit status; negative when a signal ended it; None when it never started."""
    duration_s: float
    output_tail: str
    timed_out: bool = False
    problem: str | None = None
    """Why it could not be started at all (then ``exit_status`` is None)."""

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and not self.timed_out

    def describe(self) -> str:
        """One line saying how it failed (or that it did not)."""
        if self.problem is not None:
            return f"the {self.action} command could not be started: {self.problem}"
        if self.timed_out:
            return f"the {self.action} command did not finish within {self.duration_s:.1f} s and was killed"
        if self.exit_status is not None and self.exit_status < 0:
            return f"the {self.action} command was killed by signal {-self.exit_status}"
        said = self.output_tail.strip().splitlines()[-1][:200] if self.output_tail.strip() else "no output"
        if self.ok:
            return f"the {self.action} command succeeded in {self.duration_s:.1f} s"
        return f"the {self.action} command failed with exit status {self.exit_status}: {said}"

    def as_event(self) -> dict[str, Any]:
        return {"action": self.action, "exit_status": self.exit_status, "duration_s": round(self.duration_s, 3),
                "timed_out": self.timed_out, "output_tail": self.output_tail,
                **({"problem": self.problem} if self.problem else {})}


class HookFailed(ControlFailed):
    """A hook did not succeed; ``outcome`` says how (and goes into the fault's end event)."""

    def __init__(self, outcome: HookOutcome) -> None:
        super().__init__(outcome.describe(), outcome.as_event())
        self.outcome = outcome


def run_hook(action: str, command: str, *, wanted: Mapping[str, str] | None = None,
             secrets: Iterable[str] = (), timeout: float = DEFAULT_TIMEOUT_S) -> HookOutcome:
    """Run ``command`` for ``action`` with ``wanted`` added to the environment; raise HookFailed unless it
    exits 0 in time.  Every text of ``secrets`` (and every value of ``wanted`` whose name says it is a
    password) is masked in the output kept."""
    env = {**os.environ, ACTION_ENV: action, **(wanted or {})}
    hidden = [*secrets, *(v for k, v in (wanted or {}).items() if "PASSWORD" in k)]
    started = time.monotonic()
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", command], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as e:
        outcome = HookOutcome(action, None, time.monotonic() - started, "", problem=f"{type(e).__name__}: {e}")
        raise HookFailed(outcome) from None
    timed_out = False
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        output = _kill_group(proc)
    duration = time.monotonic() - started
    tail = scrub(output.decode(errors="replace")[-OUTPUT_TAIL_CHARS:], [h for h in hidden if h])
    outcome = HookOutcome(action, proc.returncode, duration, tail, timed_out=timed_out)
    if not outcome.ok:
        raise HookFailed(outcome)
    return outcome


def _kill_group(proc: subprocess.Popen[bytes]) -> bytes:
    """End the hook and every process it started (its session), and collect what it wrote."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            output, _ = proc.communicate(timeout=_KILL_GRACE_S)
            return output or b""
        except subprocess.TimeoutExpired:
            continue
    output, _ = proc.communicate()
    return output or b""
