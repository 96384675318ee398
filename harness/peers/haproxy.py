"""HAProxy in TCP mode as a peer: the non-pooling baseline for MySQL-protocol benchmarks.

A TCP proxy forwards each client connection to its own server connection and understands none of
the protocol, so it costs one extra hop and nothing else: what a pooling proxy spends beyond it is
the price of pooling, and what it saves on connection churn is the pooling's gain.  HAProxy runs in
the foreground (``-db``) of its own session, with its configuration in a private temporary
directory that is removed on stop, and listens on 127.0.0.1 only.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness import process
from harness.peers.base import Peer
from harness.standins.base import ConnectionParams


class HAProxy(Peer):
    """One HAProxy forwarding TCP to one upstream server, or round robin over several (a reader
    endpoint in front of the readers: each new connection goes to the next); a context manager."""

    binary = "haproxy"
    debian_package = "haproxy"

    def __init__(self, upstream: ConnectionParams | Sequence[ConnectionParams], *, max_connections: int = 20_000,
                 port: int | None = None) -> None:
        upstreams = [upstream] if isinstance(upstream, ConnectionParams) else list(upstream)
        if not upstreams:
            raise ValueError("HAProxy needs at least one upstream server")
        super().__init__(upstreams[0], port=port)  # clients use the first one's credentials and database
        self.upstreams = upstreams
        self.max_connections = max_connections

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

    def _arguments(self, fd_limit: int) -> list[str]:
        # Each relayed connection costs two descriptors and HAProxy refuses a maxconn it cannot
        # back with its (inherited) limit, so stay under it.
        self.max_connections = max(1, min(self.max_connections, (fd_limit - 100) // 2))
        return ["-db", "-f", self._write("haproxy.cfg", self._config())]
