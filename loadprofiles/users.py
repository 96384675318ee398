"""Locust users that talk to the target through the harness's recording clients.

Every user is engine-neutral: the recording :class:`~harness.clients.client.Client` picks psycopg 3
for PostgreSQL and PyMySQL for MySQL from the target's engine (both cooperate with gevent: psycopg
since 3.1.14 by itself, PyMySQL because it is pure Python over the patched socket), and each request
is both written into this process's history and reported to Locust
(:class:`~loadprofiles.bridge.RequestReporter`).  One user is one history process while its
connection lives; after the connection breaks it reconnects under a new process id, as the harness's
own request loop does.

The task sets, one user class each (a profile imports the ones it mixes; their ``weight`` sets the
mix):

* :class:`ReadWriteUser` - through the writer endpoint: a unique-id insert (a short transaction that
  reads who served it before COMMIT) or a point read by primary key (one autocommit statement whose
  row also names who served it: one round trip, as a read-heavy application sends);
* :class:`ReaderUser` - the same one-statement point reads through the reader endpoint;
* :class:`UniqueWriteUser` - nothing but unique-id writes (durability: every acknowledged id must be
  in the final read);
* :class:`SessionStateUser` - on a fresh connection, look for the probe setting (another client's
  value there is a leak), set its own value and read it back, then disconnect;
* :class:`ChurnUser` - connect, one query, disconnect (Lambda-style);
* :class:`LongTransactionUser` - a transaction that keeps its backend busy in SQL for half a second;
* :class:`HeldSessionUser` and :class:`SecretLoginUser` - for a rotation: sessions opened with the
  secret's login that stay open, and logins that read the secret each time
  (:mod:`loadprofiles.secret_logins`).
"""

from __future__ import annotations

import random
from typing import Any

from locust import User, between, constant, task

from harness.checkers.rotation import LOGIN_KEY, NEW_LOGIN, OLD_LOGIN
from harness.clients.address import Address
from harness.clients.client import Client
from harness.clients.outcomes import Result
from harness.faults.rotation import Login
from loadprofiles import requests
from loadprofiles import runtime as _runtime  # registers the harness's listeners
from loadprofiles.runtime import LoadProcess, load_process

PROBE_SETTING = "harness.load_tag"
"""The setting the session-state probes give their own value (a MySQL user variable)."""
CONNECT_TIMEOUT_S = 10.0
LOGIN_TIMEOUT_S = 5.0
"""A secret-following login gives up sooner: the rotation checkers count failed logins, not slow ones."""
REQUEST_TIMEOUT_S = 30.0
RECENT_IDS = 64
"""How many of its own recent write ids a user draws its point reads from."""


class DatabaseUser(User):
    """Base of the harness's users: one recording client of ``endpoint``, reconnected when it breaks."""

    abstract = True
    endpoint = "writer"
    wait_time = between(0.005, 0.02)

    def on_start(self) -> None:
        self.load: LoadProcess = load_process(self.environment)
        self.db: Client | None = None
        self.recent: list[int] = []

    def on_stop(self) -> None:
        self.disconnect()

    # -- connection ---------------------------------------------------------------------------------
    def session(self) -> Client | None:
        """The connected client, connecting a new one (a new history process) when needed."""
        if self.db is not None and self.db.connected:
            return self.db
        self.disconnect()
        client = Client(self.load.recorder, self.load.process_ids.next(), self.address(),
                        op_timeout=REQUEST_TIMEOUT_S, identify_connect=True, connect_timeout=CONNECT_TIMEOUT_S,
                        worker=f"{self.load.tag}-u{id(self):x}")
        self.load.reporter.measure(self.endpoint, "connect", client.connect)
        if not client.connected:
            client.close()
            return None
        self.db = client
        return client

    def address(self) -> Address:
        """Where, and as whom, the next connection logs in (the target's own login by default)."""
        return self.load.address(self.endpoint)

    def disconnect(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    def request(self, operation: str, run: Any) -> Result | None:
        """Run ``run(client)`` as one reported request; None when no connection could be made."""
        client = self.session()
        if client is None:
            return None
        return self.load.reporter.measure(self.endpoint, operation, lambda: run(client))

    # -- requests the task sets share -----------------------------------------------------------------
    def write(self) -> None:
        write_id = self.load.next_write_id()
        result = self.request("write", lambda c: c.write(write_id))
        if result is not None and result.ok:
            self.recent = (self.recent + [write_id])[-RECENT_IDS:]

    def point_read(self) -> None:
        write_id = random.choice(self.recent) if self.recent else 0
        self.request("point_read", lambda c: requests.point_read(c, write_id))


class ReadWriteUser(DatabaseUser):
    """Short read/write transactions through the writer endpoint."""

    weight = 3

    @task(1)
    def insert(self) -> None:
        self.write()

    @task(3)
    def read_by_key(self) -> None:
        self.point_read()


class ReaderUser(DatabaseUser):
    """Read-only point reads through the reader endpoint (served by readers only)."""

    weight = 2
    endpoint = "reader"

    @task
    def read_by_key(self) -> None:
        self.point_read()


class UniqueWriteUser(DatabaseUser):
    """Unique-id writes only: the durability workload."""

    weight = 2

    @task
    def insert(self) -> None:
        self.write()


class SessionStateUser(DatabaseUser):
    """Session-state probes: a fresh connection must not see the probe setting another client set."""

    weight = 1
    wait_time = between(0.02, 0.05)

    @task
    def probe(self) -> None:
        client = self.session()
        if client is None:
            return
        own = f"client-{client.process}"
        try:
            self.load.reporter.measure(self.endpoint, "read_state",
                                       lambda: client.read_state("setting", PROBE_SETTING))
            if self.load.reporter.measure(self.endpoint, "set_state",
                                          lambda: client.set_state("setting", PROBE_SETTING, own)).ok:
                self.load.reporter.measure(self.endpoint, "read_state",
                                           lambda: client.read_state("setting", PROBE_SETTING))
        finally:
            self.disconnect()  # the next probe starts from a new session


class ChurnUser(DatabaseUser):
    """Connect, one query, disconnect."""

    weight = 1
    wait_time = constant(0.05)

    @task
    def connect_query_disconnect(self) -> None:
        try:
            self.request("churn_query", requests.churn_query)
        finally:
            self.disconnect()


class LongTransactionUser(DatabaseUser):
    """Transactions that hold a backend for :data:`loadprofiles.requests.LONG_TRANSACTION_S` seconds."""

    weight = 1
    wait_time = constant(0.5)

    @task
    def hold(self) -> None:
        self.request("long_transaction", requests.long_transaction)


class HeldSessionUser(DatabaseUser):
    """A session opened with the secret's login from before the rotation, sending a trivial request
    every 0.1 s for the whole run: what a rotation must not drop (ROTATION-SESSIONS-KEPT).  Should
    the session break anyway, the next one logs in with what the secret holds by then, as an
    application would."""

    fixed_count = 2
    wait_time = constant(0.1)

    def on_start(self) -> None:
        super().on_start()
        self.login = self.load.secret_logins.first

    def address(self) -> Address:
        return self.load.address(self.endpoint).with_login(*self.login.pair)

    def disconnect(self) -> None:
        if self.db is not None:
            self.login = self.load.secret_logins.current()
        super().disconnect()

    @task
    def ping(self) -> None:
        self.request("ping", lambda c: c.execute("ping", "SELECT 1"))


class SecretLoginUser(DatabaseUser):
    """New logins that follow the secret: read ``AWSCURRENT``, log in with it, disconnect (recorded as
    ``login: new``); one login in four uses the login from before the rotation (``login: old``), which
    the proxy must stop accepting soon after the rotation (ROTATION-NEW-LOGINS, -OLD-PASSWORD)."""

    weight = 2
    wait_time = constant(0.1)

    @task(3)
    def new_login(self) -> None:
        self.log_in(self.load.secret_logins.current(), NEW_LOGIN)

    @task(1)
    def old_login(self) -> None:
        self.log_in(self.load.secret_logins.first, OLD_LOGIN)

    def log_in(self, login: Login, label: str) -> None:
        client = Client(self.load.recorder, self.load.process_ids.next(),
                        self.load.address(self.endpoint).with_login(*login.pair), connect_timeout=LOGIN_TIMEOUT_S,
                        op_timeout=REQUEST_TIMEOUT_S, connect_extra={LOGIN_KEY: label},
                        worker=f"{self.load.tag}-u{id(self):x}")
        try:
            self.load.reporter.measure(self.endpoint, f"login_{label}", client.connect)
        finally:
            client.close()


ALL_USERS = (ReadWriteUser, ReaderUser, UniqueWriteUser, SessionStateUser, ChurnUser, LongTransactionUser)
__all__ = ["ALL_USERS", "ChurnUser", "DatabaseUser", "HeldSessionUser", "LongTransactionUser", "ReadWriteUser",
           "ReaderUser", "SecretLoginUser", "SessionStateUser", "UniqueWriteUser", "_runtime"]
