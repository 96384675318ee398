"""Classifying driver errors: did the request certainly have no effect, or is its outcome unknown?

A chaos test is only as good as this decision.  Calling a write *failed* when it may have committed
makes the durability checker cry wolf; calling it *unknown* when it certainly did not commit hides
real bugs.  The rules follow Jepsen's etcd client (``remap-errors`` / ``with-errors``):

* every error gets a code (PostgreSQL SQLSTATE, MySQL errno as text, or a short client-side name
  such as ``"timeout"``) and a ``definite`` flag;
* whether a broken connection is definite depends on the :class:`Stage` the request had reached:
  nothing can have happened before the connection was made, nor inside an explicit transaction
  before COMMIT was sent (the server rolls back a transaction whose client vanished); once COMMIT,
  or a statement in autocommit mode, has been sent, it may have taken effect;
* an error the *server* reported (unique violation, serialization failure, read-only transaction,
  the proxy's borrow timeout) is definite: the server says the statement or transaction did not
  happen;
* idempotent requests (reads) turn an indefinite error into ``fail``: doing them or not changes
  nothing, so their outcome is never "unknown" (:func:`completion_type`).

The functions here are pure: they look only at the exception object and the stage, so they are
tested with constructed exceptions and no server.  :class:`Recording` is the one place that turns
a request into history records (``invoke`` then exactly one of ``ok``, ``fail`` or ``info``), for
every driver adapter alike; :class:`Result` is what the caller gets back (``result.ok``).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import Any

from harness.history import Op, OpError, OpType, Recorder

BORROW_TIMEOUT_TEXT = "Timed-out waiting to acquire database connection"
"""RDS Proxy's text when no backend could be lent in time (PostgreSQL adds a full stop)."""

TIMEOUT = "timeout"
"""Code of a request the client gave up on after its own deadline (the connection is then closed)."""

CONNECTION_LOST = "connection-lost"
"""Code of a connection that broke without the server saying why (no SQLSTATE / errno)."""


class Stage(str, enum.Enum):
    """How far a request got when it failed, as far as its effect is concerned."""

    CONNECT = "connect"            # opening the connection: nothing was asked yet
    IN_TRANSACTION = "in_transaction"  # inside BEGIN ... before COMMIT was sent: nothing can be durable
    COMMIT = "commit"              # COMMIT sent, or an autocommit statement: it may have taken effect


Classifier = Callable[..., OpError]
"""``classify(exc, stage, *, timed_out=False) -> OpError``: one per driver."""


# PostgreSQL ------------------------------------------------------------------------------------
_PG_SHUTDOWN = {"57P01", "57P02", "57P03"}  # admin shutdown, crash shutdown, cannot connect now
_PG_CANCELED = "57014"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _by_stage(code: str | None, text: str, stage: Stage) -> OpError:
    """A connection-level failure: definite unless the request may already have taken effect."""
    return OpError(code, text, definite=stage is not Stage.COMMIT)


def classify_psycopg(exc: BaseException, stage: Stage, *, timed_out: bool = False) -> OpError:
    """Classify an exception raised by psycopg 3 while a request was at ``stage``.

    ``timed_out`` says the client's own deadline expired and it closed the connection, which is
    what made the driver raise.
    """
    text = _first_line(exc)
    if timed_out:
        return _by_stage(TIMEOUT, f"no answer within the client's deadline ({text})", stage)
    sqlstate = getattr(exc, "sqlstate", None)
    if BORROW_TIMEOUT_TEXT in text:
        return OpError(sqlstate, text, definite=True)
    if sqlstate is None:
        # No server code: a lost or refused connection, or a client-side timeout (ConnectionTimeout).
        return _by_stage(CONNECTION_LOST if stage is not Stage.CONNECT else "connect-failed", text, stage)
    if sqlstate.startswith("08") or sqlstate in _PG_SHUTDOWN:
        return _by_stage(sqlstate, text, stage)
    if sqlstate == _PG_CANCELED:
        # A cancelled COMMIT may have been cancelled after it became durable.
        return _by_stage(sqlstate, text, stage)
    # Every other server error (40001, 40P01, 25006, 23505, syntax...) aborted the statement and,
    # inside a transaction, the transaction: nothing it asked for happened.
    return OpError(sqlstate, text, definite=True)


# MySQL (PyMySQL) ---------------------------------------------------------------------------------
_MY_CANNOT_CONNECT = {2002, 2003, 2005}   # socket / TCP refused / unknown host
_MY_LOST = {2006, 2013, 2055}             # gone away / lost during query / lost at reading
_MY_BORROW_TIMEOUT = 9501
# The server stopped the statement or the session: shutdown (1053), connection killed (1927),
# query interrupted (1317), session killed (3169).  Like PostgreSQL's 57P01 / 57014, a COMMIT
# stopped this way may already have become durable.
_MY_INTERRUPTED = {1053, 1927, 1317, 3169}
_MY_GONE = {1053, 1927, 3169}  # the session is over, as with a lost connection


def mysql_errno(exc: BaseException) -> int | None:
    """The errno PyMySQL put first in the exception's args, if any."""
    args: tuple[Any, ...] = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) and not isinstance(args[0], bool) else None


def classify_pymysql(exc: BaseException, stage: Stage, *, timed_out: bool = False) -> OpError:
    """Classify an exception raised by PyMySQL while a request was at ``stage``."""
    errno = mysql_errno(exc)
    text = _first_line(exc)
    if len(getattr(exc, "args", ())) >= 2:
        text = str(exc.args[1]).strip() or text
    code = str(errno) if errno else None
    if timed_out:
        return _by_stage(TIMEOUT, f"no answer within the client's deadline ({text})", stage)
    if errno == _MY_BORROW_TIMEOUT or BORROW_TIMEOUT_TEXT in text:
        return OpError(code, text, definite=True)
    if errno in _MY_CANNOT_CONNECT:
        return OpError(code, text, definite=True)
    if errno in _MY_LOST or errno in _MY_INTERRUPTED:
        return _by_stage(code, text, stage)
    if errno is None or errno == 0:
        # PyMySQL's InterfaceError(0, '') means the connection was already closed: nothing was sent.
        # Anything else without an errno (a socket error surfacing raw) is a lost connection.
        if type(exc).__name__ == "InterfaceError":
            return OpError("closed", text or "connection already closed", definite=True)
        return _by_stage(CONNECTION_LOST, text, stage)
    if 2000 <= errno < 3000:
        # Other client-side errors (protocol out of sync, packet too large): the connection is
        # unusable and we cannot tell what the server did.
        return _by_stage(code, text, stage)
    # Server errors: 1290 read-only, 1205 lock wait timeout, 1213 deadlock, 1062 duplicate key...
    return OpError(code, text, definite=True)


# Connection-level errors ---------------------------------------------------------------------------
_MY_CONNECTION_LEVEL = {str(e) for e in (*_MY_CANNOT_CONNECT, *_MY_LOST, *_MY_GONE, _MY_BORROW_TIMEOUT)}
_CLIENT_CONNECTION_LEVEL = {TIMEOUT, CONNECTION_LOST, "connect-failed"}


def is_connection_level(error: OpError | None) -> bool:
    """Whether ``error`` says the path to the server is broken or too slow, not what the server decided.

    Detectors of dead paths count only these: a lost or refused connection (SQLSTATE class 08,
    MySQL 2002/2003/2005/2006/2013/2055), a server or session going away (57P01-57P03, MySQL
    1053/1927/3169), a client deadline, or
    the proxy's borrow timeout.  A unique violation or a serialization failure proves the path works.
    """
    if error is None:
        return False
    code = error.code or ""
    return (code.startswith(("08", "57P0")) or code in _CLIENT_CONNECTION_LEVEL
            or code in _MY_CONNECTION_LEVEL or BORROW_TIMEOUT_TEXT in (error.text or ""))


# Outcome ---------------------------------------------------------------------------------------
def completion_type(error: OpError, *, idempotent: bool) -> OpType:
    """``fail`` for a definite error or an idempotent request, ``info`` otherwise."""
    return OpType.FAIL if error.definite or idempotent else OpType.INFO


# Recording ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Result:
    """What a recorded request came to, as recorded (``rows`` are the raw result sets, unrecorded)."""

    type: OpType
    value: Any = None
    node: str | None = None
    backend: int | None = None
    error: OpError | None = None
    rows: list[Any] | None = None

    @property
    def ok(self) -> bool:
        """The request took effect and answered (the history says ``ok``)."""
        return self.type is OpType.OK


NOT_CONNECTED = OpError("not-connected", "the client has no open connection", definite=True)


@dataclasses.dataclass
class Recording:
    """One history process's bookkeeping: invocations and their completions, no I/O.

    ``worker`` names the logical client across reconnects (each connection still gets its own
    process id); it goes into every invocation's ``extra["worker"]`` so that checkers counting per
    client are not fooled by a worker that reconnects after every error.
    """

    recorder: Recorder
    process: int | str
    endpoint: str
    worker: str | None = None

    def invoke(self, f: str, value: Any = None, extra: dict[str, Any] | None = None) -> Op:
        if self.worker is not None:
            extra = {"worker": self.worker, **(extra or {})}
        return self.recorder.invoke(self.process, f, value, endpoint=self.endpoint, extra=extra)

    def ok(self, inv: Op, value: Any, node: str | None = None, backend: int | None = None,
           rows: list[Any] | None = None, note: str | None = None, role: str | None = None) -> Result:
        """``role`` is ``writer`` / ``reader`` as the serving instance reported it (``extra["role"]``)."""
        extra = {"backend": backend} if backend is not None else None
        if note is not None:
            extra = {"note": note}
        if role is not None:
            extra = {**(extra or {}), "role": role}
        self.recorder.ok(inv, value, node=node, extra=extra)
        return Result(OpType.OK, value, node, backend, None, rows)

    def error(self, inv: Op, error: OpError, *, idempotent: bool) -> Result:
        op_type = completion_type(error, idempotent=idempotent)
        self.recorder.complete(inv, op_type, inv.value, error=error)
        return Result(op_type, inv.value, None, None, error)

    def interrupted(self, inv: Op, exc: BaseException) -> None:
        """Close the op of a request interrupted by something other than the driver (a bug, Ctrl-C,
        a cancelled task): its outcome is unknown, and the exception goes on to the caller."""
        if inv in self.recorder.outstanding():
            self.recorder.info(inv, OpError("client-error", f"{type(exc).__name__}: {exc}"[:500], False))
