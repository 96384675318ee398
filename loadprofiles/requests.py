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
from harness.clients.plans import Plan, Statement

LONG_TRANSACTION_S = 0.5
SLEEP_S = 0.1
"""The benchmark's sleeping request: N users sleeping this long in SQL reach about N / SLEEP_S req/s
when their concurrency is real."""


def held_transaction_plan(dialect: Any, seconds: float, f: str = "long_transaction") -> Plan:
    """A transaction that keeps its backend busy for ``seconds`` in SQL (the engine's sleep)."""
    return Plan(f, seconds, (Statement(dialect.sleep_sql(seconds)),), idempotent=True)


def point_read(client: Client, write_id: int = 0) -> Result:
    """One row by primary key and who served it, in one autocommit round trip (what a read-heavy
    application sends; :func:`~harness.clients.plans.point_read_plan`)."""
    return client.point_read(write_id)


def churn_query(client: Client) -> Result:
    """The one query of a connect-query-disconnect client: autocommit, naming who served it."""
    return client.request("churn_query", f"SELECT 1 AS one, {client.who()}")


def long_transaction(client: Client) -> Result:
    return client.run(held_transaction_plan(client.dialect, LONG_TRANSACTION_S))


def sleep(client: Client) -> Result:
    """One autocommit statement that sleeps :data:`SLEEP_S` on the server and names who served it: a
    single round trip, so the rate measures concurrency, not the client's own work."""
    return client.request("sleep", f"SELECT {client.dialect.sleep_expression(SLEEP_S)}, {client.who()}",
                          value=SLEEP_S)


Request = Callable[[Client], Result]
