"""The SQL each engine speaks to the recording clients, one module per engine.

:func:`dialect_for` is the one place that maps an engine name to its :class:`~.base.Dialect`.
"""

from __future__ import annotations

from harness.clients.dialects.base import Dialect
from harness.clients.dialects.mysql import MYSQL
from harness.clients.dialects.postgres import POSTGRES
from harness.clients.plans import ClientError

DIALECTS: dict[str, Dialect] = {d.engine: d for d in (POSTGRES, MYSQL)}


def dialect_for(engine: str) -> Dialect:
    try:
        return DIALECTS[engine]
    except KeyError:
        raise ClientError(f"unknown engine {engine!r}: expected one of {', '.join(DIALECTS)}") from None
