"""The connection phase's opening packets: the server's HandshakeV10 greeting, the client's
SSLRequest and HandshakeResponse41.

The greeting offers capabilities and a 20-byte nonce ("scramble") for the named auth plugin.  A client
that wants TLS first sends the 32-byte SSLRequest (the response's fixed head alone), upgrades the
socket, then sends the full HandshakeResponse41 at the next sequence id.  MariaDB puts its extended
capabilities in the last 4 of the greeting's 10 reserved bytes and of the response's 23 filler bytes
when capability bit 0 is clear; they are kept as ``mariadb_capabilities``.

Malformed handshake packets raise ProtocolViolation with 1043 ("Bad handshake"), as the server does.
"""

from __future__ import annotations

from dataclasses import dataclass

from reference_proxy.protocol.mysql.errors import ER_HANDSHAKE_ERROR, LocalProtocolError, ProtocolViolation
from reference_proxy.protocol.mysql.flags import Capability, ServerStatus
from reference_proxy.protocol.mysql.responses import ERR_HEADER, ErrPacket
from reference_proxy.protocol.mysql.wire import (
    PayloadReader,
    fixed_int,
    lenenc_bytes,
    lenenc_int,
    nul_string,
    text,
)

__all__ = [
    "DEFAULT_MAX_PACKET_SIZE",
    "PROTOCOL_VERSION_10",
    "SSL_REQUEST_SIZE",
    "HandshakeResponse41",
    "HandshakeV10",
    "SSLRequest",
    "decode_client_handshake",
    "decode_greeting",
]

PROTOCOL_VERSION_10 = 10
SSL_REQUEST_SIZE = 32
DEFAULT_MAX_PACKET_SIZE = 16 * 1024 * 1024
_FILLER = 23
_MIN_PART2 = 13


def _reader(payload: bytes, what: str) -> PayloadReader:
    return PayloadReader(payload, what, error_code=ER_HANDSHAKE_ERROR)


def _bad(message: str) -> ProtocolViolation:
    return ProtocolViolation(message, ER_HANDSHAKE_ERROR)


class _Bit:
    """The capability bits this module tests, as plain ints: ``int & Capability.X`` runs enum's
    reflected ``&`` in Python, which made these tests a large part of decoding a login."""

    CONNECT_ATTRS = int(Capability.CONNECT_ATTRS)
    CONNECT_WITH_DB = int(Capability.CONNECT_WITH_DB)
    LONG_PASSWORD = int(Capability.LONG_PASSWORD)
    PLUGIN_AUTH = int(Capability.PLUGIN_AUTH)
    PLUGIN_AUTH_LENENC_CLIENT_DATA = int(Capability.PLUGIN_AUTH_LENENC_CLIENT_DATA)
    PROTOCOL_41 = int(Capability.PROTOCOL_41)
    SECURE_CONNECTION = int(Capability.SECURE_CONNECTION)
    SSL = int(Capability.SSL)


@dataclass(frozen=True)
class HandshakeV10:
    """Server, first packet: who I am, what I can do, and the nonce to authenticate against."""

    server_version: str
    connection_id: int
    auth_plugin_data: bytes
    capabilities: int
    character_set: int = 45
    status_flags: int = ServerStatus.AUTOCOMMIT
    auth_plugin_name: str = "mysql_native_password"
    mariadb_capabilities: int = 0

    @classmethod
    def decode(cls, payload: bytes) -> HandshakeV10:
        r = _reader(payload, "HandshakeV10")
        version = r.u8()
        if version != PROTOCOL_VERSION_10:
            raise _bad(f"HandshakeV10: protocol version {version} is not 10")
        server_version = r.nul_text()
        connection_id = r.u32()
        part1 = r.raw(8)
        r.raw(1)
        caps = r.u16()
        charset = r.u8()
        status = r.u16()
        caps |= r.u16() << 16
        data_len = r.u8()
        reserved = r.raw(10)
        mariadb_caps = 0 if caps & _Bit.LONG_PASSWORD else int.from_bytes(reserved[6:], "little")
        data = part1
        if caps & _Bit.SECURE_CONNECTION:
            part2 = r.raw(max(_MIN_PART2, data_len - 8))
            data = part1 + part2
            data = data[:data_len - 1] if data_len > 8 else data.rstrip(b"\0")
        plugin = ""
        if caps & _Bit.PLUGIN_AUTH:
            plugin = text(r.nul_bytes() if b"\0" in payload[r.position:] else r.rest())
        r.end()
        return cls(server_version, connection_id, data, caps, charset, status, plugin, mariadb_caps)

    def encode(self) -> bytes:
        if len(self.auth_plugin_data) < 8:
            raise LocalProtocolError("HandshakeV10: the auth plugin data needs at least 8 bytes")
        caps = self.capabilities
        data_len = len(self.auth_plugin_data) + 1 if caps & _Bit.PLUGIN_AUTH else 0
        if data_len > 0xFF:
            raise LocalProtocolError("HandshakeV10: auth plugin data too long")
        reserved = b"\0" * 6 + (b"\0" * 4 if caps & _Bit.LONG_PASSWORD
                                else fixed_int(self.mariadb_capabilities, 4))
        out = (bytes((PROTOCOL_VERSION_10,)) + nul_string(self.server_version)
               + fixed_int(self.connection_id, 4)
               + self.auth_plugin_data[:8] + b"\0" + fixed_int(caps & 0xFFFF, 2)
               + fixed_int(self.character_set, 1) + fixed_int(self.status_flags, 2)
               + fixed_int(caps >> 16, 2) + bytes((data_len,)) + reserved)
        if caps & _Bit.SECURE_CONNECTION:
            part2 = self.auth_plugin_data[8:] + b"\0"
            out += part2 + b"\0" * (_MIN_PART2 - len(part2))
        if caps & _Bit.PLUGIN_AUTH:
            out += nul_string(self.auth_plugin_name)
        return out


def decode_greeting(payload: bytes) -> HandshakeV10 | ErrPacket:
    """The server's first packet: a greeting, or an ERR (too many connections, host blocked...)."""
    if payload[:1] == bytes((ERR_HEADER,)):
        return ErrPacket.decode(payload)
    return HandshakeV10.decode(payload)


def _fixed_head(capabilities: int, max_packet_size: int, character_set: int,
                mariadb_capabilities: int) -> bytes:
    filler = b"\0" * (_FILLER - 4) + (b"\0" * 4 if capabilities & _Bit.LONG_PASSWORD
                                      else fixed_int(mariadb_capabilities, 4))
    return (fixed_int(capabilities, 4) + fixed_int(max_packet_size, 4) + fixed_int(character_set, 1)
            + filler)


def _read_fixed_head(r: PayloadReader, what: str) -> tuple[int, int, int, int]:
    caps, max_packet, charset = r.u32(), r.u32(), r.u8()
    filler = r.raw(_FILLER)
    if not caps & _Bit.PROTOCOL_41:
        raise _bad(f"{what}: the client does not speak protocol 4.1")
    mariadb_caps = 0 if caps & _Bit.LONG_PASSWORD else int.from_bytes(filler[-4:], "little")
    return caps, max_packet, charset, mariadb_caps


@dataclass(frozen=True)
class SSLRequest:
    """Client, instead of the response: switch to TLS now; the full response follows encrypted."""

    capabilities: int
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
    character_set: int = 45
    mariadb_capabilities: int = 0

    @classmethod
    def decode(cls, payload: bytes) -> SSLRequest:
        if len(payload) != SSL_REQUEST_SIZE:
            raise _bad(f"SSLRequest: {len(payload)} bytes, not {SSL_REQUEST_SIZE}")
        r = _reader(payload, "SSLRequest")
        caps, max_packet, charset, mariadb_caps = _read_fixed_head(r, "SSLRequest")
        if not caps & _Bit.SSL:
            raise _bad("SSLRequest: CLIENT_SSL is not set")
        return cls(caps, max_packet, charset, mariadb_caps)

    def encode(self) -> bytes:
        return _fixed_head(self.capabilities | _Bit.SSL, self.max_packet_size, self.character_set,
                           self.mariadb_capabilities)


@dataclass(frozen=True)
class HandshakeResponse41:
    """Client: my capabilities, user, auth response, and optionally schema, plugin and attributes."""

    capabilities: int
    username: str
    auth_response: bytes = b""
    database: str | None = None
    auth_plugin_name: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
    character_set: int = 45
    mariadb_capabilities: int = 0

    def attribute(self, name: str) -> str | None:
        return next((v for k, v in self.attributes if k == name), None)

    @classmethod
    def decode(cls, payload: bytes) -> HandshakeResponse41:
        r = _reader(payload, "HandshakeResponse41")
        caps, max_packet, charset, mariadb_caps = _read_fixed_head(r, "HandshakeResponse41")
        username = r.nul_text()
        if caps & _Bit.PLUGIN_AUTH_LENENC_CLIENT_DATA:
            auth = r.lenenc_bytes()
        elif caps & _Bit.SECURE_CONNECTION:
            auth = r.raw(r.u8())
        else:
            auth = r.nul_bytes()
        database = r.nul_text() if caps & _Bit.CONNECT_WITH_DB and r.remaining() else None
        plugin = r.nul_text() if caps & _Bit.PLUGIN_AUTH and r.remaining() else None
        attributes: list[tuple[str, str]] = []
        if caps & _Bit.CONNECT_ATTRS and r.remaining():
            block = _reader(r.lenenc_bytes(), "HandshakeResponse41 attributes")
            while block.remaining():
                attributes.append((block.lenenc_text(), block.lenenc_text()))
        r.end()
        return cls(caps, username, auth, database, plugin, tuple(attributes), max_packet, charset,
                   mariadb_caps)

    def encode(self) -> bytes:
        caps = self.capabilities
        out = _fixed_head(caps, self.max_packet_size, self.character_set, self.mariadb_capabilities)
        out += nul_string(self.username)
        if caps & _Bit.PLUGIN_AUTH_LENENC_CLIENT_DATA:
            out += lenenc_bytes(self.auth_response)
        elif caps & _Bit.SECURE_CONNECTION:
            if len(self.auth_response) > 0xFF:
                raise LocalProtocolError("auth response over 255 bytes needs PLUGIN_AUTH_LENENC_CLIENT_DATA")
            out += bytes((len(self.auth_response),)) + self.auth_response
        else:
            out += nul_string(self.auth_response)
        if caps & _Bit.CONNECT_WITH_DB:
            out += nul_string(self.database or "")
        if caps & _Bit.PLUGIN_AUTH and self.auth_plugin_name is not None:
            out += nul_string(self.auth_plugin_name)
        if caps & _Bit.CONNECT_ATTRS and self.attributes:
            block = b"".join(lenenc_bytes(k) + lenenc_bytes(v) for k, v in self.attributes)
            out += lenenc_int(len(block)) + block
        return out


def decode_client_handshake(payload: bytes) -> SSLRequest | HandshakeResponse41:
    """The client's reply to the greeting: an SSLRequest (32 bytes with CLIENT_SSL) or the response."""
    if len(payload) == SSL_REQUEST_SIZE and int.from_bytes(payload[:4], "little") & _Bit.SSL:
        return SSLRequest.decode(payload)
    return HandshakeResponse41.decode(payload)


