"""Session isolation: state one client creates is never visible to another.

Many short-lived clients share few backend connections.  Each client first looks for state left
behind by others (a custom setting, a temporary table, a prepared statement, an advisory lock held
by its backend), then creates all of them with values unique to itself, looks again, and
disconnects *without* cleaning up.  A pooler that hands the backend to the next client without
resetting it (PgBouncer in transaction mode) shows that client the previous one's state: a leak.
RDS Proxy avoids it by pinning such sessions and never returning their backends unreset.

Looking means listing the session's objects by name prefix where the engine can
(``Dialect.listable_kinds``).  Where it cannot (MySQL lists no temporary tables or SQL prepared
statements), each client asks instead for the objects the last few *other* clients created, by
name: the backends they left are the ones most likely to be lent next.  The history says which
kinds were judged that way (an ``event`` the checker reports), so a narrower look is never silent.
A kind whose read pins the session itself (MySQL's ``EXECUTE``, ``Dialect.pinning_reads``) is only
read after the client made its own state: read first, it would pin every session before the
client sets anything, and a proxy that fails to pin on a setting would go unnoticed.
"""

from __future__ import annotations

import collections
import threading

import pytest

from suites.session_state import PREFIXES, TAG, client_names, made_kinds, make_state
from suites.workloads import CLIENT_REQUEST_TIMEOUT_S, run_clients

RECENT_BY_NAME = 4
"""How many of other clients' latest objects a client asks for by name, per kind it cannot list."""


class Looks:
    """What a client looks for, on this engine: kinds it lists by prefix, and kinds it asks by name."""

    def __init__(self, dialect, recorder) -> None:
        kinds = made_kinds(dialect)
        self.listed = [k for k in kinds if k in dialect.listable_kinds]
        self.by_name = [k for k in kinds if k not in dialect.listable_kinds]
        self.pinning_reads = set(dialect.pinning_reads)
        self.recent: dict[str, collections.deque[tuple[str, str]]] = {
            k: collections.deque(maxlen=RECENT_BY_NAME) for k in self.by_name}
        self.lock = threading.Lock()
        not_here = {k: "no such state on this engine" for k in PREFIXES if k not in kinds}
        if self.by_name or not_here:
            recorder.event("state_kinds_unlisted", {
                **{k: f"asked by name for other clients' last {RECENT_BY_NAME} only: "
                      f"{dialect.not_listable_reason(k)}" for k in self.by_name},
                **{k: f"not judged: {why}" for k, why in not_here.items()}})

    def observe(self, session, *, created: bool) -> None:
        names = client_names(session.process)
        session.read_state("setting", TAG)
        for kind in self.listed:
            session.find_state(kind, PREFIXES[kind], names[kind])
        for kind in self.by_name:
            if kind in self.pinning_reads and not created:
                continue
            with self.lock:
                others = [name for owner, name in self.recent[kind] if owner != session.process]
            for name in others or [names[kind]]:
                session.read_state(kind, name)

    def create_state(self, session) -> None:
        names = client_names(session.process)
        for kind in make_state(session):
            if kind in self.recent:
                with self.lock:
                    self.recent[kind].append((session.process, names[kind]))


@pytest.mark.guarantee("ISOLATION-NO-SESSION-LEAK")
def test_session_state_never_leaks(clients, profile):
    workers, rounds = (8, 6) if profile == "quick" else (16, 12)
    looks = Looks(clients.dialect, clients.recorder)

    def client(worker: int) -> int:
        seen = 0
        for _ in range(rounds):
            session = clients("writer", request_timeout=CLIENT_REQUEST_TIMEOUT_S)
            if not session.connected:
                continue
            looks.observe(session, created=False)
            looks.create_state(session)
            looks.observe(session, created=True)
            session.close()  # leave the state behind on purpose
            seen += 1
        return seen

    served = run_clients(workers, client)
    assert sum(served) >= workers * rounds // 2, f"too few clients could connect: {served}"
