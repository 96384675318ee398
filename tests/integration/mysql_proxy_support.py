"""Helpers for the reference proxy's MySQL integration tests: run a ProxyServer in a thread.

The proxy runs on its own event loop in a background thread so that tests can use plain
synchronous PyMySQL connections (and threads of them) against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pymysql

from reference_proxy.config import ProxyConfig
from reference_proxy.server import ProxyServer

SHA2_USER = "sha2_client"
SHA2_PASSWORD = "sha2-secret"


def proxy_config(cluster, **overrides: Any) -> ProxyConfig:
    """A MySQL proxy in front of ``cluster``: a read/write and a read-only endpoint on free ports."""
    instances = [{"id": i.id, "port": i.port, "role": i.role.value} for i in cluster.instances]
    data = {
        "engine": "mysql",
        "endpoints": [{"name": "default", "role": "read_write", "port": 0},
                      {"name": "reader", "role": "read_only", "port": 0}],
        "instances": instances,
        "monitor": {"database": cluster.database},
        "auth": {"users": [
            {"name": cluster.user, "password": cluster.password, "method": "mysql_native_password"},
            {"name": SHA2_USER, "password": SHA2_PASSWORD, "method": "caching_sha2_password",
             "backend_user": cluster.user, "backend_password": cluster.password},
        ]},
    }
    return ProxyConfig.from_dict(data).with_overrides({k.replace("__", "."): v for k, v in overrides.items()})


def client_tls() -> ssl.SSLContext:
    """A client TLS context that accepts the proxy's self-signed certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


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
                tls: bool = False, **kwargs: Any) -> pymysql.connections.Connection:
        kwargs.setdefault("autocommit", True)
        kwargs.setdefault("connect_timeout", 10)
        kwargs.setdefault("database", self.cluster.database)
        options = {"ssl": client_tls()} if tls else {"ssl_disabled": True}
        return pymysql.connect(host="127.0.0.1", port=self.port(endpoint), user=user or self.cluster.user,
                               password=password if password is not None else self.cluster.password,
                               **options, **kwargs)


@contextlib.contextmanager
def running_proxy(cluster, **overrides: Any) -> Iterator[RunningProxy]:
    """Start a MySQL proxy in front of ``cluster`` with config ``overrides``; drain it on exit."""
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


def connection_id(conn: pymysql.connections.Connection) -> int:
    """The backend's thread id: which pooled connection served this statement."""
    with conn.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID()")
        return cur.fetchone()[0]


def scalar(conn: pymysql.connections.Connection, sql: str) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone()
        return None if row is None else row[0]
