"""The pool's own errors; the ones borrowers must handle come from the contracts module."""

from __future__ import annotations

from reference_proxy.contracts import BackendConnectFailed, BorrowTimeout, ProxyError

__all__ = ["BackendConnectFailed", "BorrowTimeout", "NotBorrowed", "PoolClosed", "PoolError"]


class PoolError(ProxyError):
    """Root of the errors the pool raises besides BorrowTimeout and BackendConnectFailed."""


class PoolClosed(PoolError):
    """The pool is draining or closed; no new borrows are served."""


class NotBorrowed(PoolError):
    """A connection was handed back that this pool did not lend, or was handed back twice."""
