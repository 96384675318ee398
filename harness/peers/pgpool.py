"""pgpool-II in streaming-replication mode as a peer: one endpoint that balances reads over replicas.

pgpool-II speaks for a whole replicated cluster through a single port.  It asks each backend whether
it is in recovery to find the primary, sends writes (and every statement of a transaction that has
written) there, and with load balancing on sends a session's read-only statements to one backend
chosen by weight when the session starts, the primary included.  So a user gives its one port as
the writer endpoint (there is no separate reader endpoint), and reads through it are served by
replicas: that is pgpool's documented behaviour, and what a routing check must report.
A session's reads also stop seeing what it wrote outside a transaction as soon as they go to a
replica that has not replayed it yet, and per-session state set on the primary (a temporary table)
is missing where the reads land.

It runs as the ``postgres`` account (it would start as root too, but needs no privilege) in the
foreground (``-n``) of its own session, listens on 127.0.0.1 only (its control port too, whose
socket lives in the peer's private directory), checks no backend's health and never fails a
backend over: the stand-in's topology is the harness's to change.  The backends' password is kept in ``pool_passwd`` (0600), the only file that holds it.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence

from harness import process
from harness.peers.base import Peer
from harness.standins.base import ConnectionParams

OWNER = "postgres"


def _quoted(value: object) -> str:
    """A pgpool.conf string value: single quotes, an embedded one doubled."""
    return "'" + str(value).replace("'", "''") + "'"


class PgPool(Peer):
    """One pgpool-II balancing over ``backends`` (the writer and its readers, in any order: pgpool
    finds the primary itself); clients use the first backend's credentials and database.  A
    session's reads go to one backend drawn by ``weights`` (equal by default, as pgpool ships;
    a weight of 0 keeps reads off that backend).  Each pgpool child serves one client at a time, so
    ``children`` is how many clients it takes at once; each caches one connection to every backend.
    A context manager."""

    binary = "pgpool"
    debian_package = "pgpool2"
    owner = OWNER
    stop_signal = signal.SIGINT  # fast shutdown; SIGTERM would wait for every client to leave

    def __init__(self, backends: Sequence[ConnectionParams], *, children: int = 32, load_balance: bool = True,
                 weights: Sequence[int] | None = None, port: int | None = None) -> None:
        backends = list(backends)
        if not backends:
            raise ValueError("pgpool-II needs at least one backend")
        weights = [1] * len(backends) if weights is None else list(weights)
        if len(weights) != len(backends) or any(w < 0 for w in weights) or not any(weights):
            raise ValueError("pgpool-II needs one weight of 0 or more per backend, not all 0")
        if any((b.user, b.password, b.database) != (backends[0].user, backends[0].password, backends[0].database)
               for b in backends):
            raise ValueError("pgpool-II backends must share one user, password and database (one cluster)")
        super().__init__(backends[0], port=port)
        self.backends = backends
        self.children = children
        self.load_balance = load_balance
        self.weights = weights
        self.control_port: int | None = None

    def _config(self) -> str:
        assert self.base_dir is not None
        settings: dict[str, object] = {
            "backend_clustering_mode": "streaming_replication",
            "listen_addresses": process.LOOPBACK,
            "port": self.port,
            "unix_socket_directories": self.base_dir,
            "pcp_listen_addresses": process.LOOPBACK,
            "pcp_port": self.control_port,
            "pcp_socket_dir": self.base_dir,
            "wd_ipc_socket_dir": self.base_dir,
            "pid_file_name": f"{self.base_dir}/pgpool.pid",
            "logdir": self.base_dir,
            "log_destination": "stderr",
            "enable_pool_hba": True,
            "pool_passwd": "pool_passwd",
            "allow_clear_text_frontend_auth": False,
            "num_init_children": self.children,
            "max_pool": 1,
            "load_balance_mode": self.load_balance,
            # Finding the primary asks each backend pg_is_in_recovery() as this user; an empty
            # password means "look it up in pool_passwd", so no other file holds it.
            "sr_check_user": self.upstream.user,
            "sr_check_password": "",
            "sr_check_period": 1,
            "health_check_period": 0,
            "failover_on_backend_error": False,
            "failover_on_backend_shutdown": False,
            "search_primary_node_timeout": 10,
            "use_watchdog": False,
            "ssl": False,
        }
        for i, b in enumerate(self.backends):
            settings |= {f"backend_hostname{i}": b.host, f"backend_port{i}": b.port, f"backend_weight{i}": self.weights[i],
                         f"backend_flag{i}": "DISALLOW_TO_FAILOVER", f"backend_application_name{i}": f"backend{i}"}
        lines = []
        for key, value in settings.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'on' if value else 'off'}")
            elif isinstance(value, int):
                lines.append(f"{key} = {value}")
            else:
                lines.append(f"{key} = {_quoted(value)}")
        return "\n".join(lines) + "\n"

    def _arguments(self, fd_limit: int) -> list[str]:
        u = self.upstream
        self.control_port = process.free_port()
        # Clients log in with SCRAM checked against pool_passwd, whose clear-text entry (TEXT prefix)
        # is also how pgpool logs in to the backends with SCRAM in turn.
        self._write("pool_passwd", f"{u.user}:TEXT{u.password}\n", private=True)
        hba = self._write("pool_hba.conf", f"host all {u.user} {process.LOOPBACK}/32 scram-sha-256\n")
        pcp = self._write("pcp.conf", "")  # no control-port logins
        conf = self._write("pgpool.conf", self._config())
        return ["-n", "-D", "-f", conf, "-F", pcp, "-a", hba]
