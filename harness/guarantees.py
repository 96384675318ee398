"""The catalogue of guarantees a proxied Aurora deployment is certified against.

A guarantee is one promise with a stable id, a sentence a reader can check by hand, a threshold
and its unit.  Checkers (``harness/checkers/``) measure a figure from a history and compare it
with the threshold of the guarantee they are named after; reports print the sentence.

Default thresholds follow the behaviour documented for Amazon RDS Proxy; each entry's ``basis``
names the section of our RDS Proxy behaviour notes the number comes from, and why.  A run can
override thresholds from a TOML or JSON file with :func:`load_thresholds` (for instance a slower CI
machine, or a real RDS Proxy whose ConnectionBorrowTimeout differs), which never changes the
catalogue itself: it returns a new mapping.

A guarantee applies to both engines unless its ``not_applicable`` gives, for an engine, the one
sentence saying why it cannot hold there; ``aurora-harness guarantees`` prints that reason in the
guarantee × engine table instead of a suite.

``demonstrated_by`` names the reference proxy's failpoints that make a guarantee false: a promise no
plausible proxy bug can break checks nothing, so each one names at least one misbehaviour that the
suites judging it must catch.  The names are the proxy's (``[testing] failpoint``); the harness never
imports the proxy, so only the failpoint matrix test, which sees both, checks that they exist.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import tomllib
import types
from collections.abc import Mapping
from typing import Any

from harness.errors import HarnessError


class GuaranteeError(HarnessError):
    """Root of errors about the catalogue: unknown ids, malformed threshold files."""


class UnknownGuarantee(GuaranteeError, KeyError):
    """An id that is not in the catalogue; the message lists the known ids."""

    def __str__(self) -> str:
        return str(self.args[0])


class Family(str, enum.Enum):
    """Which checker module judges a guarantee."""

    POOLING = "pooling"
    ROUTING = "routing"
    PINNING = "pinning"
    ISOLATION = "isolation"
    SESSION = "session"
    TRANSACTION = "transaction"
    BORROW = "borrow"
    AVAILABILITY = "availability"
    DURABILITY = "durability"
    STORM = "storm"
    LATENCY = "latency"
    NETFAULT = "netfault"
    ROTATION = "rotation"
    IAM = "iam"
    TLS = "tls"
    CANCEL = "cancel"


class Comparison(str, enum.Enum):
    """How a measured figure is held against the threshold."""

    AT_MOST = "at_most"      # figure <= threshold (counts, delays, excess)
    AT_LEAST = "at_least"    # figure >= threshold (fractions served, distinct backends)


ENGINE_ORDER = ("postgres", "mysql")
"""The engines, in the order tables print them."""
ENGINES = frozenset(ENGINE_ORDER)
TARGETS = frozenset({"reference", "rds", "external"})


@dataclasses.dataclass(frozen=True)
class Guarantee:
    """One promise: ``sentence`` states it with ``{threshold}`` and ``{unit}`` filled in on render.

    ``not_applicable`` maps an engine the promise cannot hold on to one sentence saying why; the
    guarantee's :attr:`engines` are the others, so an engine is never left out without a reason.
    ``demonstrated_by`` names the reference proxy's failpoints that make it false (see the module).
    """

    id: str
    sentence: str
    threshold: float
    unit: str
    family: Family
    comparison: Comparison
    basis: str
    not_applicable: Mapping[str, str] = dataclasses.field(default_factory=dict, hash=False)
    targets: frozenset[str] = TARGETS
    demonstrated_by: tuple[str, ...] = ()
    """Failpoints of the reference proxy (``reference_proxy.failpoints``) that make this guarantee false."""
    not_promised: Mapping[tuple[str, str], str] = dataclasses.field(default_factory=dict, hash=False)
    """(target kind, engine) pairs whose proxy documents that it does not keep this promise, each with
    the one sentence saying where.  The suites still measure it there, and a verdict that would be
    false is reported unknown with that sentence and the measurement: the report tells the truth, and
    a documented limitation does not fail every certification of that target
    (:func:`harness.checkers.base.check_safe`)."""

    def __post_init__(self) -> None:
        if isinstance(self.demonstrated_by, str) or not all(
                isinstance(name, str) and name.isidentifier() for name in self.demonstrated_by):
            raise GuaranteeError(f"{self.id}: demonstrated_by must list failpoint names, got {self.demonstrated_by!r}")
        object.__setattr__(self, "demonstrated_by", tuple(self.demonstrated_by))
        unknown = sorted(set(self.not_applicable) - ENGINES)
        if unknown:
            raise GuaranteeError(f"{self.id}: not_applicable names unknown engine(s) {', '.join(unknown)}; "
                                 f"engines are {', '.join(ENGINE_ORDER)}")
        for engine, reason in self.not_applicable.items():
            if not isinstance(reason, str) or not reason.strip().endswith("."):
                raise GuaranteeError(f"{self.id}: the reason it does not apply to {engine} must be a "
                                     f"sentence, got {reason!r}")
        object.__setattr__(self, "not_applicable", types.MappingProxyType(dict(self.not_applicable)))
        for pair, reason in self.not_promised.items():
            if (not isinstance(pair, tuple) or len(pair) != 2 or pair[0] not in TARGETS or pair[1] not in ENGINES
                    or not isinstance(reason, str) or not reason.strip().endswith(".")):
                raise GuaranteeError(f"{self.id}: not_promised maps (target, engine) to a sentence, got "
                                     f"{pair!r}: {reason!r}")
        object.__setattr__(self, "not_promised", types.MappingProxyType(dict(self.not_promised)))

    @property
    def engines(self) -> frozenset[str]:
        """The engines this guarantee applies to: all but those with a not-applicable reason."""
        return ENGINES - set(self.not_applicable)

    def render(self) -> str:
        """The sentence with this guarantee's threshold in it."""
        value = int(self.threshold) if float(self.threshold).is_integer() else self.threshold
        return self.sentence.format(threshold=value, unit=self.unit)

    def holds(self, figure: float) -> bool:
        """Whether a measured figure satisfies the threshold."""
        if self.comparison is Comparison.AT_MOST:
            return figure <= self.threshold
        return figure >= self.threshold

    def with_threshold(self, threshold: float) -> Guarantee:
        return dataclasses.replace(self, threshold=float(threshold))

    def applies_to(self, engine: str | None = None, target: str | None = None) -> bool:
        return (engine is None or engine in self.engines) and (target is None or target in self.targets)


def _g(id: str, sentence: str, threshold: float, unit: str, family: Family, comparison: Comparison,
       basis: str, **kw: Any) -> Guarantee:
    return Guarantee(id, sentence, float(threshold), unit, family, comparison, basis, **kw)


_AT_MOST, _AT_LEAST = Comparison.AT_MOST, Comparison.AT_LEAST

_ALL = [
    _g("POOL-BACKEND-CAP",
       "Backend connections to each instance never exceed {threshold} {unit} "
       "(max_connections x MaxConnectionsPercent / 100).", 100, "% of the pool cap",
       Family.POOLING, _AT_MOST,
       "§1.4: the cap is per target instance, max_connections x MaxConnectionsPercent / 100; "
       "§1.6: beyond it clients queue instead of opening more.",
       demonstrated_by=("backend_cap_off_by_one",)),
    _g("POOL-MULTIPLEXING",
       "An unpinned client's transactions are spread over backend connections: "
       "some client sees at least {threshold} {unit}.", 2, "distinct backend connections",
       Family.POOLING, _AT_LEAST,
       "§0 and §1.2: multiplexing is transaction-level reuse; the next transaction of a client may "
       "run on a different backend connection (check 1.9.1).",
       demonstrated_by=("hold_backend_per_session",)),
    _g("ROUTE-WRITER-ENDPOINT",
       "Every request through the writer endpoint is served by the instance that is writer at "
       "that time; violations allowed: {threshold} {unit}.", 0, "requests",
       Family.ROUTING, _AT_MOST,
       "§3.1: all default-endpoint connections go to the writer; §4.1: the proxy tracks the writer "
       "through failover.",
       demonstrated_by=("slow_topology_monitor", "writer_spills_to_readers")),
    _g("ROUTE-READER-ONLY",
       "Requests through the reader endpoint are served only by readers; requests served by the "
       "writer allowed: {threshold} {unit}.", 0, "requests",
       Family.ROUTING, _AT_MOST,
       "§3.2 and §3.4: a READ_ONLY endpoint goes to readers; reads are not redirected to the writer "
       "when readers fail.",
       demonstrated_by=("reader_falls_back_to_writer", "reader_stays_on_promoted", "refuse_reader_sessions",
                        "slow_topology_monitor")),
    _g("ROUTE-READER-BALANCE",
       "New reader-endpoint connections are spread over readers in proportion to their "
       "max_connections: each reader's share is off its expected share by at most {threshold} "
       "of that share.", 0.25,
       "relative deviation", Family.ROUTING, _AT_MOST,
       "§3.3: least outstanding connections weighted by each reader's max_connections "
       "(500/500/1000 gives about 1:1:2).",
       demonstrated_by=("readers_round_robin", "refuse_reader_sessions")),
    _g("PIN-TRIGGERS",
       "After a documented pinning statement a client keeps one backend connection until it "
       "disconnects; clients that moved allowed: {threshold} {unit}.", 0, "sessions",
       Family.PINNING, _AT_MOST,
       "§2.1, §2.3, §2.5: once pinned, every later transaction uses the same backend connection "
       "until the client connection closes; §2.3 and §2.6: so do protocol-level prepared statements "
       "that outlive their transaction (MySQL COM_STMT_PREPARE, PostgreSQL named statements).",
       demonstrated_by=("leak_session_state", "named_statements_unpinned", "settings_do_not_pin")),
    _g("PIN-NON-TRIGGERS",
       "Documented non-pinning statements leave a client multiplexed; clients stuck on one backend "
       "allowed: {threshold} {unit}.", 0, "sessions",
       Family.PINNING, _AT_MOST,
       "§2.3-§2.5: tracked MySQL variables, transaction-scoped advisory locks and routine calls do "
       "not pin (check 2.10).",
       demonstrated_by=("every_set_pins",)),
    _g("ISOLATION-NO-SESSION-LEAK",
       "No client observes session state (settings, temporary tables, prepared statements, "
       "advisory locks, LISTEN) created by another client; leaks allowed: {threshold} {unit}.", 0,
       "observations", Family.ISOLATION, _AT_MOST,
       "§1.3: untracked state pins, so a multiplexed backend connection carries no session state "
       "back to the pool.",
       demonstrated_by=("leak_session_state", "skip_reset_on_release")),
    _g("SESSION-OWN-STATE",
       "A client sees its own session state (its settings and user variables, temporary tables, SQL "
       "prepared statements) on every later request of the same session: each client's share of such "
       "reads that saw it is at least {threshold} {unit}.", 100, "%",
       Family.SESSION, _AT_LEAST,
       "§2.3-§2.5: a statement that changes untracked session state pins the session, so every later "
       "request runs where that state is; §1.3: a multiplexed session carries none to lose.",
       demonstrated_by=("leak_session_state", "reset_pinned_backends")),
    _g("TRANSACTION-ONE-BACKEND",
       "Every statement of a multi-statement transaction (BEGIN ... COMMIT or ROLLBACK) runs on one "
       "backend connection, sees the transaction's own uncommitted writes and ends as one; transactions "
       "refused, split or half-applied allowed: {threshold} {unit}.", 0, "transactions",
       Family.TRANSACTION, _AT_MOST,
       "§0 and §1.2: all statements of one transaction use the same backend connection, which goes back "
       "to the pool only when the transaction ends (detected from the wire protocol).",
       demonstrated_by=("split_transactions",)),
    _g("BORROW-TIMEOUT",
       "A client that cannot get a backend connection receives 'Timed-out waiting to acquire "
       "database connection' after ConnectionBorrowTimeout, within {threshold} {unit}.", 2.0,
       "s of the configured timeout", Family.BORROW, _AT_MOST,
       "§1.6: the borrow waits up to ConnectionBorrowTimeout (default 120 s) then fails with the "
       "documented text (MySQL ERROR 9501).",
       demonstrated_by=("borrow_timeout_as_too_many_connections",)),
    _g("AVAILABILITY-SERVED",
       "Outside fault windows every endpoint serves what its clients ask: of the connects and requests a "
       "healthy proxy must answer, the share served, overall and for each client, is at least {threshold} "
       "{unit}.", 99, "%", Family.AVAILABILITY, _AT_LEAST,
       "§1.6: with no fault active a client that cannot get a backend connection waits in line up to "
       "ConnectionBorrowTimeout, it is not refused; §3.2: a reader endpoint with readers available serves "
       "every session.",
       demonstrated_by=("refuse_reader_sessions", "hold_backend_per_session")),
    _g("FAILOVER-WRITE-GAP",
       "Writes through the writer endpoint succeed again within {threshold} {unit} of the new "
       "writer's promotion.", 3.0, "s", Family.AVAILABILITY, _AT_MOST,
       "§4.1: the proxy tracks topology itself rather than DNS and sends queued requests to the new "
       "primary; a role poll of about 1 s plus a retry bounds the gap at about 3 s.",
       demonstrated_by=("slow_topology_monitor",)),
    _g("FAILOVER-READ-ERRORS",
       "During a failover each reader-endpoint client sees at most {threshold} failed requests.", 1,
       "errors per client", Family.AVAILABILITY, _AT_MOST,
       "§3.4: a multiplexed reader session moves to another reader without error; §4.3: only a "
       "statement in flight may be cancelled.",
       demonstrated_by=("reads_fail_in_doubt",)),
    _g("FAILOVER-IDLE-SURVIVAL",
       "Idle client connections survive a failover: the fraction still working afterwards is at "
       "least {threshold}.", 1.0, "fraction", Family.AVAILABILITY, _AT_LEAST,
       "§4.1 and §4.3: idle client connections are not dropped; their next transaction runs on the "
       "new writer.",
       demonstrated_by=("drop_clients_on_failover",)),
    _g("DURABILITY-NO-LOST-ACK",
       "Every write acknowledged to a client is present in the final read; lost writes allowed: "
       "{threshold} {unit}.", 0, "writes", Family.DURABILITY, _AT_MOST,
       "§4.3: acknowledged work must not vanish across failover; only in-flight work may fail.",
       demonstrated_by=("lost_commit_acknowledged",)),
    _g("DURABILITY-NO-FAILED-VISIBLE",
       "No write that failed with a definite error is present in the final read; such writes "
       "allowed: {threshold} {unit}.", 0, "writes", Family.DURABILITY, _AT_MOST,
       "§1.2: a transaction ends on the wire protocol's signal, so a reported failure must mean no "
       "effect (a pooler leaking a failed write is an isolation bug).",
       demonstrated_by=("lost_write_reported_retryable",)),
    _g("DURABILITY-NO-DUPLICATE",
       "No write is applied more than once: each id written once appears at most once in the final "
       "read; writes applied twice allowed: {threshold} {unit}.", 0, "writes", Family.DURABILITY, _AT_MOST,
       "§4.3: a statement in flight when its backend connection is lost may fail or be cancelled, and "
       "the client decides whether to retry; a proxy that sends it again by itself may apply a write "
       "that had already committed a second time.",
       demonstrated_by=("resend_after_backend_loss",)),
    _g("STORM-SERVED",
       "In a connection storm the fraction of connection attempts served within "
       "ConnectionBorrowTimeout is at least {threshold}.", 0.99, "fraction", Family.STORM, _AT_LEAST,
       "§1.6 and §1.8: excess clients are queued, not refused (1,000 clients on a 45-connection "
       "instance all succeeded with short transactions).",
       demonstrated_by=("logins_capped",)),
    _g("LATENCY-ADDED-P50",
       "The proxy adds at most {threshold} {unit} to median request latency compared with the "
       "direct connection, beyond the baseline's own spread (interleaved samples, distribution-free "
       "95 % bands).", 5000, "µs", Family.LATENCY, _AT_MOST,
       "§1.8: added latency is 'low single-digit milliseconds' per round trip; 5 ms is its upper end.",
       demonstrated_by=("slow_borrow",)),
    _g("LATENCY-ADDED-P99",
       "The proxy adds at most {threshold} {unit} to 99th-percentile request latency compared with "
       "the direct connection, beyond the baseline's own spread (interleaved samples, distribution-free "
       "95 % bands).", 5000, "µs", Family.LATENCY, _AT_MOST,
       "§1.8: low single-digit milliseconds per round trip; a proxy's fixed cost shifts the tail as much "
       "as the median, and the noise of a shared machine is allowed for by the bands, not by a looser "
       "bound (which passed a proxy adding 10 ms to every request).",
       demonstrated_by=("slow_borrow",)),
    _g("NETFAULT-SILENT-DETECTED",
       "When an instance goes silent (no packets, no reset) clients get an error or are moved "
       "within {threshold} {unit}.", 10.0, "s", Family.NETFAULT, _AT_MOST,
       "§4.1: clients are not left waiting on a dead former writer; §4.2: failover itself takes "
       "typically under 35 s, so detection must come sooner.  A proxy that polls its instances about "
       "once a second with a poll timeout of a few seconds notices a silent instance within about 5 s; "
       "10 s leaves room for a loaded machine and still fails a proxy that polls every 10 s.",
       demonstrated_by=("slow_topology_monitor",)),
    _g("ROTATION-SESSIONS-KEPT",
       "Client sessions established before a single-user password rotation keep working through it; "
       "sessions dropped allowed: {threshold} {unit}.", 0, "sessions", Family.ROTATION, _AT_MOST,
       "§5.3: single-user rotation does not drop open connections, and the proxy never drops "
       "established client or backend connections when it reads a secret again.",
       demonstrated_by=("rotation_drops_sessions",)),
    _g("ROTATION-NEW-LOGINS",
       "New connections with the new password succeed within {threshold} {unit} of finishSecret (the "
       "moment the secret's AWSCURRENT moves); the figure is how long they kept failing.", 5.0, "s",
       Family.ROTATION, _AT_MOST,
       "§5.3: how fast RDS Proxy picks up a new secret version is not documented (managed rotation "
       "completes within a minute); the reference proxy reads a secret again after its cache TTL "
       "(2 s on the reference target) or after a refused login, so a few seconds bound it.",
       demonstrated_by=("secrets_read_once",)),
    _g("ROTATION-OLD-PASSWORD",
       "After finishSecret the old password is refused for new connections within {threshold} {unit} "
       "(the grace period); the figure is how long it was still accepted.", 5.0, "s",
       Family.ROTATION, _AT_MOST,
       "§5.3: the proxy reads only AWSCURRENT and checks client passwords against it, so the old "
       "password stops working once the proxy has read the new version.",
       demonstrated_by=("secrets_read_once",)),
    _g("ROTATION-BACKEND-AUTH",
       "Backend connection setups that fail during a rotation (from its start to the end of the "
       "test) stay bounded: at most {threshold} {unit}.", 20, "failed setups",
       Family.ROTATION, _AT_MOST,
       "§5.3: between setSecret and finishSecret new backend logins fail with the old password; a "
       "proxy that re-reads the secret on a refused login (at most once a second per secret) must "
       "not turn that window into a storm of failed logins against the database.",
       demonstrated_by=("backend_setup_retried_at_once",)),
    _g("ROTATION-ALTERNATING-SESSIONS",
       "Sessions established as the previous user keep working after an alternating-users rotation "
       "switches the secret to the other user; sessions dropped allowed: {threshold} {unit}.", 0,
       "sessions", Family.ROTATION, _AT_MOST,
       "§5.3 and §9.7: RDS Proxy reads only AWSCURRENT and is reported to terminate existing "
       "connections when a multi-user rotation changes the user name (expect this to be false on "
       "RDS Proxy); the reference proxy keeps them: an authenticated session is not tied to the "
       "secret it was checked against.",
       demonstrated_by=("rotation_drops_previous_user",)),
    _g("IAM-TOKEN-CHECKS",
       "A fresh IAM token from generate_db_auth_token logs in over TLS and its session works, while the same "
       "token without TLS, an expired token, a tampered signature, a token made for another user, host, port "
       "or region or signed with an unknown access key, and a plain password are all refused with RDS "
       "Proxy's text; attempts judged otherwise allowed: {threshold} {unit}.", 0, "attempts",
       Family.IAM, _AT_MOST,
       "§5.2 and §6: a token is a SigV4-presigned connect request for the proxy endpoint's host and port, "
       "the user and the region, valid 900 s, and is sent over TLS only; PostgreSQL clients are refused "
       "with 'IAM authentication is allowed only with SSL connections.' or 'IAM authentication failed "
       "for user ...', MySQL-family clients with ERROR 1045 'Access denied for user ...'.",
       demonstrated_by=("iam_expiry_unchecked",)),
    _g("TLS-REQUIRED",
       "With RequireTLS on, every endpoint refuses a plaintext client with 'This RDS Proxy requires TLS "
       "connections.' and lets a TLS client log in and work; attempts judged otherwise allowed: "
       "{threshold} {unit}.", 0, "attempts",
       Family.TLS, _AT_MOST,
       "§5.4 and §6: RequireTLS=true rejects plaintext clients (MySQL ERROR 3159, PostgreSQL the same "
       "text); the setting belongs to the proxy, so it holds on each of its endpoints.",
       demonstrated_by=("tls_unenforced_on_reader",)),
    _g("CANCEL-OWN-QUERY",
       "A client that cancels its own running statement (PostgreSQL CancelRequest, MySQL KILL QUERY with its "
       "connection id) sees it stopped with the engine's cancel error within {threshold} {unit} of the "
       "cancel.", 5.0, "s", Family.CANCEL, _AT_MOST,
       "A pooling proxy gives each client its own cancel key (PostgreSQL) or connection id (MySQL) and must "
       "find the backend connection the session holds when the cancel comes.  A correct proxy stops the "
       "statement in well under a second; 5 s leaves room for a loaded machine and is a quarter of the 20 s "
       "sleep cancelled, so an ignored cancel fails.  §6.4: RDS Proxy documents PostgreSQL CancelRequest as "
       "unsupported (Ctrl+C in psql does nothing), so on RDS PostgreSQL the guarantee is measured and "
       "reported, and a failure there is unknown, not false; RDS documents nothing about MySQL KILL, which "
       "is judged.",
       not_promised={("rds", "postgres"): "RDS Proxy documents PostgreSQL CancelRequest as unsupported "
                                          "(Ctrl+C in psql does nothing), §6.4."},
       demonstrated_by=("cancels_dropped",)),
    _g("CANCEL-NEVER-OTHERS",
       "A cancel never stops another client's statement: while clients cancel their own statements, "
       "including cancels that arrive after their statement ended, every other client's concurrent "
       "statement completes normally; statements of others stopped allowed: {threshold} {unit}.", 0,
       "statements", Family.CANCEL, _AT_MOST,
       "§1.2: backend connections are shared by many clients over time, so a cancel delivered by backend "
       "rather than by session (to the backend a session held last, or a MySQL KILL passed through with "
       "the proxy's connection id) stops a stranger's work; PostgreSQL ignores a cancel for a session "
       "running nothing, and so must a proxy.  §6.4: RDS Proxy does not forward PostgreSQL cancels at "
       "all, which keeps this promise trivially.",
       demonstrated_by=("cancel_to_last_backend",)),
]

CATALOGUE: Mapping[str, Guarantee] = types.MappingProxyType({g.id: g for g in _ALL})
"""Every guarantee with its default threshold, keyed by id (read-only)."""


def get(guarantee_id: str, catalogue: Mapping[str, Guarantee] = CATALOGUE) -> Guarantee:
    """Look up a guarantee, with an error naming the known ids for a typo."""
    try:
        return catalogue[guarantee_id]
    except KeyError:
        raise UnknownGuarantee(f"unknown guarantee {guarantee_id!r}; known: "
                               f"{', '.join(sorted(catalogue))}") from None


def with_thresholds(overrides: Mapping[str, Any],
                    catalogue: Mapping[str, Guarantee] = CATALOGUE) -> Mapping[str, Guarantee]:
    """A copy of ``catalogue`` with some thresholds replaced; unknown ids and non-numbers are rejected."""
    unknown = sorted(k for k in overrides if k not in catalogue)
    if unknown:
        raise UnknownGuarantee(f"unknown guarantee id(s) in thresholds: {', '.join(unknown)}; known: "
                               f"{', '.join(sorted(catalogue))}")
    result = dict(catalogue)
    for gid, value in overrides.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise GuaranteeError(f"threshold for {gid} must be a finite number, got {value!r}")
        result[gid] = catalogue[gid].with_threshold(value)
    return types.MappingProxyType(result)


def load_thresholds(path: str | os.PathLike[str],
                    catalogue: Mapping[str, Guarantee] = CATALOGUE) -> Mapping[str, Guarantee]:
    """Read threshold overrides from a ``.toml`` or ``.json`` file and apply them to ``catalogue``.

    The file maps guarantee ids to numbers, at top level or under a ``thresholds`` table::

        [thresholds]
        FAILOVER-WRITE-GAP = 5.0
    """
    p = os.fspath(path)
    try:
        with open(p, "rb") as fh:
            raw = fh.read()
    except OSError as e:
        raise GuaranteeError(f"cannot read thresholds file {p!r}: {e.strerror}") from e
    try:
        if p.endswith(".toml"):
            data = tomllib.loads(raw.decode("utf-8"))
        elif p.endswith(".json"):
            data = json.loads(raw)
        else:
            raise GuaranteeError(f"thresholds file {p!r} must end in .toml or .json")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GuaranteeError(f"thresholds file {p!r} is not valid: {e}") from None
    if not isinstance(data, dict):
        raise GuaranteeError(f"thresholds file {p!r} must hold a table of id = number")
    if set(data) == {"thresholds"} and isinstance(data["thresholds"], dict):
        data = data["thresholds"]
    return with_thresholds(data, catalogue)
