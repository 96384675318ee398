"""The proxy's admin listener: ``/metrics`` (Prometheus text) and ``/status`` (JSON) over HTTP.

A deliberately tiny HTTP/1.1 server over asyncio streams, so the proxy needs no web framework: one
request per connection (``Connection: close``), ``GET`` and ``HEAD`` only, headers bounded in size
and time.  Anything else gets a proper error status (400, 404, 405, 408, 431, 500) and the
listener carries on; a broken client can never take it down.

The status document is composed by the server (pools, client sessions, pins, topology): this module
only calls the ``status`` callable it is given, which may be sync or async.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, Self

from reference_proxy.metrics import PROMETHEUS_CONTENT_TYPE, ProxyMetrics

MAX_HEAD_BYTES = 8192
"""Largest request line plus headers accepted; larger requests get 431."""

READ_TIMEOUT = 5.0
"""Seconds a client has to send its request head before getting 408."""

StatusSource = Callable[[], dict[str, Any] | Awaitable[dict[str, Any]]]


class AdminServer:
    """Serves ``/metrics`` and ``/status`` on a loopback port until closed.

    Use as ``async with AdminServer(metrics, status) as admin: ... admin.port``.
    """

    def __init__(self, metrics: ProxyMetrics, status: StatusSource, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self._metrics = metrics
        self._status = status
        self._host = host
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        """The port actually bound (useful when 0 was asked for)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the admin server is not started")
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._requested_port,
                                                  limit=MAX_HEAD_BYTES * 2)

    async def close(self) -> None:
        """Stop listening and finish (or cancel) requests in progress."""
        if self._server is not None:
            self._server.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            status, content_type, body, head_only = await self._respond(reader)
            _write_response(writer, status, content_type, body, head_only)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task is not None:
                self._handlers.discard(task)

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[HTTPStatus, str, bytes, bool]:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            return _error(HTTPStatus.REQUEST_TIMEOUT, "request head not received in time")
        except asyncio.LimitOverrunError:
            return _error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise
            return _error(HTTPStatus.BAD_REQUEST, "incomplete request head")
        if len(head) > MAX_HEAD_BYTES:
            return _error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large")
        request_line = head.split(b"\r\n", 1)[0]
        try:
            method, target, version = request_line.decode("ascii").split(" ")
        except (UnicodeDecodeError, ValueError):
            return _error(HTTPStatus.BAD_REQUEST, "malformed request line")
        if not version.startswith("HTTP/1.") or not target.startswith("/"):
            return _error(HTTPStatus.BAD_REQUEST, "malformed request line")
        if method not in ("GET", "HEAD"):
            return _error(HTTPStatus.METHOD_NOT_ALLOWED, f"method {method} not allowed")
        head_only = method == "HEAD"
        path = target.split("?", 1)[0]
        if path == "/metrics":
            return HTTPStatus.OK, PROMETHEUS_CONTENT_TYPE, self._metrics.prometheus_text(), head_only
        if path == "/status":
            try:
                document = self._status()
                if inspect.isawaitable(document):
                    document = await document
                body = json.dumps(document, indent=2, sort_keys=True, default=str).encode() + b"\n"
            except Exception as exc:  # noqa: BLE001 - the listener must survive a failing status source
                status, content_type, body, _ = _error(HTTPStatus.INTERNAL_SERVER_ERROR,
                                                       f"status unavailable: {type(exc).__name__}: {exc}")
                return status, content_type, body, head_only
            return HTTPStatus.OK, "application/json", body, head_only
        status, content_type, body, _ = _error(HTTPStatus.NOT_FOUND, f"no such path {path!r}; "
                                                                       "try /metrics or /status")
        return status, content_type, body, head_only


def _error(status: HTTPStatus, message: str) -> tuple[HTTPStatus, str, bytes, bool]:
    body = json.dumps({"error": message, "status": status.value}).encode() + b"\n"
    return status, "application/json", body, False


def _write_response(writer: asyncio.StreamWriter, status: HTTPStatus, content_type: str, body: bytes,
                    head_only: bool) -> None:
    head = (f"HTTP/1.1 {status.value} {status.phrase}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode("ascii")
    writer.write(head if head_only else head + body)
