"""HAProxy in TCP mode as a peer: the non-pooling baseline for MySQL-protocol benchmarks.

A TCP proxy forwards each client connection to its own server connection and understands none of
the protocol, so it costs one extra hop and nothing else: what a pooling proxy spends beyond it is
the price of pooling, and what it saves on connection churn is the pooling's gain.  HAProxy runs in
the foreground (``-db``) of its own session, with its configuration in a private temporary
directory that is removed on stop, and listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Self

from harness import process
from harness.standins.base import ConnectionParams, StartFailed
from harness.standins.runtime import standin_errors

SEARCH_DIRS = ["/usr/sbin", "/usr/bin"]
DEBIAN_PACKAGE = "haproxy"


class HAProxy:
    """One HAProxy forwarding TCP to one upstream server, or round robin over several (a reader
    endpoint in front of the readers: each new connection goes to the next); a context manager."""

    def __init__(self, upstream: ConnectionParams | Sequence[ConnectionParams], *, max_connections: int = 20_000,
                 port: int | None = None) -> None:
        self.upstreams = [upstream] if isinstance(upstream, ConnectionParams) else list(upstream)
        if not self.upstreams:
            raise ValueError("HAProxy needs at least one upstream server")
        self.upstream = self.upstreams[0]
        self.max_connections = max_connections
        self.port = port
        self.base_dir: str | None = None
        self.pid: int | None = None
        self.pid_start: int | None = None

    @property
    def params(self) -> ConnectionParams:
        """How clients reach the upstream server(s) through HAProxy (the first one's credentials and database)."""
        assert self.port is not None
        return ConnectionParams(process.LOOPBACK, self.port, self.upstream.user, self.upstream.password,
                                self.upstream.database)

    def _config(self) -> str:
        return "\n".join([
            "global",
            f"    maxconn {self.max_connections}",
            "defaults",
            "    mode tcp",
            "    timeout connect 5s",
            # A database session may sit idle for long: the server's own timeouts govern it, not ours.
            "    timeout client 1h",
            "    timeout server 1h",
            "frontend clients",
            f"    bind {process.LOOPBACK}:{self.port}",
            f"    maxconn {self.max_connections}",
            "    default_backend upstream",
            "backend upstream",
            "    balance roundrobin",
            *(f"    server upstream{i} {u.host}:{u.port}" for i, u in enumerate(self.upstreams)),
            "",
        ])

    def start(self) -> None:
        """Start HAProxy and wait until it listens; stand-in errors (BinaryMissing naming the Debian
        package, PortInUse, StartFailed) say why not."""
        with standin_errors():
            self._start()

    def _start(self) -> None:
        binary = process.find_binary("haproxy", SEARCH_DIRS, DEBIAN_PACKAGE)
        self.port = self.port or process.free_port()
        process.check_port_free(self.port)
        self.base_dir = tempfile.mkdtemp(prefix=f"{process.SCRATCH_PREFIX}haproxy-")  # 0700: ours alone
        config = os.path.join(self.base_dir, "haproxy.cfg")
        log = os.path.join(self.base_dir, "haproxy.log")
        # Each relayed connection costs two descriptors and HAProxy refuses a maxconn it cannot
        # back with its (inherited) limit, so raise ours and stay under it.
        limit = process.raise_fd_limit()
        self.max_connections = max(1, min(self.max_connections, (limit - 100) // 2))
        with open(config, "w") as f:
            f.write(self._config())
        self.pid, self.pid_start = process.spawn([binary, "-db", "-f", config], log_path=log)
        def alive() -> bool:
            return process.pid_alive(self.pid, self.pid_start)

        # Stop waiting as soon as it exits: a bad configuration ends it at once, with the reason logged.
        process.wait_until(lambda: process.port_open(self.port) or not alive(), 15)
        if not (alive() and process.port_open(self.port)):
            tail = process.log_tail(log)
            self.stop()
            raise StartFailed(f"haproxy did not listen on {self.port} within 15s:\n{tail}")

    def stop(self) -> None:
        """Stop HAProxy and remove its directory; safe to call twice or after a failed start."""
        with standin_errors():
            process.terminate(self.pid, self.pid_start, timeout=5)
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
