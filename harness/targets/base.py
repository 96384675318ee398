"""The Target: the system under test, as the suites see it.

A target has a writer endpoint, reader endpoints, credentials, a query that names the instance
serving it, and control operations declared as capabilities.  The same suite code runs against the
reference target (stand-ins + reference proxy, every capability), an external proxy given by its
endpoints (no control), and a real RDS Proxy; anything target-specific lives in this package, and
the kinds are listed in :mod:`harness.targets.registry`.

Suites and faults ask what a target can do (:meth:`Target.supports`), never which kind it is.  A
suite that needs a capability the target lacks calls :meth:`Target.require`, which raises
:class:`Unsupported`; the harness records that guarantee as *unknown* with the reason, never as a
silent skip or a pass.

Metrics are read through the target as :class:`~harness.metrics.MetricSample` values, whatever the
proxy reports them to (Prometheus text for the reference proxy, CloudWatch for an RDS Proxy).
"""

from __future__ import annotations

import abc
import dataclasses
import enum
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, Self

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.metrics import MetricSample
    from harness.net.relay import RelayServer
    from harness.net.relay_desk import DeskAddress


class TargetError(HarnessError):
    """Root of the targets' errors."""


class Unsupported(TargetError):
    """The target cannot do what a test asked (e.g. fail over an external proxy)."""

    def __init__(self, target: str, capability: Capability, reason: str | None = None) -> None:
        super().__init__(f"target {target!r} does not support {capability.value}" + (f": {reason}" if reason else ""))
        self.capability = capability


class ControlFailed(TargetError):
    """A control operation the target offers did not do what was asked (a user's failover command
    exited 1, or no new writer appeared): the fault did not happen as intended, so the guarantees it
    was meant to exercise are unknown, with this reason - the proxy is not to blame for it.

    ``details`` (JSON-ready) say what happened, for the fault's end event."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = dict(details or {})


def control_failure(error: BaseException | None) -> ControlFailed | None:
    """The :class:`ControlFailed` behind ``error`` (itself, or a cause or context of it), if any.

    A fault wraps what its target raised (a rotation's thread hands its failure to ``stop``), so the
    chain is searched rather than the type of the outermost error."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, ControlFailed):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


class Capability(str, enum.Enum):
    """Control operations a target may offer."""

    FAILOVER = "failover"            # planned promotion of a reader
    CRASH = "crash"                  # kill an instance without promotion
    RESTART = "restart"              # start a killed instance again
    NETWORK_FAULTS = "network_faults"  # relays between proxy and instances
    METRICS = "metrics"              # proxy metrics as samples (CloudWatch names and dimensions)
    STATUS = "status"                # the proxy's JSON status (pools, pins)
    DIRECT = "direct"                # connect to instances without the proxy (baselines)
    ROTATE_SECRET = "rotate_secret"  # change the database password behind the proxy
    POOL_SETTINGS = "pool_settings"  # the proxy's pool settings are known without asking the proxy
    SIBLING_PROXY = "sibling_proxy"  # start another proxy on the same cluster with its own settings
    IAM_AUTH = "iam_auth"            # the harness can make IAM tokens for a user that must log in with one
    REQUIRES_TLS = "requires_tls"    # the proxy requires TLS on every endpoint (so refusing plaintext is judged)


IDENTITY_QUERIES = {
    "postgres": "SELECT aurora_db_instance_identifier()",
    "mysql": "SELECT @@report_host",
}


DIRECT_PREFIX = "direct-"
"""The name prefix of an :class:`Endpoint` that is an instance itself, given by the user
(``direct-writer``, ``direct-reader``, ``direct-reader-2``...), not an endpoint of the proxy."""


@dataclasses.dataclass(frozen=True)
class Credentials:
    user: str
    password: str = dataclasses.field(repr=False)  # never in a log line, a traceback or a test report
    database: str


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A proxy endpoint clients connect to; ``role`` is 'writer' (read/write) or 'reader' (read-only).

    ``credentials`` are the endpoint's own when it has some (each DSN of an external target names
    its user, password and database); None means the target's :attr:`Target.credentials`."""

    name: str
    role: str
    host: str
    port: int
    credentials: Credentials | None = None


@dataclasses.dataclass(frozen=True)
class SecretsAccess:
    """How to reach the Secrets Manager that holds a target's logins, and which secrets may be rotated.

    ``endpoint_url`` and the access keys are set for a local stand-in (the client then reads no AWS
    configuration of the machine) and left ``None`` for a real account (boto3's usual chain).
    ``single_user`` names a secret whose one login a single-user rotation may change;
    ``alternating`` is ``(secret id, user a, user b)``: a secret that holds one of two database users,
    for a rotation that switches it to the other.
    """

    region: str
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = dataclasses.field(default=None, repr=False)
    single_user: str | None = None
    alternating: tuple[str, str, str] | None = None


@dataclasses.dataclass(frozen=True)
class IamAccess:
    """What a client needs to make IAM authentication tokens for a target, as an application would.

    ``user`` must log in with a token (RDS ``IAMAuth = REQUIRED``); ``host`` and ``port`` are the
    writer endpoint as tokens must name it (its DNS name, which may differ from the address the
    harness connects to); ``region`` and the access key sign the token.  Without an access key,
    boto3's usual chain supplies one.  ``user_password`` is the user's database password when the
    harness knows it: sent instead of a token it must be refused, which shows the proxy does not fall
    back to password checks for an IAM user.
    """

    user: str
    host: str
    port: int
    region: str
    access_key_id: str | None = None
    secret_access_key: str | None = dataclasses.field(default=None, repr=False)
    user_password: str | None = dataclasses.field(default=None, repr=False)


def _option(flag: str, help: str, *, default: Any = None, env: str | None = None, type: type = str) -> Any:
    """A :class:`TargetOptions` field offered as ``flag`` by ``certify`` and by the pytest plugin.

    ``type`` converts the text given (``float`` for seconds, ``int`` for a count; ``bool`` makes the
    option a flag that takes no value); a tuple default makes the option repeatable.  ``env`` names the environment variable that carries
    it to the child pytest run instead of its command line: DSNs hold passwords, and ``ps`` shows
    command lines.  The pytest plugin also reads it from there, one value per line."""
    return dataclasses.field(default=default, metadata={"flag": flag, "help": help, "env": env, "type": type})


@dataclasses.dataclass(frozen=True)
class TargetOptions:
    """What the command line (``--target`` and friends) says about the target.

    Every kind reads the ones it needs and refuses the ones it cannot use, so that an option given
    to the wrong kind is an error rather than silently ignored.  Each field is offered once, by
    ``certify`` and by the pytest plugin alike (:func:`option_fields`): a new option is a new field.
    """

    engine: str
    writer_dsn: str | None = _option("--writer-dsn", "External target: DSN of the writer (read/write) endpoint.",
                                     env="AURORA_HARNESS_WRITER_DSN")
    reader_dsns: tuple[str, ...] = _option("--reader-dsn", "External target: DSN of a reader endpoint (repeatable).",
                                           default=(), env="AURORA_HARNESS_READER_DSNS")
    metrics_url: str | None = _option("--metrics-url", "External target: the proxy's Prometheus metrics URL.")
    failover_command: str | None = _option(
        "--failover-command",
        "External target: a shell command that fails the cluster over (the harness runs it at the failover "
        "fault's time; $AURORA_HARNESS_FAILOVER_TO names the reader to promote when one was chosen).",
        env="AURORA_HARNESS_FAILOVER_COMMAND")
    rotate_command: str | None = _option(
        "--rotate-command",
        "External target: a shell command that rotates a login's password - the secret the proxy reads and "
        "the database's - to $AURORA_HARNESS_NEW_PASSWORD for user $AURORA_HARNESS_ROTATE_USER.",
        env="AURORA_HARNESS_ROTATE_COMMAND")
    rotate_dsn: str | None = _option(
        "--rotate-dsn",
        "External target: a DSN whose user and password are the login --rotate-command rotates, logging in "
        "through the writer endpoint (default: the writer DSN's).",
        env="AURORA_HARNESS_ROTATE_DSN")
    hook_timeout: float | None = _option(
        "--hook-timeout", "External target: seconds a failover or rotate command may run (default 300).",
        type=float)
    iam_user: str | None = _option(
        "--iam-user",
        "External target: a database user that must log in through the writer endpoint with IAM tokens "
        "(signed with boto3's usual credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY...).")
    iam_region: str | None = _option("--iam-region", "External target: the region IAM tokens are signed for "
                                                     "(default $AWS_REGION or $AWS_DEFAULT_REGION).")
    iam_host: str | None = _option("--iam-host", "External target: the host name IAM tokens must name "
                                                 "(default the writer DSN's host).")
    requires_tls: bool = _option(
        "--requires-tls",
        "External target: the proxy requires TLS (RDS Proxy's RequireTLS); TLS-REQUIRED is then judged on its "
        "endpoints: plaintext must be refused, TLS served.", default=False, type=bool)
    direct_writer_dsn: str | None = _option(
        "--direct-writer-dsn",
        "External target: DSN of the writer instance itself, bypassing the proxy (Aurora: its instance "
        "endpoint); with it the harness asks the instances who is writer, takes latency baselines and "
        "counts backend connections.", env="AURORA_HARNESS_DIRECT_WRITER_DSN")
    direct_reader_dsns: tuple[str, ...] = _option(
        "--direct-reader-dsn", "External target: DSN of a reader instance itself, bypassing the proxy (repeatable).",
        default=(), env="AURORA_HARNESS_DIRECT_READER_DSNS")
    max_connections_percent: int | None = _option(
        "--max-connections-percent",
        "External target: the proxy's pool cap per instance in percent of its max_connections, as configured "
        "(RDS Proxy's MaxConnectionsPercent); with direct DSNs the pool cap is then judged.", type=int)
    borrow_timeout: float | None = _option(
        "--borrow-timeout",
        "External target: seconds a client waits for a backend connection before the proxy gives up, as "
        "configured (RDS Proxy's ConnectionBorrowTimeout); needs --max-connections-percent.", type=float)
    proxy_settings: tuple[str, ...] = _option(
        "--proxy-setting",
        "Reference target: a [pool], [testing], secrets_manager ([auth.secrets_manager]) or iam ([auth.iam]) "
        "setting of the proxy it starts, as SECTION.KEY=VALUE (repeatable). testing.failpoint=leak_session_state "
        "makes the proxy leak session state on purpose, to see the harness catch it.",
        default=())
    """``SECTION.KEY=VALUE`` texts (``--proxy-setting``), for a kind that runs the proxy itself."""
    standin: str | None = _option(
        "--standin",
        "Reference target: the state directory of a stand-in cluster already running ('aurora-harness "
        "--state-dir DIR standin up'); the proxy is put in front of it, with the roles its servers have now, "
        "instead of in front of a new cluster, and the cluster is left running. Certifying many times (one "
        "proxy setting after another) then starts the cluster once.")

    def child_arguments(self) -> tuple[list[str], dict[str, str]]:
        """How a child pytest run receives these options: (command-line arguments, environment).

        ``engine`` is left out (the child gets ``--engine`` on its own)."""
        argv: list[str] = []
        env: dict[str, str] = {}
        for f in option_fields():
            value = getattr(self, f.name)
            if f.metadata["type"] is bool:
                argv += [f.metadata["flag"]] if value else []
                continue
            values = list(value) if isinstance(value, tuple) else ([] if value is None else [value])
            if not values:
                continue
            if f.metadata["env"]:
                env[f.metadata["env"]] = "\n".join(str(v) for v in values)
            else:
                for v in values:
                    argv += [f.metadata["flag"], str(v)]
        return argv, env


def option_fields() -> list[dataclasses.Field]:
    """The :class:`TargetOptions` fields a command line offers (every one but ``engine``)."""
    return [f for f in dataclasses.fields(TargetOptions) if "flag" in f.metadata]


def option_environment_names() -> list[str]:
    """The environment variables that may carry options (a parent's must not leak into a child run)."""
    return [f.metadata["env"] for f in option_fields() if f.metadata["env"]]


class Target(abc.ABC):
    """Something with endpoints to test; a context manager that brings it up and down."""

    kind: str = ""
    capabilities: frozenset[Capability] = frozenset()
    pool_settings: dict[str, Any] | None = None
    """The pool settings the proxy runs with (RDS Proxy's names), when known (``POOL_SETTINGS``)."""

    def __init__(self, engine: str) -> None:
        if engine not in IDENTITY_QUERIES:
            raise TargetError(f"unknown engine {engine!r}: expected one of {', '.join(IDENTITY_QUERIES)}")
        self.engine = engine

    @classmethod
    def from_options(cls, options: TargetOptions) -> Self:
        """Build this kind from the command line's target options (not up yet); refuse what does not apply.

        Building starts nothing (that is :meth:`up`'s job), so it is also how options are checked.
        """
        raise TargetError(f"{cls.kind or cls.__name__} targets cannot be built from command-line options")

    # -- lifecycle ---------------------------------------------------------------------------
    def up(self) -> None:
        """Bring the target up (or check it is reachable). Default: nothing to start."""

    def down(self) -> None:
        """Stop what up() started. Default: nothing to stop."""

    def __enter__(self) -> Self:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # -- what clients need ------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def writer_endpoint(self) -> Endpoint: ...

    @property
    @abc.abstractmethod
    def reader_endpoints(self) -> list[Endpoint]: ...

    @property
    @abc.abstractmethod
    def credentials(self) -> Credentials: ...

    def credentials_for(self, endpoint: Endpoint) -> Credentials:
        """The credentials to use at ``endpoint``: its own, or else the target's."""
        return endpoint.credentials or self.credentials

    def secret_texts(self) -> list[str]:
        """Every password this target uses (longest first), so that output can be scrubbed of them."""
        endpoints = [self.writer_endpoint, *self.reader_endpoints]
        found = {c.password for c in [self.credentials, *(e.credentials for e in endpoints)] if c and c.password}
        return sorted(found, key=len, reverse=True)

    reachable_before_up: bool = False
    """Whether the endpoints exist before :meth:`up` (a proxy the harness does not start), so that
    they can be checked before anything else runs."""

    @property
    def direct_endpoints(self) -> list[Endpoint]:
        """The instances' own addresses as the user gave them (``DIRECT`` through DSNs), to be checked
        before a run like the proxy's endpoints; empty when the target finds its instances itself.
        Their names start with :data:`DIRECT_PREFIX`; ``role`` is the role they were given as."""
        return []

    @property
    def identity_query(self) -> str:
        """SQL returning the id of the instance that serves the current transaction."""
        return IDENTITY_QUERIES[self.engine]

    def conninfo(self, endpoint: Endpoint) -> dict[str, Any]:
        """Keyword arguments for the engine's driver to reach ``endpoint`` with its credentials."""
        c = self.credentials_for(endpoint)
        return {"host": endpoint.host, "port": endpoint.port, "user": c.user, "password": c.password,
                "dbname" if self.engine == "postgres" else "database": c.database}

    # -- control -----------------------------------------------------------------------------
    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def offer(self, capability: Capability) -> bool:
        """Ask a target that is not up yet to offer an optional capability (a reference target puts
        TCP relays in front of its instances for NETWORK_FAULTS); True if it will.  By default a
        target offers what it has and nothing more."""
        return self.supports(capability)

    def require(self, capability: Capability) -> None:
        if capability not in self.capabilities:
            raise Unsupported(self.kind, capability)

    last_control: dict[str, Any] | None = None
    """What the last control operation done by a user's command came to (exit status, duration,
    output tail: :meth:`harness.targets.hooks.HookOutcome.as_event`), for the fault's end event;
    None for a target that acts itself."""

    def failover(self, target_instance: str | None = None) -> str | None:
        """Promote ``target_instance`` (or the target's choice); returns the new writer's id, or None
        when the target cannot name it (no direct access): the caller then watches the writer
        endpoint.  Raises :class:`ControlFailed` when the failover was not done."""
        self.require(Capability.FAILOVER)
        raise NotImplementedError

    def crash(self, instance_id: str) -> None:
        self.require(Capability.CRASH)
        raise NotImplementedError

    def restart(self, instance_id: str) -> None:
        self.require(Capability.RESTART)
        raise NotImplementedError

    def roles(self) -> dict[str, Any]:
        """Who is writer now: ``{"writer": id, "readers": [ids]}`` (faults pick their instance by it)."""
        self.require(Capability.DIRECT)
        raise NotImplementedError

    def relay(self, instance_id: str) -> RelayServer:
        """The TCP relay between the proxy and ``instance_id``, for network faults."""
        self.require(Capability.NETWORK_FAULTS)
        raise NotImplementedError

    def serve_relays(self) -> DeskAddress:
        """Serve the relays to other processes (:mod:`harness.net.relay_desk`); the address travels
        in the target's record."""
        self.require(Capability.NETWORK_FAULTS)
        raise NotImplementedError

    def metrics(self, names: Collection[str] | None = None) -> list[MetricSample]:
        """The proxy's metrics now (those in ``names``, or all), as samples stamped with the monotonic clock."""
        self.require(Capability.METRICS)
        raise NotImplementedError

    def status(self) -> dict[str, Any]:
        """The proxy's JSON status document."""
        self.require(Capability.STATUS)
        raise NotImplementedError

    def direct_instances(self) -> list[dict[str, Any]]:
        """The instances as in ``standin up --json`` (id, role, host, port, credentials)."""
        self.require(Capability.DIRECT)
        raise NotImplementedError

    def secrets_access(self) -> SecretsAccess:
        """Where the target's secrets are and which ones a rotation may change (``ROTATE_SECRET``)."""
        self.require(Capability.ROTATE_SECRET)
        raise NotImplementedError

    def set_database_password(self, user: str, password: str) -> None:
        """Change ``user``'s password in the database itself, as its administrator (setSecret)."""
        self.require(Capability.ROTATE_SECRET)
        raise NotImplementedError

    def check_database_login(self, user: str, password: str) -> None:
        """Log in to the database itself (not through the proxy) as ``user`` with ``password``
        (testSecret); raises when the database refuses."""
        self.require(Capability.ROTATE_SECRET)
        raise NotImplementedError

    def own_rotation_login(self) -> Credentials | None:
        """The login a rotation changes when the target rotates it by its own means (a user's
        command: :meth:`rotate_login`); None when the harness drives the four steps itself through
        :meth:`secrets_access`."""
        return None

    def rotate_login(self, user: str, new_password: str) -> None:
        """Rotate ``user``'s login to ``new_password`` by the target's own means: the secret the proxy
        reads and the database password, all four steps; afterwards the target logs in with the new
        one.  Raises :class:`ControlFailed` when the rotation was not done."""
        self.require(Capability.ROTATE_SECRET)
        raise NotImplementedError

    def iam_access(self) -> IamAccess:
        """Who must log in with an IAM token, and how to make one for the writer endpoint (``IAM_AUTH``)."""
        self.require(Capability.IAM_AUTH)
        raise NotImplementedError

    def sibling_proxy(self, *, pool: dict[str, Any] | None = None, require_tls: bool = False,
                      relays: bool = False) -> Target:
        """Another proxy of this kind on the same cluster, with its own settings (not up yet).

        For tests that need settings other than the target's (a small pool, TLS required, relays for
        network faults) without disturbing the suites that share the target.
        """
        self.require(Capability.SIBLING_PROXY)
        raise NotImplementedError

    @property
    def proxy_log(self) -> str | None:
        """The proxy's log file, when the harness runs the proxy and it is up (kept with the run)."""
        return None

    def describe(self) -> dict[str, Any]:
        """The public JSON contract of ``aurora-harness up/status --json``."""
        c = self.credentials
        w = self.writer_endpoint
        return {
            "engine": self.engine,
            "target": self.kind,
            "endpoints": {
                "writer": {"host": w.host, "port": w.port},
                "readers": [{"name": e.name, "host": e.host, "port": e.port} for e in self.reader_endpoints],
            },
            "credentials": {"user": c.user, "password": c.password, "database": c.database},
            "capabilities": sorted(cap.value for cap in self.capabilities),
        }
