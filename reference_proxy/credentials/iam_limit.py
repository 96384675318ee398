"""At most so many IAM authentications in progress at once, as RDS Proxy allows.

RDS Proxy checks each IAM token with IAM, and refuses an IAM login when too many are already being
checked ("The IAM authentication failed because of too many competing requests."; on MySQL "IAM
authentication rate limit exceeded"); the limit is not published and, users were told, cannot be
raised.  A storm of new connections from short-lived clients (Lambda) is what meets it.

An authentication holds its slot from the moment the proxy asks the client for its token until the
token was judged, so clients slow to answer count as in progress, as they do on RDS.  The limiter is
a plain counter: no I/O, no clock, no waiting; a refused login is refused at once.
"""

from __future__ import annotations

from typing import Self

__all__ = ["IamAuthLimiter", "IamAuthSlot"]


class IamAuthSlot:
    """One authentication's place; release it when the token was judged (a context manager does)."""

    __slots__ = ("_held", "_limiter")

    def __init__(self, limiter: IamAuthLimiter) -> None:
        self._limiter = limiter
        self._held = True

    def release(self) -> None:
        """Give the place back; releasing twice is harmless."""
        if self._held:
            self._held = False
            self._limiter._in_progress -= 1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class IamAuthLimiter:
    """Grants up to ``max_concurrent`` slots; see the module docstring."""

    def __init__(self, max_concurrent: int) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
        self.max_concurrent = max_concurrent
        self._in_progress = 0
        self.refused = 0
        """Authentications refused so far (for metrics)."""

    @property
    def in_progress(self) -> int:
        return self._in_progress

    def try_acquire(self) -> IamAuthSlot | None:
        """A slot, or None when ``max_concurrent`` authentications are already in progress."""
        if self._in_progress >= self.max_concurrent:
            self.refused += 1
            return None
        self._in_progress += 1
        return IamAuthSlot(self)
