"""What every peer proxy shares: a third-party binary run in front of an upstream server (or several).

A peer is measured beside the reference proxy (benchmarks) or certified as an external target, so
it must start the same way every time and leave nothing behind: its files live in a private
temporary directory (0700; a file holding a password is 0600), it listens on 127.0.0.1 only, runs in
the foreground of its own session, and is stopped and its directory removed on exit or on a failed
start, including one ended by Ctrl-C (``KeyboardInterrupt`` leaves the ``with`` block like any
exception).  Subclasses say only what differs: the binary, its files, its arguments and the signal
that stops it at once.
"""

from __future__ import annotations

import os
import signal
import tempfile
from typing import Self

from harness import process
from harness.standins.base import ConnectionParams, StartFailed
from harness.standins.runtime import standin_errors

SEARCH_DIRS = ["/usr/sbin", "/usr/bin"]
LISTEN_TIMEOUT_S = 15.0


class Peer:
    """One peer process in front of ``upstream``; a context manager."""

    binary: str
    debian_package: str
    owner: str | None = None
    """The account the peer runs as (None: ours); its directory and files are handed to it."""
    stop_signal: int = signal.SIGTERM
    """The signal that stops it without waiting for its clients to leave (SIGKILL follows if it lingers)."""

    def __init__(self, upstream: ConnectionParams, *, port: int | None = None) -> None:
        self.upstream = upstream
        self.port = port
        self.base_dir: str | None = None
        self.pid: int | None = None
        self.pid_start: int | None = None

    @property
    def params(self) -> ConnectionParams:
        """How clients reach the upstream server through the peer (same credentials and database)."""
        assert self.port is not None
        return ConnectionParams(process.LOOPBACK, self.port, self.upstream.user, self.upstream.password,
                                self.upstream.database)

    # -- what subclasses say ----------------------------------------------------------------------
    def _arguments(self, fd_limit: int) -> list[str]:
        """Write the peer's files (with :meth:`_write`) and return its command-line arguments;
        ``fd_limit`` is the descriptor limit it will inherit."""
        raise NotImplementedError

    def _write(self, name: str, text: str, *, private: bool = False) -> str:
        """A file in the peer's directory, readable by the peer (0600 when ``private``: it holds a
        password); returns its path."""
        assert self.base_dir is not None
        path = process.write_private(os.path.join(self.base_dir, name), text, self.owner)
        if not private:
            os.chmod(path, 0o644)
        return path

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the peer and wait until it listens; stand-in errors (BinaryMissing naming the Debian
        package, PortInUse, StartFailed with the log's tail) say why not."""
        with standin_errors():
            self._start()

    def _start(self) -> None:
        binary = process.find_binary(self.binary, SEARCH_DIRS, self.debian_package)
        self.port = self.port or process.free_port()
        process.check_port_free(self.port)
        self.base_dir = tempfile.mkdtemp(prefix=f"{process.SCRATCH_PREFIX}{self.binary}-")  # 0700
        self._hand_over(self.base_dir)
        log = os.path.join(self.base_dir, f"{self.binary}.log")
        # Connection storms need many descriptors, and peers inherit our soft limit: raise it.
        arguments = self._arguments(process.raise_fd_limit())
        self.pid, self.pid_start = process.spawn([binary, *arguments], log_path=log, owner=self.owner)

        def alive() -> bool:
            return process.pid_alive(self.pid, self.pid_start)

        # Stop waiting as soon as it exits: a bad configuration ends it at once, with the reason logged.
        process.wait_until(lambda: process.port_open(self.port) or not alive(), LISTEN_TIMEOUT_S)
        if not (alive() and process.port_open(self.port)):
            tail = process.log_tail(log)
            self.stop()
            raise StartFailed(f"{self.binary} did not listen on {self.port} within {LISTEN_TIMEOUT_S:.0f}s:\n{tail}")

    def _hand_over(self, path: str) -> None:
        if self.owner and os.geteuid() == 0:
            os.chown(path, *process.service_user(self.owner))

    def stop(self) -> None:
        """Stop the peer and remove its directory; safe to call twice or after a failed start."""
        with standin_errors():
            process.terminate(self.pid, self.pid_start, sig=self.stop_signal, timeout=5)
        self.pid = None
        process.remove_tree(self.base_dir)
        self.base_dir = None

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
