"""What RDS Proxy accepts in a PostgreSQL StartupMessage, and the exact words it refuses with.

Accepted keys: ``user``, ``database`` and the runtime parameters in :data:`RUNTIME_PARAMETERS`.
Refused, each with RDS Proxy's documented (or reported) message: protocol versions other than 3.x,
``replication``, ``options`` (command-line ``-c`` settings), and any other key.  ``_pq_.`` protocol
options are not refused: the server names them back in NegotiateProtocolVersion, as PostgreSQL does.

The runtime parameters a client sends must hold on every backend that serves it.  We partition the
pool by them (they become the PoolKey ``variant`` and are sent in the backend's own StartupMessage),
the same way RDS keeps sessions with different ``search_path`` apart: no per-borrow SET round trip,
and nothing for a reset to forget.
"""

from __future__ import annotations

from dataclasses import dataclass

from reference_proxy.contracts import ProxyError
from reference_proxy.protocol.postgres import StartupMessage

__all__ = [
    "FEATURE_NOT_SUPPORTED",
    "INVALID_AUTHORIZATION",
    "RUNTIME_PARAMETERS",
    "ClientStartup",
    "StartupRejected",
    "check_startup",
]

RUNTIME_PARAMETERS = ("application_name", "client_encoding", "DateStyle", "TimeZone",
                      "extra_float_digits", "search_path")
"""Startup parameters RDS Proxy accepts besides ``user`` and ``database``."""

FEATURE_NOT_SUPPORTED = "0A000"
INVALID_AUTHORIZATION = "28000"

_RUNTIME_BY_LOWER = {name.lower(): name for name in RUNTIME_PARAMETERS}


class StartupRejected(ProxyError):
    """The StartupMessage asks for something RDS Proxy refuses; ``str(e)`` is the client's message."""

    def __init__(self, message: str, sqlstate: str = FEATURE_NOT_SUPPORTED) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate


@dataclass(frozen=True)
class ClientStartup:
    """A StartupMessage the proxy accepted.

    ``runtime`` holds the accepted runtime parameters under their canonical names, sorted, so that
    two clients with the same settings share one pool partition.  ``newest_minor`` and
    ``unrecognized_options`` are what NegotiateProtocolVersion must say, if anything.
    """

    user: str
    database: str
    runtime: tuple[tuple[str, str], ...]
    requested_minor: int = 0
    unrecognized_options: tuple[str, ...] = ()

    @property
    def needs_negotiation(self) -> bool:
        return self.requested_minor > 0 or bool(self.unrecognized_options)


def check_startup(msg: StartupMessage) -> ClientStartup:
    """Accept ``msg`` or raise :class:`StartupRejected` with RDS Proxy's words."""
    if msg.major != 3:
        raise StartupRejected("Feature not supported: RDS Proxy supports only version 3.0 of the "
                              "PostgreSQL messaging protocol.")
    user = database = None
    runtime: dict[str, str] = {}
    pq_options: list[str] = []
    for key, value in msg.parameters:
        if key == "user":
            user = value
        elif key == "database":
            database = value
        elif key == "replication":
            raise StartupRejected("Feature not supported: RDS Proxy currently doesn't support streaming "
                                  "replication mode.")
        elif key == "options":
            raise StartupRejected("Feature not supported: RDS Proxy currently doesn't support "
                                  "command-line options.")
        elif key.startswith("_pq_."):
            pq_options.append(key)
        elif key.lower() in _RUNTIME_BY_LOWER:
            runtime[_RUNTIME_BY_LOWER[key.lower()]] = value
        else:
            raise StartupRejected(f"Feature not supported: RDS Proxy currently doesn't support the option "
                                  f"{key}.")
    if not user:
        raise StartupRejected("A user name is missing from the connection startup packet. Provide a user "
                              "name for this connection.", INVALID_AUTHORIZATION)
    return ClientStartup(user=user, database=database or user, runtime=tuple(sorted(runtime.items())),
                         requested_minor=msg.minor, unrecognized_options=tuple(pq_options))
