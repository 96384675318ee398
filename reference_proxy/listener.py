"""Accepting clients, and saying so when accepting fails (above all: no file descriptor left).

The proxy accepts on its own listening sockets rather than through :func:`asyncio.start_server`
because of what happens when the process runs out of descriptors.  asyncio's accept loop then logs
a traceback-like line per attempt and pauses; uvloop's (libuv's) closes the pending connections one
by one to drain the queue, so clients are dropped with nothing said to them or in the log, and it
all recovers silently.  An operator needs to know, and a client deserves an answer.  Here:

* a failing ``accept()`` starts an *episode*, logged once with the descriptor limit; the episode
  ends at the next successful accept, logged once more with the number of clients refused meanwhile
  (``ClientConnectionsRefused`` counts them, by reason, as they happen);
* out of descriptors, one spare descriptor kept open for this purpose is closed for a moment so that
  the waiting client can be accepted, given the engine's "too many connections" error, and closed;
  then the spare is opened again.  If it cannot be (the descriptor went to someone else), the
  listener stops reading for :data:`RETRY_DELAY` and leaves clients waiting in the kernel's queue;
* :func:`raise_descriptor_limit` lifts the soft ``RLIMIT_NOFILE`` to the hard limit at start, so
  that the limit reached is the one the operator set, not a shell's default of 1,024.

Accepted sockets are handed to ``on_client`` as they are (non-blocking); everything after the
accept is the server's and the sessions' business, and the relay does not see this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import socket
from collections.abc import Callable
from typing import Any

__all__ = ["RETRY_DELAY", "AcceptFailures", "Listener", "descriptor_limit", "raise_descriptor_limit"]

log = logging.getLogger("reference_proxy.listener")

OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
"""accept() errors that mean the process or the system ran out of descriptors or memory."""
CLIENT_GONE = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR})
"""accept() errors about one client that left before it was accepted: nothing to report."""
ACCEPT_BATCH = 128
"""Connections accepted per readiness callback, so a storm does not starve the sessions."""
RETRY_DELAY = 0.1
"""Seconds the listener stops reading when it cannot even refuse a client."""


def descriptor_limit() -> tuple[int, int]:
    """The process's (soft, hard) ``RLIMIT_NOFILE``."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def raise_descriptor_limit() -> tuple[int, int]:
    """Lift the soft descriptor limit to the hard one (as far as the system allows), log the
    figure, and return the (soft, hard) limits in force."""
    soft, hard = descriptor_limit()
    if soft != hard and hard != resource.RLIM_INFINITY:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    raised, hard = descriptor_limit()
    log.info("file descriptor limit: %s (hard limit %s%s)", _figure(raised), _figure(hard),
             f", raised from {_figure(soft)}" if raised != soft else "")
    return raised, hard


def _figure(limit: int) -> str:
    return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)


class AcceptFailures:
    """The episodes of failing accepts of one proxy, shared by its listeners; see the module docstring.

    ``refused`` counts the clients turned away in the current episode, ``episodes`` the episodes
    since start.  ``spare`` is the descriptor given up to refuse a client properly.
    """

    def __init__(self, metrics: Any) -> None:
        self._metrics = metrics
        self.active: str | None = None  # the episode's reason, while one lasts
        self.refused = 0
        self.episodes = 0
        self.spare: int | None = None
        self._open_spare()

    def _open_spare(self) -> None:
        try:
            self.spare = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self.spare = None

    def close(self) -> None:
        if self.spare is not None:
            os.close(self.spare)
            self.spare = None

    def failed(self, endpoint: str, error: OSError, *, refused: bool) -> None:
        """``accept()`` failed with ``error``; ``refused``: a client was turned away (with an answer
        or not).  The first failure of an episode is logged; each refused client is counted."""
        reason = "descriptors" if error.errno in OUT_OF_RESOURCES else "accept_error"
        if self.active is None:
            self.active = reason
            self.episodes += 1
            soft, _ = descriptor_limit()
            log.error("[proxyEndpoint=%s] cannot accept new clients: %s (open file limit %s); refusing them "
                      "until it passes", endpoint, os.strerror(error.errno or 0) or error, _figure(soft))
        if refused:
            self.refused += 1
            self._metrics.inc("ClientConnectionsRefused", endpoint=endpoint, reason=reason)

    def accepted(self, endpoint: str) -> None:
        """An accept succeeded: an episode in progress is over."""
        if self.active is not None:
            log.warning("[proxyEndpoint=%s] accepting new clients again; %d refused while it could not",
                        endpoint, self.refused)
            self.active = None
            self.refused = 0

    def refuse_with_spare(self, sock: socket.socket, refusal: bytes) -> bool:
        """Out of descriptors: give up the spare for a moment to accept one waiting client, send it
        ``refusal`` and close it.  False when no client could be taken off the queue."""
        if self.spare is None:
            self._open_spare()
            if self.spare is None:
                return False
        os.close(self.spare)
        self.spare = None
        try:
            conn, _ = sock.accept()
        except OSError:
            self._open_spare()
            return False
        turn_away(conn, refusal)  # closes it: its descriptor becomes the spare again
        self._open_spare()
        return True


def turn_away(conn: socket.socket, refusal: bytes) -> None:
    """Send ``refusal`` (best effort, without waiting) and close ``conn``.  What the client sent is
    read first and the sending side shut, so the close does not reset the connection under the
    answer before the client has read it."""
    with conn:
        conn.setblocking(False)
        with contextlib.suppress(OSError):
            conn.send(refusal)
            conn.shutdown(socket.SHUT_WR)
            conn.recv(65536)


class Listener:
    """Accepts clients of one endpoint on ``sock`` and hands each to ``on_client(socket)``."""

    def __init__(self, sock: socket.socket, endpoint: str, on_client: Callable[[socket.socket], None],
                 refusal: bytes, failures: AcceptFailures) -> None:
        self.sock = sock
        self.endpoint = endpoint
        self._on_client = on_client
        self._refusal = refusal
        self._failures = failures
        self._loop = asyncio.get_running_loop()
        self._reading = False
        self._closed = False
        sock.setblocking(False)

    @classmethod
    def bind(cls, host: str, port: int, backlog: int, **kwargs: Any) -> Listener:
        """Listen on ``host:port`` (port 0: any free one); OSError when that is impossible."""
        sock = socket.create_server((host, port), backlog=backlog, reuse_port=False)
        return cls(sock, **kwargs)

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def start(self) -> None:
        if not self._reading and not self._closed:
            self._loop.add_reader(self.sock.fileno(), self._on_readable)
            self._reading = True

    def _pause(self) -> None:
        if self._reading:
            self._loop.remove_reader(self.sock.fileno())
            self._reading = False
        self._loop.call_later(RETRY_DELAY, self.start)

    def close(self) -> None:
        if self._closed:
            return
        if self._reading:
            self._loop.remove_reader(self.sock.fileno())
            self._reading = False
        self._closed = True
        self.sock.close()

    def _on_readable(self) -> None:
        failures = self._failures
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in CLIENT_GONE:
                    continue
                if e.errno in OUT_OF_RESOURCES and failures.refuse_with_spare(self.sock, self._refusal):
                    failures.failed(self.endpoint, e, refused=True)
                    continue
                failures.failed(self.endpoint, e, refused=False)
                self._pause()
                return
            failures.accepted(self.endpoint)
            conn.setblocking(False)
            self._on_client(conn)
