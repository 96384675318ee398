"""Cancelling a client's running statement, the engine's own way, recorded.

A statement is cancelled from outside the thread that waits for it: psycopg sends a CancelRequest
quoting the BackendKeyData its connection was given; a MySQL client sends ``KILL QUERY <id>`` on a
second connection, where the id is the connection id its handshake gave.  Through a proxy both
name the client's *proxy* session, and the proxy must find the backend connection that session
holds at that moment: what the cancel guarantees (:mod:`harness.checkers.cancel`) judge.

Each attempt is an op ``cancel`` of a history process of its own (the cancelled client's process is
busy waiting for its statement), whose invocation's extra names the client it was aimed at
(:data:`TARGET_KEY`), so a checker knows which statement a cancel meant and who sent it.  How the
driver sends it is the driver adapter's (``cancel_from_elsewhere``); nothing here is engine-specific.
"""

from __future__ import annotations

from typing import Any

from harness.clients.outcomes import NOT_CONNECTED, Recording, Result, Stage
from harness.clients.plans import ClientError
from harness.history import OpType, Recorder

TARGET_KEY = "cancels"
"""Extra of a ``cancel`` invocation: the history process of the client whose statement it meant."""
CANCEL_TIMEOUT_S = 5.0
"""How long one cancel attempt may take to be delivered (not how long the statement takes to stop)."""


class Canceller:
    """Cancels whatever ``client`` (a blocking :class:`~harness.clients.client.Client`) is running.

    Safe to call from another thread than the one running the client's statement: that is its use.
    A MySQL canceller keeps its second connection open between attempts; :meth:`close` closes it."""

    def __init__(self, client: Any, recorder: Recorder, process: int | str, *,
                 timeout: float = CANCEL_TIMEOUT_S) -> None:
        connection = client.connection
        if not hasattr(connection, "cancel_from_elsewhere"):
            raise ClientError(f"{type(connection).__name__} cannot cancel a statement from another thread")
        self.client = client
        self.recording = Recording(recorder, process, client.address.endpoint)
        self.timeout = timeout
        self._via: Any = None

    @property
    def process(self) -> int | str:
        return self.recording.process

    def cancel(self) -> Result:
        """One cancel attempt, recorded; ``ok`` means it was delivered (the statement may still run on)."""
        inv = self.recording.invoke("cancel", extra={TARGET_KEY: self.client.process})
        connection = self.client.connection
        if not self.client.opened:
            return self.recording.error(inv, NOT_CONNECTED, idempotent=True)
        try:
            sent = connection.cancel_from_elsewhere(self._via_connection(), timeout=self.timeout)
        except connection.errors as e:
            if self._via is not None and not self._via.connected:
                self._via = None
            return self.recording.error(inv, self.client.dialect.classify(e, Stage.CONNECT), idempotent=True)
        except BaseException as e:
            self.recording.interrupted(inv, e)
            raise
        self.recording.recorder.ok(inv, None, extra=sent)
        return Result(OpType.OK, None)

    def _via_connection(self) -> Any:
        """The second connection a MySQL cancel travels on (opened on first use), else None."""
        connection = self.client.connection
        if not connection.cancel_needs_connection:
            return None
        if self._via is None or not self._via.connected:
            driver = type(connection)
            self._via = driver(self.client.address, connect_timeout=self.timeout,
                               **driver.io_timeout_options(self.timeout))
            self._via.open()
        return self._via

    def close(self) -> None:
        if self._via is not None:
            self._via.close()
            self._via = None
