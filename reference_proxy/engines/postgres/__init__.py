"""The PostgreSQL engine: client sessions, backend connections, pinning and the topology probe.

* :mod:`.session` - one client session (handshake, then transaction-level relay) and the session
  factory; :mod:`.relay` drives its relay phase from transport callbacks.
* :mod:`.startup`, :mod:`.auth`, :mod:`.cancel` - StartupMessage checks, client authentication
  (SCRAM-SHA-256, MD5) and the proxy's own cancel keys.
* :mod:`.tracking` - transaction boundaries and pinning of one session, without I/O;
  :mod:`.unserved` answers requests no backend could be borrowed for.
* :mod:`.backend` - backend connections and the pool's backend factory.
* :mod:`.lexer`, :mod:`.pinning`, :mod:`.screen` - which SQL text pins a session, as RDS decides,
  and a cheap screen in front of the classifier.
* :mod:`.probe` - the topology monitor's probe of one instance.

The wire format itself is :mod:`reference_proxy.protocol.postgres`.
"""

from __future__ import annotations

from reference_proxy.config import Engine
from reference_proxy.engines import ProxyEngine
from reference_proxy.engines.postgres.backend import PostgresBackendFactory
from reference_proxy.engines.postgres.pinning import classify, digest
from reference_proxy.engines.postgres.probe import PostgresProbe
from reference_proxy.engines.postgres.screen import screened
from reference_proxy.engines.postgres.session import TOO_MANY_CLIENTS, PostgresSessions

__all__ = ["ENGINE"]

ENGINE = ProxyEngine(
    name=Engine.POSTGRES,
    sessions=PostgresSessions,
    backends=PostgresBackendFactory,
    classify=screened(classify),
    digest=digest,
    probe=PostgresProbe,
    too_many_clients=TOO_MANY_CLIENTS,
)
