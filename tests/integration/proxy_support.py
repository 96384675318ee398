"""Running the reference proxy in-process for integration tests, whatever its engine.

The proxy runs on its own event loop in a background thread so that tests can use plain
synchronous driver connections (and many threads of them) against it.  Each engine's support
module (``pg_proxy_support``, ``mysql_proxy_support``) adds its configuration and how its driver
connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any, TypeVar

from reference_proxy.config import ProxyConfig
from reference_proxy.server import ProxyServer


def config_for(engine: str, cluster, users: list[dict[str, Any]], extra: dict[str, Any] | None = None,
               **overrides: Any) -> ProxyConfig:
    """A proxy in front of ``cluster``: a read/write and a read-only endpoint on free ports.

    ``overrides`` use ``__`` for dots (``pool__max_connections_percent=50``)."""
    data = {
        "engine": engine,
        "endpoints": [{"name": "default", "role": "read_write", "port": 0},
                      {"name": "reader", "role": "read_only", "port": 0}],
        "instances": [{"id": i.id, "port": i.port, "role": i.role.value} for i in cluster.instances],
        "auth": {"users": users},
        **(extra or {}),
    }
    return ProxyConfig.from_dict(data).with_overrides({k.replace("__", "."): v for k, v in overrides.items()})


class RunningProxy:
    """A started ProxyServer on a background loop; use :func:`running`."""

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

    def admin_status(self) -> tuple[dict[str, Any], str]:
        """The admin API's ``/status`` document, parsed and as sent (to search it for what must not be there)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.server.admin_port}/status", timeout=10) as response:
            body = response.read().decode()
        return json.loads(body), body

    def pool_instance(self, instance_id: str) -> dict[str, Any]:
        return self.call(lambda: self.server.pool.snapshot()["instances"].get(instance_id, {}))


Running = TypeVar("Running", bound=RunningProxy)


@contextlib.contextmanager
def running(config: ProxyConfig, cluster, kind: type[Running]) -> Iterator[Running]:
    """Start a proxy with ``config`` in front of ``cluster`` in a thread; drain it on exit."""
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
    proxy = kind(holder["server"], loop, cluster)
    try:
        yield proxy
    finally:
        asyncio.run_coroutine_threadsafe(proxy.server.stop(grace=5), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
