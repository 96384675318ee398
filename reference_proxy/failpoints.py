"""Failpoints: named misbehaviours the reference proxy can be told to ship, one at a time.

A certification is worth the defects it catches, and a correct proxy cannot show that a checker
would fail a broken one.  So the reference proxy carries, behind one test-only setting, the bugs a
real proxy author could plausibly ship: each is a small deviation at the one place in the code where
such a bug would live (a pool that lends a dirty backend, a router that forgets a role), named here
with the sentence that says what it does.  ``[testing] failpoint = "NAME"`` turns one on; the
harness certifies the proxy with each in turn and expects exactly the guarantees the catalogue
lists for it to go false (``harness.guarantees``: ``demonstrated_by``).  This is the idea of etcd's
gofail and FreeBSD's fail(9), reduced to what a proxy under certification needs: one switch, read
at start, no probabilities.

Because a failpoint makes the proxy unsafe, the proxy program refuses a configuration that names
one unless its environment sets :data:`ALLOW_ENV` to ``1`` (the harness does so only for the proxy
it starts with a failpoint), and it logs :func:`warning` at start.  Code at a failpoint's site asks
``services.failpoint == NAME`` (or the server's config); nothing else reads this module.

Each entry's sentence ends by naming the place in the proxy where its misbehaviour lives.
``leak_session_state`` lives in :mod:`reference_proxy.leaking`.  ``split_transactions``:
RDS Proxy hands a backend connection back only when a transaction has ended, detected from the wire
protocol (PostgreSQL's ReadyForQuery status, MySQL's SERVER_STATUS_IN_TRANS flag).  In this mode an
unpinned session gives its backend up after every complete statement reply *inside* a transaction
too: the backend is closed (released as broken, so the server rolls back what it held and nobody
else inherits an open transaction) and the next statement borrows another one, where it runs in
autocommit.  The transaction's write is then rolled back with the closed connection, its read of
that write runs elsewhere and sees nothing, and its ROLLBACK has nothing to undo: what
TRANSACTION-ONE-BACKEND exists to catch.  Pinned sessions are left alone, so the mode breaks that
one promise and not the pinning or isolation ones.

The routing, availability and latency failpoints (``writer_spills_to_readers``,
``reader_falls_back_to_writer``, ``reader_stays_on_promoted``, ``refuse_reader_sessions``,
``slow_borrow``) live where every
borrow and every new session is routed, :class:`reference_proxy.failover.FailoverRouting`; with one
of the borrow ones on, the synchronous fast path is off so that every borrow is routed.
``backend_cap_off_by_one`` lives in the pool's one comparison of open connections with the cap.

The decision is engine-neutral (:attr:`SessionServices.failpoint
<reference_proxy.session_services.SessionServices.failpoint>`); each engine's tracker says
only whether its session is between two statements of an open transaction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from reference_proxy.contracts import ConfigError

__all__ = ["ALLOW_ENV", "FAILPOINTS", "Failpoint", "check_allowed", "warning"]

ALLOW_ENV = "AURORA_PROXY_ALLOW_FAILPOINTS"
"""Set to ``1`` in the proxy's environment to let ``[testing] failpoint`` be anything but empty."""


@dataclasses.dataclass(frozen=True)
class Failpoint:
    """One misbehaviour: its name (the setting's value) and what the proxy then does wrong.

    ``may_also_break`` names guarantees the misbehaviour can take down as a consequence, depending on
    timing the harness does not control, each with the reason; the catalogue's ``demonstrated_by``
    lists what it must break every time."""

    name: str
    misbehaviour: str
    may_also_break: Mapping[str, str] = dataclasses.field(default_factory=dict)


FAILPOINTS: dict[str, Failpoint] = {f.name: f for f in (
    Failpoint("borrow_timeout_as_too_many_connections",
              "a client whose borrow times out gets the engine's own 'too many connections' error "
              "(PostgreSQL 53300, MySQL 1040) instead of RDS Proxy's 'Timed-out waiting to acquire "
              "database connection' (the engines' sessions, where a borrow fails)"),
    Failpoint("every_set_pins",
              "every SET statement pins its session, also the ones whose state ends with the transaction "
              "(PostgreSQL's SET LOCAL) or that the proxy tracks (MySQL's SET NAMES, time_zone), so "
              "sessions documented to stay multiplexed are stuck on one backend (the engines' pinning "
              "classifiers)"),
    Failpoint("hold_backend_per_session",
              "a session keeps the backend connection it first borrowed until the client disconnects, "
              "as if every session were pinned, so nothing is multiplexed (the engines' sessions, at a "
              "transaction's end)"),
    Failpoint("iam_expiry_unchecked",
              "an IAM token's signature, user, endpoint and region are checked but not its expiry, so a "
              "token signed hours ago still logs in (the IAM token verifier)"),
    Failpoint("leak_session_state",
              "no SQL statement pins a session and no backend connection is reset before it is lent to "
              "another client, so session state one client leaves on a backend (user variables, SET, "
              "temporary tables, PREPARE, session locks) is visible to the next (reference_proxy.leaking)"),
    # Routing, availability, the backend cap and added latency.
    Failpoint("backend_cap_off_by_one",
              "the pool opens one backend connection beyond each instance's cap (max_connections x "
              "MaxConnectionsPercent / 100) before it makes clients wait, a < written as <= "
              "(reference_proxy.pool.pool, Pool._open_limit)"),
    Failpoint("reader_falls_back_to_writer",
              "a reader-endpoint transaction whose reader has no idle backend connection borrows one on the "
              "writer instead of opening one or waiting, a shortcut to spare clients the queue that forgets an "
              "empty pool has no idle connection either, so reads go to the writer (reference_proxy.failover)"),
    Failpoint("reader_stays_on_promoted",
              "a reader-endpoint session stays on its instance when a failover promotes that instance to "
              "writer, since only a lost reader was thought to need a move (reference_proxy.failover)"),
    Failpoint("refuse_reader_sessions",
              "one new reader-endpoint session in ten is refused as if the endpoint had no reader, an "
              "off-by-one in picking a reader (reference_proxy.failover, wait_for_instance)"),
    Failpoint("slow_borrow",
              "every borrow of a backend connection waits 10 ms before it looks at the pool, a throttle "
              "meant for connection storms left on (reference_proxy.failover, acquire)"),
    Failpoint("writer_spills_to_readers",
              "one writer-endpoint transaction in three runs on a reader, a load spreader that counts "
              "readers as spare capacity for the writer endpoint (reference_proxy.failover, acquire)"),
    # Failover and durability: what a proxy does when an instance fails or a backend is lost mid-request.
    Failpoint("drop_clients_on_failover",
              "when the writer changes, every client connection of the writer endpoint is closed (idle ones at "
              "once, the others when their transaction ends) so that clients reconnect to the new writer"),
    Failpoint("lost_write_reported_retryable",
              "a request whose backend connection is lost before its reply is answered with a serialization "
              "failure (PostgreSQL 40001, MySQL 1213: 'retry the transaction') instead of a lost connection, "
              "though it may have committed, so a client told it definitely failed can find its write applied"),
    Failpoint("reads_fail_in_doubt",
              "while the topology monitor is in doubt (from a backend error or a role change until its rounds "
              "agree again) every read through a reader endpoint is refused, instead of staying on a reader "
              "that still answers, so reader clients see several errors in each failover"),
    Failpoint("resend_after_backend_loss",
              "a request whose backend connection is lost before its reply is sent again on another backend "
              "(the new writer after a failover) and its answer relayed, so a write that had committed before "
              "the loss is applied twice",
              may_also_break={"DURABILITY-NO-LOST-ACK": (
                  "a resend that reaches the old writer before the proxy has learnt of the promotion commits there "
                  "and is answered, then lost with the old writer's history when it rejoins as a reader"),
                  "DURABILITY-NO-FAILED-VISIBLE": (
                  "when the first copy of a write had committed, its resend fails on the unique id and that "
                  "definite error is what the client gets, while the first copy stays visible")}),
    Failpoint("slow_topology_monitor",
              "the topology monitor polls every 10 s, ignores backend errors as hints to look again, and acts "
              "on each round's answers one round late, so a new writer is taken 10 to 20 s after its promotion"),
    Failpoint("logins_capped",
              "at most 50 clients may be logging in at once and the next is refused with 'too many "
              "connections' instead of queued, so a connection storm is mostly turned away (the server's "
              "login gate)"),
    Failpoint("reset_pinned_backends",
              "a pinned session's backend connection is reset (DISCARD ALL, COM_RESET_CONNECTION) after "
              "every transaction, as if it were going back to the pool, though the session keeps it: the "
              "session stays on its backend and loses the state that pinned it (the engines' sessions)"),
    Failpoint("rotation_drops_sessions",
              "when a secret's version changes, the proxy closes every client connection (after its "
              "transaction) to start afresh with the new credentials (the server's secret refresher)"),
    Failpoint("secrets_read_once",
              "each secret is read once and never again, neither when its cache entry is due nor after "
              "a refused login, so a rotated password is never learnt (the Secrets Manager source)",
              may_also_break={"ROTATION-BACKEND-AUTH": (
                  "every backend the pool opens after the database's password changed is refused, so when the "
                  "rotation drill needs more backends than the pool holds idle the failed setups exceed the "
                  "bound; whether it does depends on what the pool holds at that instant"),
                  "ROTATION-SESSIONS-KEPT": (
                  "a session open from before the rotation is refused when its next statement needs a backend "
                  "the pool must open (those it has are busy with other sessions, e.g. a MySQL login's SET "
                  "autocommit), because the database no longer takes the password the proxy holds")}),
    Failpoint("settings_do_not_pin",
              "a session-level SET of a server setting (PostgreSQL's SET statement_timeout, MySQL's "
              "SET SESSION of a variable the proxy does not track) does not pin, as if the reset on "
              "release undid it, so the session moves to other backends after changing one (the "
              "engines' pinning classifiers)"),
    Failpoint("skip_reset_on_release",
              "a backend connection a pinned session leaves behind goes back to the pool without being "
              "reset (no DISCARD ALL, no COM_RESET_CONNECTION), so the next client to borrow it finds the "
              "first one's session state (reference_proxy.leaking's pool without its classifier)"),
    Failpoint("split_transactions",
              "an unpinned session's backend connection is given up after every statement of a "
              "transaction and the next statement runs on another one, so a transaction neither sees its "
              "own uncommitted writes nor ends as one (this module's docstring)"),
    # -- durability and rotation guarantees no other failpoint makes false --
    Failpoint("lost_commit_acknowledged",
              "a request that commits (its text has a COMMIT) whose backend connection is lost before the "
              "reply is answered as committed (PostgreSQL CommandComplete and ReadyForQuery, MySQL OK), on "
              "the theory that the server had most likely finished it, so a write rolled back with the lost "
              "connection is acknowledged (the engines' sessions, where a backend is lost)"),
    Failpoint("backend_setup_retried_at_once",
              "a backend connection setup that fails is tried again at once, again and again until the "
              "client's borrow timeout, as for a passing network error, so while the database refuses the "
              "held password (a rotation between setSecret and finishSecret) every waiting client hammers "
              "it with failed logins (reference_proxy.pool.pool, Pool._open)"),
    Failpoint("rotation_drops_previous_user",
              "when a secret changes to name another user (an alternating-users rotation), the client "
              "connections logged in as the user it no longer names are closed after their transaction, "
              "as RDS Proxy is reported to do (the server's secret refresher)"),
    # -- sessions: reader balance, protocol-prepared statements, cancel, TLS --
    Failpoint("named_statements_unpinned",
              "a protocol-level prepared statement that outlives its transaction (PostgreSQL: a named "
              "Parse, as psycopg sends after its prepare threshold or with prepare=True; MySQL: "
              "COM_STMT_PREPARE) does not pin the session, so the backend holding it is lent to others "
              "and the client's next use of it runs where it does not exist "
              "(reference_proxy.engines.postgres.tracking, reference_proxy.engines.mysql.tracking)"),
    Failpoint("cancel_to_last_backend",
              "a cancel (PostgreSQL CancelRequest, MySQL KILL QUERY) for a session that holds no backend "
              "connection goes to the one it held last, as if that were still its own, though it went back to "
              "the pool and may be running another client's statement, which is cancelled instead "
              "(the engines' sessions: cancel_current, stop_statement)"),
    Failpoint("cancels_dropped",
              "cancel requests are accepted and then dropped (PostgreSQL's CancelRequest quietly ignored, "
              "MySQL's KILL QUERY answered OK with nothing done), so a client's own long statement runs on "
              "to its end (the engines' sessions)"),
    Failpoint("readers_round_robin",
              "the reader endpoint hands new sessions to the readers in turn, ignoring their "
              "max_connections, so a reader twice the size of the others gets the same share "
              "(reference_proxy.routing)"),
    Failpoint("tls_unenforced_on_reader",
              "RequireTLS is enforced on the read/write endpoint only: the reader endpoint lets plaintext "
              "clients log in (reference_proxy.server)"),
)}
"""Every failpoint, by name."""


def check_allowed(name: str | None, environ: Mapping[str, str]) -> None:
    """Refuse (:class:`ConfigError`) a failpoint the environment does not allow, or one that does not exist."""
    if not name:
        return
    if name not in FAILPOINTS:
        raise ConfigError("testing.failpoint", f"{name!r} is not a failpoint; known: {', '.join(sorted(FAILPOINTS))}")
    if environ.get(ALLOW_ENV) != "1":
        raise ConfigError("testing.failpoint", f"{name!r} makes this proxy unsafe on purpose; it is refused unless "
                                               f"the environment sets {ALLOW_ENV}=1 (never in front of real clients)")


def warning(name: str) -> str:
    """The line the proxy logs at start when failpoint ``name`` is on."""
    return (f"UNSAFE TEST MODE: failpoint {name} is on: {FAILPOINTS[name].misbehaviour}. It exists to show that "
            f"the harness catches such a proxy; never put it in front of real clients.")
