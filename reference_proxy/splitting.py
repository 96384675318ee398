"""The ``[testing] split_transactions`` mode: the proxy made unsafe on purpose, to show the harness
catches a pooler that does not keep a transaction on one backend connection.

RDS Proxy hands a backend connection back only when a transaction has ended, detected from the wire
protocol (PostgreSQL's ReadyForQuery status, MySQL's SERVER_STATUS_IN_TRANS flag).  In this mode an
unpinned session gives its backend up after every complete statement reply *inside* a transaction
too: the backend is closed (released as broken, so the server rolls back what it held and nobody
else inherits an open transaction) and the next statement borrows another one, where it runs in
autocommit.  The transaction's write is then rolled back with the closed connection, its read of
that write runs elsewhere and sees nothing, and its ROLLBACK has nothing to undo: what
TRANSACTION-ONE-BACKEND exists to catch.  Pinned sessions are left alone, so the mode breaks that
one promise and not the pinning or isolation ones.

The decision is engine-neutral (:attr:`SessionServices.split_transactions
<reference_proxy.session_services.SessionServices.split_transactions>`); each engine's tracker says
only whether its session is between two statements of an open transaction.  The server logs
:data:`WARNING` when the mode is on.
"""

from __future__ import annotations

__all__ = ["WARNING"]

WARNING = ("UNSAFE TEST MODE: [testing] split_transactions is on. This proxy closes an unpinned session's "
           "database connection after every statement of a transaction and runs the next statement on "
           "another one, so transactions are neither atomic nor see their own writes. It exists to show that "
           "the harness catches such a pooler; never put it in front of real clients.")
"""Logged at start, at warning level, when the mode is on."""
