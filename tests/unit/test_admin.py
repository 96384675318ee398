"""The admin HTTP listener on 127.0.0.1: metrics, status, and errors that never kill it."""

from __future__ import annotations

import asyncio
import functools
import json

from reference_proxy.admin import MAX_HEAD_BYTES, AdminServer
from reference_proxy.metrics import ProxyMetrics


def asynctest(fn):
    """Run an async test on a fresh event loop, bounded so a hang fails instead of stalling CI."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        return asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 30))
    return run


async def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("ascii").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), headers, body


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


@asynctest
async def test_metrics_and_status():
    metrics = ProxyMetrics()
    metrics.inc("ClientConnectionsReceived", endpoint="default")
    async with AdminServer(metrics, lambda: {"pools": {"i1": {"open": 2}}}) as admin:
        status, headers, body = await exchange(admin.port, get("/metrics"))
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        assert b'ClientConnectionsReceived_total{endpoint="default"} 1.0' in body
        assert int(headers["Content-Length"]) == len(body)
        status, headers, body = await exchange(admin.port, get("/status?verbose=1"))
        assert status == 200 and headers["Content-Type"] == "application/json"
        assert json.loads(body) == {"pools": {"i1": {"open": 2}}}
        status, _, body = await exchange(admin.port, get("/status", "HEAD"))
        assert status == 200 and body == b""


@asynctest
async def test_async_status_source():
    async def status():
        return {"ok": True}

    async with AdminServer(ProxyMetrics(), status) as admin:
        assert json.loads((await exchange(admin.port, get("/status")))[2]) == {"ok": True}


@asynctest
async def test_errors_are_answered_and_the_listener_survives():
    def broken_status():
        raise RuntimeError("boom")

    async with AdminServer(ProxyMetrics(), broken_status) as admin:
        assert (await exchange(admin.port, get("/nope")))[0] == 404
        assert (await exchange(admin.port, get("/metrics", "POST")))[0] == 405
        assert (await exchange(admin.port, b"garbage\r\n\r\n"))[0] == 400
        assert (await exchange(admin.port, b"GET /x\xff HTTP/1.1\r\n\r\n"))[0] == 400
        assert (await exchange(admin.port, b"GET metrics HTTP/1.1\r\n\r\n"))[0] == 400
        too_big = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * (MAX_HEAD_BYTES * 3) + b"\r\n\r\n"
        assert (await exchange(admin.port, too_big))[0] == 431
        status, _, body = await exchange(admin.port, get("/status"))
        assert status == 500 and b"boom" in body
        # a client that connects and hangs up at once does not disturb it either
        _, writer = await asyncio.open_connection("127.0.0.1", admin.port)
        writer.close()
        await writer.wait_closed()
        assert (await exchange(admin.port, get("/metrics")))[0] == 200


@asynctest
async def test_binds_loopback_and_closes_cleanly():
    admin = AdminServer(ProxyMetrics(), dict)
    await admin.start()
    port = admin.port
    assert admin._server.sockets[0].getsockname()[0] == "127.0.0.1"
    # a client that never finishes its request head must not hold up close()
    _, idle_writer = await asyncio.open_connection("127.0.0.1", port)
    await asyncio.sleep(0.01)
    await admin.close()
    idle_writer.close()
    try:
        await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        pass
    else:
        raise AssertionError("still listening after close")
