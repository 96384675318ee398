"""A sans-I/O codec for the PostgreSQL frontend/backend protocol 3.0.

Feed bytes in, get frozen-dataclass messages out; call ``encode()`` on a message to get bytes.  No
sockets, no asyncio: the proxy's sessions own all I/O.  Layout, one module per message family:

* ``startup``      untyped first packets: StartupMessage, SSLRequest, GSSENCRequest, CancelRequest
* ``auth``         Authentication* requests and the client's password / SASL answers
* ``simple_query`` Query, RowDescription, DataRow, CommandComplete, Terminate, FunctionCall
* ``extended``     Parse, Bind, Describe, Execute, Close, Sync, Flush and their completions
* ``copy``         CopyIn/Out/Both responses, CopyData, CopyDone, CopyFail
* ``notices``      ErrorResponse, NoticeResponse
* ``status``       ParameterStatus, BackendKeyData, ReadyForQuery, NotificationResponse
* ``decoder``      per-direction :class:`Decoder` (``receive_data`` / ``next_event`` / ``NEED_DATA``)
* ``framing``      :class:`MessageSplitter`, the hot path's split-without-decoding

Malformed peer input raises :class:`ProtocolViolation`; sessions answer it with SQLSTATE 08P01.
"""

from reference_proxy.protocol.postgres.auth import *
from reference_proxy.protocol.postgres.copy import *
from reference_proxy.protocol.postgres.decoder import *
from reference_proxy.protocol.postgres.errors import *
from reference_proxy.protocol.postgres.extended import *
from reference_proxy.protocol.postgres.framing import *
from reference_proxy.protocol.postgres.notices import *
from reference_proxy.protocol.postgres.simple_query import *
from reference_proxy.protocol.postgres.startup import *
from reference_proxy.protocol.postgres.status import *
