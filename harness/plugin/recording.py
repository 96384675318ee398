"""A recording PostgreSQL client that follows the checkers' conventions.

Every request is one statement (or one simple-query batch) in autocommit mode, so it is one
transaction the proxy may multiplex, and it ends by selecting the serving instance and backend
process id, so the checkers can tell who served it (``node``, ``extra["backend"]``).  One
:class:`PgSession` is one client connection and one history *process*; reconnecting takes a new
process id, as the history model wants.

This is deliberately small: suites compose their workloads from :meth:`PgSession.request`.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from typing import Any, Self

from harness.clients.base import SocketDeadline
from harness.clients.outcomes import Stage, classify_psycopg
from harness.history import Op, OpError, Recorder

WHO = "aurora_db_instance_identifier(), pg_backend_pid()"
"""Appended to every request's select list: the instance and backend connection that served it."""

_ids = itertools.count(1)
_ids_lock = threading.Lock()


def next_process_id(prefix: str = "c") -> str:
    """A process id unique in this test run (histories of one test share them with nothing else)."""
    with _ids_lock:
        return f"{prefix}{next(_ids)}"


class PgSession:
    """One recorded client connection to an endpoint of a PostgreSQL target."""

    def __init__(self, recorder: Recorder, conninfo: dict[str, Any], endpoint: str, *,
                 process: str | None = None, connect_timeout: float = 15.0, request_timeout: float | None = None,
                 worker: str | None = None, **connect_kwargs: Any) -> None:
        """``request_timeout`` gives up on a request that gets no answer (a silent network fault) by
        shutting the socket down; the request is recorded with the code ``timeout``.

        ``worker`` names the logical client across reconnects (each connection still gets its own
        process id); it goes into every invocation's ``extra["worker"]`` so checkers that count per
        client are not fooled by a worker that reconnects after every error."""
        self.recorder = recorder
        self.conninfo = dict(conninfo)
        self.endpoint = endpoint
        self.process = process or next_process_id()
        self.connect_timeout = connect_timeout
        self.connect_kwargs = connect_kwargs
        self.request_timeout = request_timeout
        self.worker = worker
        self.conn: Any = None

    def _extra(self, extra: dict[str, Any] | None) -> dict[str, Any] | None:
        if self.worker is None:
            return extra
        return {"worker": self.worker, **(extra or {})}

    # -- lifecycle ---------------------------------------------------------------------------
    def connect(self, *, f: str = "connect", extra: dict[str, Any] | None = None) -> Op:
        """Open the connection and identify the server; recorded as one ``connect`` request."""
        import psycopg

        inv = self.recorder.invoke(self.process, f, endpoint=self.endpoint, extra=self._extra(extra))
        try:
            self.conn = psycopg.connect(**self.conninfo, autocommit=True, prepare_threshold=None,
                                        connect_timeout=max(1, round(self.connect_timeout)),
                                        **self.connect_kwargs)
            node, backend = self.conn.execute(f"SELECT {WHO}").fetchone()
        except Exception as e:  # noqa: BLE001 - every driver error becomes a recorded outcome
            self._drop()
            return self.recorder.fail(inv, classify_psycopg(e, Stage.CONNECT))
        return self.recorder.ok(inv, node=node, extra={"backend": backend})

    def close(self) -> None:
        self._drop()

    def _fileno(self) -> int | None:
        try:
            return self.conn.pgconn.socket if self.conn is not None else None
        except Exception:  # noqa: BLE001 - a closed connection has no socket
            return None

    def _drop(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001, S110 - closing a broken connection may raise; it is closed anyway
                pass
        self.conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ----------------------------------------------------------------------------
    def request(self, f: str, sql: str, params: Sequence[Any] | None = None, *, value: Any = None,
                result: Callable[[tuple[Any, ...]], Any] | None = None, idempotent: bool = True,
                extra: dict[str, Any] | None = None) -> Op:
        """Run ``sql`` whose last result row ends with :data:`WHO`; record it as request ``f``.

        ``result`` turns the row's leading columns into the completion's value (default: the
        invocation's ``value``).  A server error is ``fail``; a broken connection is ``fail`` for an
        idempotent request and ``info`` otherwise (it may have taken effect).
        """
        inv = self.recorder.invoke(self.process, f, value, endpoint=self.endpoint, extra=self._extra(extra))
        if self.conn is None:
            return self.recorder.fail(inv, OpError("not-connected", "the session has no connection", True))
        deadline = SocketDeadline(self.request_timeout)
        deadline.arm(self._fileno)
        try:
            cur = self.conn.execute(sql, params) if params is not None else self.conn.execute(sql)
            row = None
            while True:
                if cur.description is not None:
                    row = cur.fetchone() or row
                if not cur.nextset():
                    break
        except Exception as e:  # noqa: BLE001
            deadline.disarm()
            err = classify_psycopg(e, Stage.COMMIT, timed_out=deadline.fired)
            if self.conn is not None and self.conn.closed:
                self._drop()
            if err.definite or idempotent:
                return self.recorder.fail(inv, OpError(err.code, err.text, True) if idempotent else err)
            return self.recorder.info(inv, err)
        deadline.disarm()
        if row is None or len(row) < 2:
            return self.recorder.ok(inv, value, extra={"note": "no identity columns in the result"})
        node, backend = row[-2], row[-1]
        out = result(tuple(row[:-2])) if result is not None else value
        return self.recorder.ok(inv, out, node=node, extra={"backend": backend})

    def read(self) -> Op:
        """A plain read: who served it."""
        return self.request("read", f"SELECT {WHO}")
