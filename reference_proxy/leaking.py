"""The ``leak_session_state`` failpoint: the proxy made unsafe on purpose, to show the harness
catches a pooler that leaks session state.

A pooler leaks when it lends a backend connection to a second client while the first client's
session state is still on it.  The proxy has exactly two defences against that, both engine-neutral
seams, and this mode switches off both there, so that neither engine's relay knows about it:

* **pinning** (:func:`never_pins` replaces the engine's pin classifier in the
  :class:`~reference_proxy.session_services.SessionServices`): no SQL statement holds a session on
  its backend, so the backend goes back to the pool at the end of every transaction, like
  PgBouncer's transaction mode;
* **reset** (:class:`LeakingPool`): a backend released as carrying session state (DIRTY) is pooled
  as it is instead of being reset (``DISCARD ALL`` / ``COM_RESET_CONNECTION``) first.

What the wire protocol itself needs stays: a protocol-level prepared statement (PostgreSQL's named
``Parse``, MySQL's COM_STMT_PREPARE) still pins, since its name or id means nothing on another
backend (that would be breakage, not a leak).  Settings the MySQL engine tracks (autocommit, character
sets, time zone...) leak too, since the reset is what brings a backend back to its pool key; a client
that then finds the server's autocommit flag disagreeing with its own keeps that backend until it
leaves, as the engine does whenever it cannot follow a change.
"""

from __future__ import annotations

from typing import Any

from reference_proxy.contracts import BackendConnection, ReleaseState
from reference_proxy.pool import Pool

__all__ = ["LeakingPool", "never_pins"]

def never_pins(sql: str, **lexing: Any) -> None:
    """A pin classifier that pins nothing (it takes the MySQL classifier's lexing keywords too)."""


class LeakingPool(Pool):
    """A pool that lends a connection carrying session state to the next client without resetting it."""

    def release(self, conn: BackendConnection, state: ReleaseState) -> None:
        """As :meth:`Pool.release`, with DIRTY taken as CLEAN: pooled without a reset."""
        state = ReleaseState(state)
        super().release(conn, ReleaseState.CLEAN if state is ReleaseState.DIRTY else state)
