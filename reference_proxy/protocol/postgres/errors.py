"""Errors of the PostgreSQL codec: who broke the protocol decides what happens next.

``ProtocolViolation`` means the peer sent bytes that are not valid protocol 3.0 (bad length, unknown
type byte, truncated field, oversized message).  A session answers it with an ErrorResponse carrying
SQLSTATE 08P01 and closes the connection.  ``LocalProtocolError`` means our own code asked the codec
to encode something impossible (a bug on our side, never the peer's).
"""

from __future__ import annotations

from reference_proxy.contracts import ProxyError

__all__ = ["PROTOCOL_VIOLATION_SQLSTATE", "LocalProtocolError", "PostgresProtocolError", "ProtocolViolation"]

PROTOCOL_VIOLATION_SQLSTATE = "08P01"


class PostgresProtocolError(ProxyError):
    """Root of every error raised by the PostgreSQL codec."""


class ProtocolViolation(PostgresProtocolError):
    """The peer's bytes are not valid PostgreSQL protocol; the connection cannot continue."""


class LocalProtocolError(PostgresProtocolError):
    """We tried to encode a message with values the protocol cannot carry."""
