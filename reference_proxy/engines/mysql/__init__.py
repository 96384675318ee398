"""The MySQL engine (MariaDB and MySQL servers, Aurora MySQL): being built, not yet served.

The parts land here in the PostgreSQL engine's shape (:mod:`reference_proxy.engines.postgres`);
the engine is offered by :func:`reference_proxy.engines.engine_for` once its sessions exist.
The wire format is :mod:`reference_proxy.protocol.mysql`.
"""
