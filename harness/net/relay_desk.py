"""The relay desk: one process's TCP relays, driven from other processes over loopback HTTP.

Why it exists: the relays between the proxy and the instances are threads of the process that starts
the target, but the faults of a load run are carried out by Locust's master, another process that
only rebuilds the target from its record.  The desk serves the blocking API of
:class:`~harness.net.relay.RelayServer` (add, remove and list toxics, clear them, read the counters)
in Toxiproxy's HTTP shape, and :class:`RemoteRelay` is the same API on the other side, so a network
fault does the same calls whichever process it runs in.

Routes (JSON bodies; toxics as :meth:`~harness.net.toxics.Toxic.to_dict` writes them)::

    GET    /relays                       {"relays": {"instance-1": {"port": 40123}, ...}}
    GET    /relays/<id>/toxics           {"toxics": [...]}
    POST   /relays/<id>/toxics           a toxic  -> 200, the toxic as installed
    DELETE /relays/<id>/toxics/<name>    -> 204
    DELETE /relays/<id>/toxics           -> 204 (every toxic)
    GET    /relays/<id>/stats            the relay's counters

The desk listens on 127.0.0.1 only, and every request must carry its token (``Authorization: Bearer
...``), compared in constant time: a token is as good as a network cable to the database, so it lives
only in records readable by their owner.  Errors answer ``{"error": ..., "kind": ...}``: 400 a bad
toxic, 401 no or a wrong token, 404 no such relay or toxic, 409 the relay refused (a name clash, a
relay that stopped).
"""

from __future__ import annotations

import dataclasses
import hmac
import http.client
import http.server
import json
import secrets
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, Self

from harness.net.relay import LOOPBACK, RelayServer, RelayStats
from harness.net.toxics import RelayError, Toxic, ToxicError, toxic_from_dict

MAX_BODY = 64 * 1024
"""The largest request body the desk reads (a toxic is a few hundred bytes)."""
CALL_TIMEOUT_S = 15.0
"""How long a remote call may take: longer than a relay's own call timeout (10 s)."""


@dataclasses.dataclass(frozen=True)
class DeskAddress:
    """Where a desk listens and the token its requests need; what a target record carries."""

    port: int
    token: str

    def to_state(self) -> dict[str, Any]:
        return {"port": self.port, "token": self.token}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> DeskAddress:
        port, token = state.get("port"), state.get("token")
        if not isinstance(port, int) or not 0 < port < 65536 or not isinstance(token, str) or not token:
            raise RelayError("a relay desk record needs a port and a token")
        return cls(port, token)


class _DeskError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


class RelayDesk:
    """Serves the relays ``relays()`` returns (looked up per request, so relays started later count)."""

    def __init__(self, relays: Callable[[], Mapping[str, RelayServer]], *, token: str | None = None) -> None:
        self._relays = relays
        self._token = token or secrets.token_urlsafe(32)
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> DeskAddress:
        if self._server is None:
            raise RelayError("the relay desk is not running")
        return DeskAddress(self._server.server_address[1], self._token)

    def start(self) -> DeskAddress:
        if self._server is not None:
            raise RelayError("the relay desk is already running")
        desk = self

        class Handler(_Handler):
            def desk_call(self, method: str, path: str, body: Any) -> tuple[int, Any]:
                return desk._route(method, path, body)

            def authorized(self) -> bool:
                given = self.headers.get("Authorization", "")
                return hmac.compare_digest(given.encode(), f"Bearer {desk._token}".encode())

        server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="relay-desk", daemon=True)
        self._thread.start()
        return self.address

    def stop(self) -> None:
        """Stop serving; safe to call twice."""
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- routing (no sockets: tested directly) ---------------------------------------------------
    def _route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = [urllib.parse.unquote(p) for p in path.split("?", 1)[0].strip("/").split("/")]
        if parts == ["relays"] and method == "GET":
            return 200, {"relays": {iid: {"port": r.port} for iid, r in self._relays().items()}}
        if len(parts) < 3 or parts[0] != "relays":
            raise _DeskError(404, "route", f"no route {method} {path}")
        relay = self._relay(parts[1])
        rest = parts[2:]
        try:
            if rest == ["toxics"] and method == "GET":
                return 200, {"toxics": [t.to_dict() for t in relay.toxics()]}
            if rest == ["toxics"] and method == "POST":
                if not isinstance(body, dict):
                    raise _DeskError(400, "toxic", "the body must be a JSON object describing a toxic")
                return 200, relay.add_toxic(toxic_from_dict(body)).to_dict()
            if rest == ["toxics"] and method == "DELETE":
                relay.clear_toxics()
                return 204, None
            if len(rest) == 2 and rest[0] == "toxics" and method == "DELETE":
                if not any(t.name == rest[1] for t in relay.toxics()):
                    raise _DeskError(404, "toxic", f"no toxic {rest[1]!r} is installed")
                relay.remove_toxic(rest[1])
                return 204, None
            if rest == ["stats"] and method == "GET":
                return 200, dataclasses.asdict(relay.stats())
        except ToxicError as e:
            raise _DeskError(400, "toxic", str(e)) from None
        except RelayError as e:
            raise _DeskError(409, "relay", str(e)) from None
        raise _DeskError(404, "route", f"no route {method} {path}")

    def _relay(self, instance_id: str) -> RelayServer:
        relays = self._relays()
        try:
            return relays[instance_id]
        except KeyError:
            raise _DeskError(404, "relay", f"no relay for instance {instance_id!r} "
                                           f"(have: {', '.join(relays) or 'none'})") from None


class _Handler(http.server.BaseHTTPRequestHandler):
    """HTTP plumbing only; :meth:`RelayDesk._route` decides."""

    server_version = "aurora-harness-relay-desk"

    def desk_call(self, method: str, path: str, body: Any) -> tuple[int, Any]:  # set by RelayDesk.start
        raise NotImplementedError

    def authorized(self) -> bool:  # set by RelayDesk.start
        raise NotImplementedError

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        try:
            if not self.authorized():
                raise _DeskError(401, "auth", "the relay desk needs its token")
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 <= length <= MAX_BODY:
                raise _DeskError(400, "body", f"a request body is at most {MAX_BODY} bytes")
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                raise _DeskError(400, "body", "the request body is not JSON") from None
            status, answer = self.desk_call(method, self.path, body)
        except _DeskError as e:
            status, answer = e.status, {"error": e.message, "kind": e.kind}
        except Exception as e:  # noqa: BLE001 - answer, never kill the desk's thread
            status, answer = 500, {"error": f"{type(e).__name__}: {e}", "kind": "internal"}
        payload = b"" if answer is None else json.dumps(answer).encode()
        self.send_response(status)
        if payload:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the desk's callers record what they did."""


class RemoteRelay:
    """The blocking API of :class:`RelayServer` for one instance's relay behind a desk."""

    def __init__(self, desk: DeskAddress, instance_id: str, *, timeout: float = CALL_TIMEOUT_S) -> None:
        self.desk, self.instance_id, self._timeout = desk, instance_id, timeout

    @property
    def address(self) -> tuple[str, int]:
        return (LOOPBACK, self.port)

    @property
    def port(self) -> int:
        return int(self._call("GET", "/relays")["relays"][self.instance_id]["port"])

    def add_toxic(self, toxic: Toxic) -> Toxic:
        return toxic_from_dict(self._call("POST", self._path("toxics"), toxic.to_dict()))

    def remove_toxic(self, name: str) -> None:
        self._call("DELETE", self._path("toxics", name))

    def clear_toxics(self) -> None:
        self._call("DELETE", self._path("toxics"))

    def toxics(self) -> list[Toxic]:
        return [toxic_from_dict(d) for d in self._call("GET", self._path("toxics"))["toxics"]]

    def stats(self) -> RelayStats:
        return RelayStats(**self._call("GET", self._path("stats")))

    def _path(self, *parts: str) -> str:
        return "/" + "/".join(urllib.parse.quote(p, safe="") for p in ("relays", self.instance_id, *parts))

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        conn = http.client.HTTPConnection(LOOPBACK, self.desk.port, timeout=self._timeout)
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.desk.token}"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as e:
            raise RelayError(f"the relay desk on port {self.desk.port} did not answer: {e}") from None
        finally:
            conn.close()
        answer = json.loads(raw) if raw else None
        if response.status >= 400:
            message = answer.get("error") if isinstance(answer, dict) else raw.decode(errors="replace")
            error = ToxicError if response.status == 400 else RelayError
            raise error(f"relay {self.instance_id!r}: {message}")
        return answer
