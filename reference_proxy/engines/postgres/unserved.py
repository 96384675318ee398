"""Answering requests that no backend will see (the borrow timed out or the connect failed).

The client is still owed what a backend would have said: every Query gets ErrorResponse and
ReadyForQuery; an extended-protocol batch gets one ErrorResponse and a ReadyForQuery at its Sync,
as a backend that failed the batch's first message would.  If the Sync has not arrived yet, later
messages are discarded until it does.  Pure functions: frames in, bytes to send out.
"""

from __future__ import annotations

from dataclasses import dataclass

from reference_proxy.protocol.postgres import ErrorResponse, Frames, ReadyForQuery

__all__ = ["Unserved", "answer_unserved", "skip_to_after_sync"]

_QUERY, _SYNC, _FUNCTION_CALL, _TERMINATE = 0x51, 0x53, 0x46, 0x58
_COPY_STREAM = frozenset(b"dcf")
_READY = ReadyForQuery("I").encode()


@dataclass(frozen=True)
class Unserved:
    """What to tell the client, and the state the session is left in.

    ``still_discarding``: an extended batch failed but its Sync is yet to come.  ``terminate``:
    the client said goodbye in these frames.  ``rest``: messages after the awaited Sync, which
    the session must handle normally (only from :func:`skip_to_after_sync`).
    """

    reply: bytes
    still_discarding: bool = False
    terminate: bool = False
    rest: Frames | None = None


def answer_unserved(frames: Frames, error: ErrorResponse) -> Unserved:
    """Fail every request in ``frames`` with ``error``; see the module docstring."""
    out: list[bytes] = []
    err = error.encode()
    errored_since_sync = False
    for t, _, _ in frames.spans:
        if t == _QUERY:
            out += [err, _READY]
            errored_since_sync = False
        elif t in (_SYNC, _FUNCTION_CALL):
            if not errored_since_sync:
                out.append(err)
            out.append(_READY)
            errored_since_sync = False
        elif t == _TERMINATE:
            return Unserved(b"".join(out), terminate=True)
        elif not errored_since_sync and t not in _COPY_STREAM:
            out.append(err)
            errored_since_sync = True
    return Unserved(b"".join(out), still_discarding=errored_since_sync)


def skip_to_after_sync(frames: Frames) -> Unserved:
    """While discarding: drop messages up to the awaited Sync, answer it, hand back the rest."""
    for i, (t, _, _) in enumerate(frames.spans):
        if t == _SYNC:
            rest = frames.spans[i + 1:]
            if not rest:
                return Unserved(_READY)
            base = rest[0][1]
            return Unserved(_READY, rest=Frames(frames.data[base:], [(tt, a - base, b - base) for tt, a, b in rest]))
        if t == _TERMINATE:
            return Unserved(b"", terminate=True)
    return Unserved(b"", still_discarding=True)
