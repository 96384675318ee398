"""The backend connection pool: settings with RDS's names and defaults, and the pool itself."""

from reference_proxy.pool.errors import (
                                         BackendConnectFailed,
                                         BorrowTimeout,
                                         NotBorrowed,
                                         PoolClosed,
                                         PoolError,
)
from reference_proxy.pool.pool import BACKEND_IDLE_AFTER, BACKEND_UNUSED_LIMIT, DEFAULT_MAX_CONNECTIONS, Pool
from reference_proxy.pool.settings import PoolSettings

__all__ = ["BACKEND_IDLE_AFTER", "BACKEND_UNUSED_LIMIT", "DEFAULT_MAX_CONNECTIONS", "BackendConnectFailed",
           "BorrowTimeout", "NotBorrowed", "Pool", "PoolClosed", "PoolError", "PoolSettings"]
