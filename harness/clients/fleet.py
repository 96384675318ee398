"""All the recording clients one test makes against one target, engine-neutral.

``clients("writer")`` / ``clients("reader")`` gives a connected :class:`~harness.clients.client.Client`
whose ``connect`` is recorded with who served it; every client made is closed by :meth:`close_all`.
``clients.direct(instance_id)`` bypasses the proxy (baselines, samplers).  Process ids are strings
(``c1``, ``c2``...) unique in the whole run, so histories never mix two connections under one id.
"""

from __future__ import annotations

import threading
from typing import Any

from harness.clients.address import Address, ProcessIds
from harness.clients.cancel import Canceller
from harness.clients.client import Client
from harness.clients.dialects import dialect_for
from harness.clients.dialects.base import Dialect
from harness.clients.plans import ClientError
from harness.history import Recorder
from harness.targets.base import Capability, Target

RUN_PROCESS_IDS = ProcessIds(prefix="c")
"""Shared by every fleet of a run: a process id names one connection in the whole run."""

CONNECT_TIMEOUT_S = 15.0


class Clients:
    """Makes, and at the end closes, the clients of one test against ``target``."""

    def __init__(self, target: Target, recorder: Recorder, *, process_ids: ProcessIds = RUN_PROCESS_IDS) -> None:
        self.target = target
        self.recorder = recorder
        self.process_ids = process_ids
        self.dialect: Dialect = dialect_for(target.engine)
        self._made: list[Client | Canceller] = []
        self._lock = threading.Lock()

    @property
    def who(self) -> str:
        """Select-list columns naming the serving instance and backend connection (for ``request``)."""
        return self.dialect.who(self.target.identity_query)

    def __call__(self, endpoint: str = "writer", *, connect: bool = True, target: Target | None = None,
                 request_timeout: float | None = None, connect_timeout: float = CONNECT_TIMEOUT_S,
                 worker: str | None = None, login: tuple[str, str] | None = None,
                 **driver_options: Any) -> Client:
        """A client of ``endpoint`` (``writer`` or ``reader``) of ``target`` (default: the test's), as
        the target's user, or as ``login`` (user, password) when given."""
        if endpoint not in ("writer", "reader"):
            raise ClientError(f"unknown endpoint {endpoint!r}: expected writer or reader")
        address = Address.of(target or self.target, endpoint)
        if login is not None:
            address = address.with_login(*login)
        return self._make(address, connect=connect,
                          request_timeout=request_timeout, connect_timeout=connect_timeout, worker=worker,
                          **driver_options)

    def direct(self, instance_id: str, *, connect: bool = True, request_timeout: float | None = None,
               **driver_options: Any) -> Client:
        """A client straight at one instance of the target (needs the ``direct`` capability)."""
        self.target.require(Capability.DIRECT)
        inst = next((i for i in self.target.direct_instances() if i["id"] == instance_id), None)
        if inst is None:
            raise ClientError(f"no instance {instance_id!r} in the target")
        return self._make(Address.of_instance(self.target.engine, inst), connect=connect,
                          request_timeout=request_timeout, **driver_options)

    def _make(self, address: Address, *, connect: bool, request_timeout: float | None,
              connect_timeout: float = CONNECT_TIMEOUT_S, worker: str | None = None, **driver_options: Any) -> Client:
        client = Client(self.recorder, self.process_ids.next(), address, op_timeout=request_timeout,
                        worker=worker, identify_connect=True, connect_timeout=connect_timeout, **driver_options)
        with self._lock:
            self._made.append(client)
        if connect:
            client.connect()
        return client

    def canceller(self, client: Client) -> Canceller:
        """Something that cancels ``client``'s running statement the engine's way, recorded as its
        own process (:mod:`harness.clients.cancel`); closed with the clients."""
        canceller = Canceller(client, self.recorder, self.process_ids.next())
        with self._lock:
            self._made.append(canceller)
        return canceller

    def close_all(self) -> None:
        with self._lock:
            made, self._made = self._made, []
        for c in made:
            c.close()
