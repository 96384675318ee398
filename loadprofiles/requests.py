"""The requests the load users send, as functions of a recording client: one copy for Locust and threads.

Each function takes a connected :class:`~harness.clients.client.Client` and sends one recorded request;
the Locust users (:mod:`loadprofiles.users`) call them under gevent, and the benchmark
(:mod:`loadprofiles.benchmark`) calls the very same functions from a plain thread pool, so the two
columns of its table measure the same work.  No Locust here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.clients.client import Client
from harness.clients.outcomes import Result
from harness.clients.plans import DEFAULT_TABLE, Plan, Statement, ids_from_rows

LONG_TRANSACTION_S = 0.5
SLEEP_S = 0.1
"""The benchmark's sleeping request: N users sleeping this long in SQL reach about N / SLEEP_S req/s
when their concurrency is real."""


def point_read_plan(dialect: Any, write_id: int, table: str = DEFAULT_TABLE) -> Plan:
    """Read one row by primary key, in a transaction that also reads who served it."""
    return Plan("point_read", write_id,
                (Statement(f"SELECT id FROM {dialect.quote(table)} WHERE id = %s", (write_id,)),),
                idempotent=True, result=lambda rows: ids_from_rows(rows[0]))


def held_transaction_plan(dialect: Any, seconds: float, f: str = "long_transaction") -> Plan:
    """A transaction that keeps its backend busy for ``seconds`` in SQL (the engine's sleep)."""
    return Plan(f, seconds, (Statement(dialect.sleep_sql(seconds)),), idempotent=True)


def point_read(client: Client, write_id: int = 0) -> Result:
    return client.run(point_read_plan(client.dialect, write_id))


def churn_query(client: Client) -> Result:
    """The one query of a connect-query-disconnect client: autocommit, naming who served it."""
    return client.request("churn_query", f"SELECT 1 AS one, {client.who()}")


def long_transaction(client: Client) -> Result:
    return client.run(held_transaction_plan(client.dialect, LONG_TRANSACTION_S))


def sleep(client: Client) -> Result:
    return client.run(held_transaction_plan(client.dialect, SLEEP_S, "sleep"))


Request = Callable[[Client], Result]
