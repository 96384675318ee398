"""The proxy's own cancel keys: which client session a CancelRequest means.

Each client gets a BackendKeyData the proxy makes up (its backend connections change from one
transaction to the next, so no real backend key would stay right).  A CancelRequest quoting that
key is forwarded, with the real key, to the backend the session holds at that moment, and only
then; a wrong or stale key is ignored, as PostgreSQL does.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

__all__ = ["CancelRegistry"]


class CancelRegistry:
    """Maps (process id, secret) keys to live sessions; randomness is injected for tests."""

    def __init__(self, token_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self._token_bytes = token_bytes
        self._sessions: dict[tuple[int, int], Any] = {}

    def register(self, session: Any) -> tuple[int, int]:
        """A fresh (pid, secret) for ``session``: pid positive int32, secret any int32."""
        while True:
            raw = self._token_bytes(8)
            pid = int.from_bytes(raw[:4], "big") & 0x7FFFFFFF or 1
            secret = int.from_bytes(raw[4:], "big", signed=True)
            if (pid, secret) not in self._sessions:
                self._sessions[(pid, secret)] = session
                return pid, secret

    def unregister(self, key: tuple[int, int] | None) -> None:
        if key is not None:
            self._sessions.pop(key, None)

    def find(self, pid: int, secret: int) -> Any | None:
        return self._sessions.get((pid, secret))

    def __len__(self) -> int:
        return len(self._sessions)
