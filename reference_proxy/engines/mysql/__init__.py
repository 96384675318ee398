"""The MySQL engine (MariaDB and MySQL servers, Aurora MySQL): client sessions, backend connections,
pinning and the topology probe, in the PostgreSQL engine's shape (:mod:`reference_proxy.engines.postgres`).

* :mod:`.session` - one client session (login, then command-by-command relay) and the session
  factory; :mod:`.relay` drives its command phase from transport callbacks; :mod:`.tracking`
  follows replies and decides releases and pins, without I/O.
* :mod:`.lexer`, :mod:`.pinning`, :mod:`.screen` - which SQL text pins a session, as RDS decides,
  and a cheap screen in front of the classifier; :mod:`.tracked` - the session settings that
  partition the pool instead of pinning.
* :mod:`.login`, :mod:`.auth` - the proxy's own login (mysql_native_password, caching_sha2_password,
  TLS, RequireTLS).
* :mod:`.backend` - backend connections and the pool's backend factory.
* :mod:`.probe` - the topology monitor's probe of one instance.

The wire format itself is :mod:`reference_proxy.protocol.mysql`.
"""

from __future__ import annotations

from reference_proxy.config import Engine
from reference_proxy.engines import ProxyEngine
from reference_proxy.engines.mysql.backend import MySQLBackendFactory
from reference_proxy.engines.mysql.pinning import classify, digest
from reference_proxy.engines.mysql.probe import MySQLProbe
from reference_proxy.engines.mysql.screen import screened
from reference_proxy.engines.mysql.session import TOO_MANY_CLIENTS, MySQLSessions

__all__ = ["ENGINE"]


ENGINE = ProxyEngine(
    name=Engine.MYSQL,
    sessions=MySQLSessions,
    backends=MySQLBackendFactory,
    classify=screened(classify),
    digest=digest,
    probe=MySQLProbe,
    too_many_clients=TOO_MANY_CLIENTS,
)
