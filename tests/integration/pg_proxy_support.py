"""Helpers for the reference proxy's PostgreSQL integration tests: run a ProxyServer in a thread.

The proxy runs on its own event loop in a background thread so that tests can use plain
synchronous psycopg connections (and many threads of them) against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
from polling import eventually  # noqa: F401 - re-exported for the proxy tests

from reference_proxy.config import ProxyConfig
from reference_proxy.server import ProxyServer

MD5_USER = "legacy_md5"
MD5_PASSWORD = "md5-secret"


def proxy_config(cluster, **overrides: Any) -> ProxyConfig:
    """A proxy in front of ``cluster``: a read/write and a read-only endpoint on free ports."""
    instances = [{"id": i.id, "port": i.port, "role": i.role.value} for i in cluster.instances]
    data = {
        "engine": "postgres",
        "endpoints": [{"name": "default", "role": "read_write", "port": 0},
                      {"name": "reader", "role": "read_only", "port": 0}],
        "instances": instances,
        "auth": {"users": [
            {"name": cluster.user, "password": cluster.password},
            {"name": MD5_USER, "password": MD5_PASSWORD, "method": "md5",
             "backend_user": cluster.user, "backend_password": cluster.password},
        ]},
    }
    return ProxyConfig.from_dict(data).with_overrides({k.replace("__", "."): v for k, v in overrides.items()})


class RunningProxy:
    """A started ProxyServer on a background loop; use :func:`running_proxy`."""

    def __init__(self, server: ProxyServer, loop: asyncio.AbstractEventLoop, cluster) -> None:
        self.server = server
        self.loop = loop
        self.cluster = cluster

    def port(self, endpoint: str = "default") -> int:
        return self.server.ports[endpoint]

    def call(self, fn, *args: Any) -> Any:
        """Run ``fn(*args)`` on the proxy's loop thread and return its result."""
        async def wrapper():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(30)

    def metric(self, name: str, **labels: Any) -> float:
        return self.call(lambda: self.server.metrics.value(name, **labels))

    def pool_instance(self, instance_id: str) -> dict[str, Any]:
        return self.call(lambda: self.server.pool.snapshot()["instances"].get(instance_id, {}))

    def connect(self, endpoint: str = "default", *, user: str | None = None, password: str | None = None,
                **kwargs: Any) -> psycopg.Connection:
        kwargs.setdefault("autocommit", True)
        kwargs.setdefault("connect_timeout", 10)
        return psycopg.connect(host="127.0.0.1", port=self.port(endpoint), user=user or self.cluster.user,
                               password=password if password is not None else self.cluster.password,
                               dbname=self.cluster.database, **kwargs)


@contextlib.contextmanager
def running_proxy(cluster, **overrides: Any) -> Iterator[RunningProxy]:
    """Start a proxy in front of ``cluster`` with config ``overrides``; drain it on exit."""
    config = proxy_config(cluster, **overrides)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []
    holder: dict[str, ProxyServer] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            holder["server"] = ProxyServer(config)
            loop.run_until_complete(holder["server"].start())
        except Exception as e:  # noqa: BLE001 - handed to the test thread below
            failure.append(e)
            started.set()
            return
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="reference-proxy", daemon=True)
    thread.start()
    if not started.wait(30) or failure:
        raise RuntimeError(f"proxy did not start: {failure[0] if failure else 'timeout'}")
    proxy = RunningProxy(holder["server"], loop, cluster)
    try:
        yield proxy
    finally:
        asyncio.run_coroutine_threadsafe(proxy.server.stop(grace=5), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def backend_pid(conn: psycopg.Connection) -> int:
    return conn.execute("select pg_backend_pid()", prepare=False).fetchone()[0]
