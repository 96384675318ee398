"""A sans-I/O codec for the MySQL client/server protocol (4.1 and later, with MariaDB's variations).

Feed bytes in, get frozen-dataclass messages out; call ``encode()`` on a message to get a payload,
and :func:`encode_packet` to frame it.  No sockets, no asyncio: the proxy's sessions own all I/O.
Unlike PostgreSQL's, MySQL packets do not name their type: what a payload means depends on the
phase, the command it answers and the negotiated capabilities, so decoders take those as arguments.
Layout, one module per message family:

* ``framing``      packet header, 16 MiB continuations, sequence ids, :class:`PacketSplitter`
                   (the hot path's split-without-decoding) and :class:`PacketReader`
* ``wire``         fixed and length-encoded integers, length-encoded and NUL-terminated strings
* ``flags``        :class:`Capability` and :class:`ServerStatus`
* ``handshake``    HandshakeV10, SSLRequest, HandshakeResponse41
* ``auth``         AuthSwitchRequest/Response, AuthMoreData, the native and caching_sha2 scrambles
* ``responses``    OK, ERR, EOF, the LOCAL INFILE request
* ``commands``     COM_QUERY, COM_INIT_DB, COM_PING, COM_QUIT, COM_CHANGE_USER, COM_RESET_CONNECTION,
                   COM_SET_OPTION, COM_FIELD_LIST and the COM_STMT_* family
* ``resultset``    column count, ColumnDefinition41, text rows
* ``binary``       column types, PREPARE_OK, binary rows, COM_STMT_EXECUTE parameters
* ``reply``        :class:`ResponseTracker` / :class:`ResponseReader`: when a reply is complete and
                   the status it ends with, which decides when a backend may go back to the pool

Malformed peer input raises :class:`ProtocolViolation`, carrying the error code and SQLSTATE of the
ERR packet a session answers with before closing.
"""

from reference_proxy.protocol.mysql.auth import *
from reference_proxy.protocol.mysql.binary import *
from reference_proxy.protocol.mysql.commands import *
from reference_proxy.protocol.mysql.errors import *
from reference_proxy.protocol.mysql.flags import *
from reference_proxy.protocol.mysql.framing import *
from reference_proxy.protocol.mysql.handshake import *
from reference_proxy.protocol.mysql.reply import *
from reference_proxy.protocol.mysql.responses import *
from reference_proxy.protocol.mysql.resultset import *
from reference_proxy.protocol.mysql.wire import *
