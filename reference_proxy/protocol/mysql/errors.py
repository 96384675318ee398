"""Errors of the MySQL codec: who broke the protocol decides what happens next.

``ProtocolViolation`` means the peer sent bytes that are not valid MySQL client/server protocol.  It
carries the error code and SQLSTATE of the ERR packet a session answers with before it closes the
connection, so the session need not know which check failed.  ``LocalProtocolError`` means our own
code asked the codec to encode something the protocol cannot carry (a bug on our side).
"""

from __future__ import annotations

from reference_proxy.contracts import ProxyError

__all__ = [
    "ER_HANDSHAKE_ERROR",
    "ER_MALFORMED_PACKET",
    "ER_NET_PACKETS_OUT_OF_ORDER",
    "ER_NET_PACKET_TOO_LARGE",
    "ER_NOT_SUPPORTED_YET",
    "LocalProtocolError",
    "MySQLProtocolError",
    "ProtocolViolation",
]

ER_HANDSHAKE_ERROR = 1043
"""Bad handshake (SQLSTATE 08S01): the client's first packets do not parse."""
ER_NET_PACKET_TOO_LARGE = 1153
"""A packet over max_allowed_packet (08S01); the server closes after it."""
ER_NET_PACKETS_OUT_OF_ORDER = 1156
"""A packet with the wrong sequence id (08S01); the server closes after it."""
ER_MALFORMED_PACKET = 1835
"""A packet whose fields do not parse (the server uses HY000; the codec reports 08S01, a link error)."""
ER_NOT_SUPPORTED_YET = 1235
"""A feature the proxy refuses, such as LOCAL INFILE (42000)."""

LINK_FAILURE_SQLSTATE = "08S01"


class MySQLProtocolError(ProxyError):
    """Root of every error raised by the MySQL codec."""


class ProtocolViolation(MySQLProtocolError):
    """The peer's bytes are not valid MySQL protocol; answer with ``error_code``/``sqlstate`` and close."""

    def __init__(self, message: str, error_code: int = ER_MALFORMED_PACKET,
                 sqlstate: str = LINK_FAILURE_SQLSTATE) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.sqlstate = sqlstate


class LocalProtocolError(MySQLProtocolError):
    """We tried to encode a message with values the protocol cannot carry."""
