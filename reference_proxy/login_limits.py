"""Bounds on clients that have not logged in yet: how long their login may take, and how many there are.

Before a client has proved who it is, everything it makes the proxy hold is held for a stranger.
Three bounds keep that small, on every engine alike:

* the size of each login message (an engine's own limit, a few tens of kilobytes, far below the
  64 MB a logged-in client may send; see each engine's session);
* time: a :class:`LoginClock` drops a client that falls silent for the silence limit *or* whose
  login has lasted the total limit since accept, whichever comes first.  Counting silence alone let
  a client that sends one byte every so often stay in login for ever;
* number: a :class:`LoginGate` admits at most ``limit`` clients into login at once and turns the
  next one away at once, with the engine's "too many connections" error, rather than let it queue
  for memory and descriptors.

Logged-in clients leave the gate: the limit is on strangers, not on the proxy's clients.
"""

from __future__ import annotations

import asyncio

__all__ = ["LoginClock", "LoginGate", "LoginSlot"]


class LoginSlot:
    """One client's place in the :class:`LoginGate`; :meth:`release` gives it back (idempotent)."""

    __slots__ = ("_gate",)

    def __init__(self, gate: LoginGate) -> None:
        self._gate: LoginGate | None = gate

    def release(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.in_login -= 1
            if gate.in_login < gate.limit:
                gate.refusing_since = None


class LoginGate:
    """Counts the clients in login (accepted, not yet authenticated); admits at most ``limit``.

    ``refused`` counts the clients turned away since start; ``refusing_since`` is that count when
    the current run of refusals began (None while there is room), so that a caller can say so once
    per run rather than once per client.  The limit may be changed at any time (a reload); clients
    already in login keep their place.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_login = 0
        self.refused = 0
        self.refusing_since: int | None = None

    def enter(self) -> LoginSlot | None:
        """A place for one more client in login, or None when ``limit`` are in login already."""
        if self.in_login >= self.limit:
            if self.refusing_since is None:
                self.refusing_since = self.refused
            self.refused += 1
            return None
        self.in_login += 1
        return LoginSlot(self)


class LoginClock:
    """The deadline of one login: ``silence`` seconds after the client's last bytes, but never later
    than ``total`` seconds after the login started.

    Used with :func:`asyncio.timeout`: :meth:`attach` takes the timeout (and sets its first deadline),
    :meth:`heard` is called whenever the client sends something.  :attr:`limit_reached` says, once the
    timeout fired, which of the two limits ended the login (for the log line).
    """

    __slots__ = ("_loop", "_timer", "silence", "started", "total")

    def __init__(self, *, silence: float, total: float) -> None:
        self._loop = asyncio.get_running_loop()
        self.started = self._loop.time()
        self.silence = silence
        self.total = total
        self._timer: asyncio.Timeout | None = None

    @property
    def deadline(self) -> float:
        """The loop time the login ends at if the client sends nothing more."""
        return min(self._loop.time() + self.silence, self.started + self.total)

    def attach(self, timer: asyncio.Timeout) -> None:
        self._timer = timer
        timer.reschedule(self.deadline)

    def detach(self) -> None:
        """The login is over (either way): later bytes no longer move a deadline."""
        self._timer = None

    def heard(self) -> None:
        """The client sent bytes: the silence limit starts again (the total one does not)."""
        if self._timer is not None:
            self._timer.reschedule(self.deadline)

    def limit_reached(self) -> str:
        """Words for the log: which limit ended the login."""
        if self._loop.time() >= self.started + self.total - 0.001:
            return f"did not finish its login within {self.total:g}s in all"
        return f"sent nothing for {self.silence:g}s during its login"
