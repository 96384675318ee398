"""Connection churn: threads that each connect, run ``SELECT 1`` and disconnect, again and again.

This is the serverless pattern (a function invocation per connection) that a pooling proxy exists
for: the server pays a login and a session per query, the proxy only a client handshake.  The
clients are the recording clients' blocking driver adapters (PyMySQL, psycopg), so the figure is
what an application using that driver sees; nothing is recorded in a history, it is a rate.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from typing import Any

from harness.clients.address import Address
from harness.clients.client import SYNC_DRIVERS
from harness.clients.dialects import dialect_for
from harness.clients.outcomes import Stage


@dataclasses.dataclass(frozen=True)
class ChurnResult:
    """How many connect-query-disconnect cycles completed, and which errors the others met."""

    label: str
    threads: int
    seconds: float
    connections: int
    errors: dict[str, int]

    @property
    def per_second(self) -> float:
        return self.connections / self.seconds if self.seconds else 0.0

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "connections_per_s": round(self.per_second, 1), "failed": self.failed}


def run(address: Address, *, threads: int = 20, seconds: float = 10.0, connect_timeout: float = 10.0) -> ChurnResult:
    """``threads`` threads cycling connect / ``SELECT 1`` / close against ``address`` for ``seconds``."""
    driver = SYNC_DRIVERS[address.engine]
    dialect = dialect_for(address.engine)
    errors: collections.Counter[str] = collections.Counter()
    counts = [0] * threads
    lock = threading.Lock()
    stop = threading.Event()

    def cycle(index: int) -> None:
        while not stop.is_set():
            connection = driver(address, connect_timeout=connect_timeout, **driver.plaintext_options)
            stage = Stage.CONNECT
            try:
                connection.open()
                stage = Stage.COMMIT
                connection.execute("SELECT 1")
                counts[index] += 1
            except driver.errors as e:
                error = dialect.classify(e, stage)
                with lock:
                    errors[f"{'connect' if stage is Stage.CONNECT else 'query'}: {error.text}"] += 1
            finally:
                connection.close()

    workers = [threading.Thread(target=cycle, args=(i,), name=f"churn-{i}", daemon=True) for i in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    stop.wait(seconds)  # the measurement's duration, not a wait for state
    stop.set()
    for worker in workers:
        worker.join(connect_timeout + 30)
    elapsed = time.perf_counter() - started
    return ChurnResult(address.endpoint, threads, round(elapsed, 3), sum(counts), dict(errors))
