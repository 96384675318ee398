"""The reference target: a stand-in cluster with the reference proxy in front of it.

The proxy runs as its own process (``python -m reference_proxy --config FILE``), exactly as a user
would run it, so a crash of the proxy is visible as a crash and its log is a file.  Every capability
is available: failover, crash and restart act on the stand-in; metrics and status come from the
proxy's admin listener, the metrics as samples read from its Prometheus text.

The whole target can be recorded (:meth:`to_state`) and rebuilt in another process, which is how
``aurora-harness up`` leaves it running in the background and ``aurora-harness down`` stops it.

With ``auto_failover=True`` the stand-in gets an Aurora-like control plane: a supervisor process
(``python -m harness.standins.supervisor``) that promotes a reader when the writer stops answering
for ``failover_grace`` seconds.  The cluster record then lives in ``<run_dir>/cluster.json``, which
the supervisor updates; every control operation here takes the record's lock, re-reads it, acts
and saves it, so a planned failover never races an automatic one.  The proxy is told nothing in
either case: it must notice the new writer through its own monitor.

Logins come from Secrets Manager by default (``credentials="secrets"``), as RDS Proxy reads them: the
target starts a local AWS stand-in (:mod:`harness.targets.aws_standin`, a moto server process), makes
one secret per database user (JSON ``username``/``password``) and configures the proxy with
``[[auth.secrets]]`` and the stand-in's endpoint instead of static users.  Besides the cluster's own
user (never rotated: the stand-in's control operations log in as it) the target creates users that
rotation faults may change: one for single-user rotation and two that one secret alternates between.
With the stand-in the target offers ``ROTATE_SECRET``.

It also offers ``IAM_AUTH``: one more secret, for :data:`IAM_USER` (a normal database user behind
the proxy), is marked ``iam_auth = "required"``, so its clients must log in with an IAM token over
TLS; the proxy's ``[auth.iam]`` trusts one access key the target generates, and each endpoint
advertises an RDS-like DNS name that tokens must name (never resolved: clients connect to loopback).
The proxy makes a self-signed certificate; TLS stays optional, so that a plaintext IAM login reaches
the proxy's IAM check and is refused there.  ``credentials="static"`` writes the cluster's
user into the configuration as before, with no AWS stand-in and no rotation.

``testing={"failpoint": "leak_session_state"}`` writes the proxy's ``[testing]`` section: a failpoint that makes
the proxy unsafe on purpose (this one then leaks session state from one client to the next), to show
that the suites catch such a proxy; the proxy is then started with failpoints allowed in its
environment, and no other is.  Sibling proxies inherit them: they stand for the same proxy with
other pool settings.  A certification reaches both sections through ``--proxy-setting``
(:func:`parse_proxy_settings`).

A certification may borrow a stand-in cluster that runs apart (``--standin DIR``: the state
directory of ``aurora-harness standin up``) instead of starting one: the target follows the roles its
servers have now (an earlier run may have failed it over), makes its logins on it as on a cluster of
its own (the borrowed cluster is the target's alone while it runs), records the roles back when it
stops, and leaves the servers running.  Certifying the same proxy with one setting after another
(the failpoint matrix) then starts the cluster once.

With ``relays=True`` a user-space TCP relay (:class:`~harness.net.relay.RelayServer`) sits
between the proxy and each instance, and the proxy is configured with the relays' ports under the
instances' own ids, so network faults (latency, blackhole, resets...) can be put on the path to one
instance.  The relays run in threads of this process, so a target left running in the background
by ``aurora-harness up`` has none; another process (a load run's Locust master) drives them through
the relay desk this process serves (:meth:`ReferenceTarget.serve_relays`), whose address and token
travel in :meth:`ReferenceTarget.to_state`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import sys
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from harness import process
from harness.metrics import MetricSample
from harness.net.relay import RelayServer
from harness.net.relay_desk import DeskAddress, RelayDesk, RemoteRelay
from harness.standins.base import Cluster, Instance, Role, StandinError
from harness.standins.registry import cluster_class, cluster_from_state
from harness.standins.supervisor import (
    DEFAULT_GRACE,
    READY_LINE,
    StateFileStore,
    cluster_lock,
    read_promotions,
    write_json_atomically,
)
from harness.statedir import STANDIN_RECORD, StateDir, StateError, resolve
from harness.targets.aws_standin import REGION, AwsStandin, generate_access_key, isolated_environment
from harness.targets.base import (
    Capability,
    Credentials,
    Endpoint,
    IamAccess,
    SecretsAccess,
    Target,
    TargetError,
    TargetOptions,
)
from harness.targets.prometheus import samples_from_text

READY_TIMEOUT = 30.0
SUPERVISOR_READY_TIMEOUT = 20.0
RELAY_KEEPER_READY_TIMEOUT = 20.0
"""How long the relay keeper may take to listen on every relay and write where they are."""

CERTIFICATION_POOL = {"max_connections_percent": 20}
CERTIFICATION_READERS = 3
"""The reference target a certification builds: one writer and three readers, with a per-instance pool
cap of 20 % of ``max_connections`` (100 on the PostgreSQL writer), i.e. 20 backend connections: small
enough that 200 clients must share backends, so multiplexing and the cap are observable.  Suites that
need other pool settings (a short borrow timeout, TLS required) start a sibling proxy on the same
cluster."""
CERTIFICATION_READER_MAX_CONNECTIONS = {"postgres": (100, 100, 200), "mysql": (151, 151, 302)}
"""Readers of different sizes, as in RDS's own example (500/500/1000 balances about 1:1:2): the
proxy weighs readers by max_connections, which identical readers would never show.  The first two
match the writer (the stand-ins' default), so a hot standby is never smaller than its primary."""


PROXY_SETTING_SECTIONS = ("pool", "testing", "secrets_manager", "iam")
FAILPOINTS_ALLOW_ENV = "AURORA_PROXY_ALLOW_FAILPOINTS"
"""The proxy's ``reference_proxy.failpoints.ALLOW_ENV`` (the harness runs the proxy, it does not import it)."""
"""The proxy configuration sections ``--proxy-setting`` may change (``secrets_manager`` is the
proxy's ``[auth.secrets_manager]``: ``cache_ttl``, ``refresh_min_interval``; ``iam`` its
``[auth.iam]``: ``max_concurrent_authentications``, ``max_clock_skew``, ``region``); the target owns the
others (endpoints, instances, users, admin), which must match what it started.  The harness still
makes IAM tokens for the target's own region, so ``iam.region`` set to another one misconfigures
the proxy on purpose."""

CREDENTIAL_MODES = ("secrets", "static")
"""Where the proxy takes its logins from: Secrets Manager (the AWS stand-in) or its configuration."""

SECRETS_CACHE_TTL = 2.0
"""Seconds the proxy trusts a secret read (its ``cache_ttl``): RDS Proxy does not publish its own; a
short one makes a rotation visible to new logins within seconds, as the rotation guarantees expect."""

SECRET_PREFIX = "aurora-harness/"
ROTATING_USER = "rotation_user"
ALTERNATING_USERS = ("rotation_alt_a", "rotation_alt_b")
ALTERNATING_SECRET = SECRET_PREFIX + "alternating"
"""The logins a rotation fault may change, and the secret that alternates between two users."""
IAM_USER = "iam_user"
IAM_SECRET = SECRET_PREFIX + IAM_USER
"""The database user whose clients must log in with an IAM token (its secret has ``iam_auth = "required"``)."""
ADVERTISED_HOSTS = {"default": f"aurora-harness.proxy-local.{REGION}.rds.amazonaws.com",
                    "reader": f"aurora-harness-reader.endpoint.proxy-local.{REGION}.rds.amazonaws.com"}
"""Each endpoint's DNS name as an RDS Proxy endpoint's would read; IAM tokens must name it."""


def parse_proxy_settings(texts: Collection[str]) -> dict[str, dict[str, Any]]:
    """``SECTION.KEY=VALUE`` texts as ``{section: {key: value}}``; a TargetError names a bad one.

    The value is read as a TOML value (``true``, ``5``, ``0.5``, ``"text"``), and as plain text when
    it is not one.  The proxy itself checks keys and values when it starts (an unknown key or a bad
    value stops it with the key named)."""
    sections: dict[str, dict[str, Any]] = {}
    for text in texts:
        name, equals, raw = text.partition("=")
        section, dot, key = name.strip().partition(".")
        if not equals or not dot or not key or "." in key:
            raise TargetError(f"--proxy-setting {text!r}: expected SECTION.KEY=VALUE, "
                              f"e.g. testing.failpoint=leak_session_state")
        if section not in PROXY_SETTING_SECTIONS:
            raise TargetError(f"--proxy-setting {text!r}: only the {' and '.join(PROXY_SETTING_SECTIONS)} "
                              f"sections may be changed; the target sets the others itself")
        try:
            value = tomllib.loads(f"value = {raw.strip()}")["value"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        sections.setdefault(section, {})[key] = value
    return sections


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict)


def _render_table(name: str, table: dict[str, Any], lines: list[str], *, header: str | None) -> None:
    """One table's scalars (under ``header`` when given), then its sub-tables and arrays of tables."""
    if header is not None:
        lines.append(f"\n{header}")
    lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()
              if not isinstance(v, dict) and not _is_table_array(v)]
    for key, value in table.items():
        path = f"{name}.{key}" if name else key
        if isinstance(value, dict):
            _render_table(path, value, lines, header=f"[{path}]")
        elif _is_table_array(value):
            for item in value:
                _render_table(path, item, lines, header=f"[[{path}]]")


def render_toml(config: dict[str, Any]) -> str:
    """Write the proxy's configuration dict (scalars, tables, arrays of tables, at any depth) as TOML."""
    lines: list[str] = []
    _render_table("", config, lines, header=None)
    return "\n".join(lines) + "\n"


class ReferenceTarget(Target):
    """Stand-in cluster + reference proxy process; a context manager."""

    kind = "reference"
    capabilities = frozenset({Capability.FAILOVER, Capability.CRASH, Capability.RESTART, Capability.METRICS,
                              Capability.STATUS, Capability.DIRECT, Capability.POOL_SETTINGS,
                              Capability.SIBLING_PROXY})

    def __init__(self, engine: str = "postgres", readers: int = 2, *, pool: dict[str, Any] | None = None,
                 require_tls: bool = False, cluster: Cluster | None = None, auto_failover: bool = False,
                 failover_grace: float = DEFAULT_GRACE, relays: bool = False,
                 testing: dict[str, Any] | None = None, credentials: str = "secrets",
                 secrets_manager: dict[str, Any] | None = None, aws: AwsStandin | None = None,
                 logins: dict[str, tuple[str, str]] | None = None,
                 iam_key: tuple[str, str] | None = None, iam: dict[str, Any] | None = None,
                 reader_max_connections: tuple[int, ...] | None = None, standin: StateDir | None = None,
                 relay_process: bool = False) -> None:
        """``reader_max_connections`` gives each reader of a cluster this target makes its own size
        (None: all like the writer); ``auto_failover`` starts the supervisor (off by default, so tests drive failover by hand);
        ``relays`` puts a TCP relay in front of every instance (adds NETWORK_FAULTS); ``testing`` is
        the proxy's ``[testing]`` section (unsafe on purpose; empty by default); ``credentials`` is
        ``secrets`` or ``static`` (see the module docstring), ``secrets_manager`` overrides the
        proxy's ``[auth.secrets_manager]`` settings.  ``aws`` and ``logins`` are a running AWS stand-in
        and its secrets' first logins, shared by a sibling proxy with the target that owns them, as is
        ``iam_key``, the access key (id, secret) whose IAM tokens the proxy accepts; ``iam`` overrides
        the proxy's other ``[auth.iam]`` settings.  ``standin`` is the state directory of a running
        stand-in to borrow (see :func:`borrowed_standin`; ``cluster`` is then its recorded handle).
        ``relay_process`` runs the relays in a background process of their own (a target that
        ``aurora-harness up`` leaves running), driven through its relay desk."""
        super().__init__(engine)
        if credentials not in CREDENTIAL_MODES:
            raise TargetError(f"credentials must be one of {', '.join(CREDENTIAL_MODES)}, got {credentials!r}")
        self.credential_mode = credentials
        self.secrets_manager = dict(secrets_manager or {})
        self.iam_settings = dict(iam or {})
        self.aws = aws
        self._owns_aws = aws is None
        self.logins: dict[str, tuple[str, str]] = dict(logins or {})
        self.relays = bool(relays)
        self._relays: dict[str, RelayServer] = {}
        self._desk: RelayDesk | None = None
        self._remote_desk: DeskAddress | None = None
        """The desk of the process that runs the relays, when this target was rebuilt from its record."""
        self.relay_process = bool(relay_process)
        self.relay_keeper: dict[str, Any] | None = None
        """The relay keeper process's pid, start time and ports (``relay_process``)."""
        if self.relays:
            self.capabilities = type(self).capabilities | {Capability.NETWORK_FAULTS}
        # Rotatable logins are made by the target that makes (or borrows) the cluster and shared with
        # its siblings; another target given the same cluster must not reset their passwords behind
        # the first one.
        self.standin = standin
        makes_logins = credentials == "secrets" and (cluster is None or standin is not None)
        self.rotatable = makes_logins or (credentials == "secrets" and aws is not None)
        if self.rotatable:
            self.capabilities = self.capabilities | {Capability.ROTATE_SECRET}
        # The IAM user is made with the rotatable logins; its access key goes wherever its secret goes.
        self.iam_key = iam_key if iam_key is not None or not makes_logins else generate_access_key()
        if self.rotatable and self.iam_key is not None:
            self.capabilities = self.capabilities | {Capability.IAM_AUTH}
        if isinstance(failover_grace, bool) or not isinstance(failover_grace, (int, float)) \
                or not 0 < failover_grace <= 3600:
            raise TargetError(f"failover_grace must be a number of seconds in (0, 3600], got {failover_grace!r}")
        self.auto_failover = auto_failover
        self.failover_grace = float(failover_grace)
        self.supervisor_pid: int | None = None
        self.supervisor_pid_start: int | None = None
        self.readers = readers
        self.reader_max_connections = tuple(reader_max_connections) if reader_max_connections else None
        self.pool_settings = dict(pool or {})
        self.testing = dict(testing or {})
        self.require_tls = require_tls
        self.cluster = cluster
        self._owns_cluster = cluster is None
        self.run_dir: str | None = None
        self.ports: dict[str, int] = {}
        self.proxy_pid: int | None = None
        self.proxy_pid_start: int | None = None

    @classmethod
    def from_options(cls, options: TargetOptions) -> ReferenceTarget:
        """The certification's reference target; endpoints and metrics are its own, so DSNs are refused."""
        if options.writer_dsn or options.reader_dsns or options.metrics_url:
            raise TargetError("--writer-dsn/--reader-dsn/--metrics-url are for --target external; "
                              "the reference target starts its own endpoints")
        hooks = [flag for flag, given in (("--failover-command", options.failover_command),
                                          ("--rotate-command", options.rotate_command),
                                          ("--rotate-dsn", options.rotate_dsn),
                                          ("--hook-timeout", options.hook_timeout is not None),
                                          ("--iam-user", options.iam_user), ("--iam-region", options.iam_region),
                                          ("--iam-host", options.iam_host)) if given]
        if hooks:
            raise TargetError(f"{'/'.join(hooks)} {'is' if len(hooks) == 1 else 'are'} for --target external; "
                              "the reference target fails over, rotates and makes IAM tokens itself")
        if options.requires_tls:
            raise TargetError("--requires-tls is for --target external; the reference target judges TLS-REQUIRED "
                              "on a proxy of its own that requires TLS")
        if options.direct_writer_dsn or options.direct_reader_dsns:
            raise TargetError("--direct-writer-dsn/--direct-reader-dsn are for --target external; "
                              "the reference target reaches the instances it starts itself")
        if options.max_connections_percent is not None or options.borrow_timeout is not None:
            raise TargetError("--max-connections-percent/--borrow-timeout are for --target external; the "
                              "reference proxy's pool is set with --proxy-setting "
                              "pool.max_connections_percent=N / pool.connection_borrow_timeout=S")
        settings = parse_proxy_settings(options.proxy_settings)
        standin = StateDir(resolve(options.standin)) if options.standin else None
        return cls(options.engine, readers=CERTIFICATION_READERS,
                   reader_max_connections=CERTIFICATION_READER_MAX_CONNECTIONS.get(options.engine),
                   pool={**CERTIFICATION_POOL, **settings.get("pool", {})}, testing=settings.get("testing"),
                   secrets_manager=settings.get("secrets_manager"), iam=settings.get("iam"),
                   standin=standin, cluster=borrowed_standin(standin, options.engine) if standin else None)

    def sibling_proxy(self, *, pool: dict[str, Any] | None = None, require_tls: bool = False,
                      relays: bool = False) -> ReferenceTarget:
        """Another reference proxy on this target's cluster, with its own settings (not up yet).

        ``relays`` puts TCP relays between that proxy and the instances, for network faults that
        must not disturb this target's proxy.
        """
        if self.cluster is None:
            raise TargetError("a sibling proxy needs the cluster of a reference target that is up")
        return ReferenceTarget(self.engine, readers=self.readers, pool=pool, require_tls=require_tls,
                               cluster=self.cluster, relays=relays, testing=self.testing,
                               credentials=self.credential_mode, secrets_manager=self.secrets_manager,
                               aws=self.aws, logins=self.logins, iam_key=self.iam_key, iam=self.iam_settings)

    # -- paths -------------------------------------------------------------------------------
    @property
    def config_path(self) -> str:
        assert self.run_dir
        return os.path.join(self.run_dir, "proxy.toml")

    @property
    def log_path(self) -> str:
        assert self.run_dir
        return os.path.join(self.run_dir, "proxy.log")

    @property
    def cluster_record_path(self) -> str:
        """The supervised cluster's record (the supervisor and control operations share it)."""
        assert self.run_dir
        return os.path.join(self.run_dir, "cluster.json")

    @property
    def promotions_path(self) -> str:
        """JSON lines, one per automatic failover (see :class:`harness.standins.supervisor.Promotion`)."""
        assert self.run_dir
        return os.path.join(self.run_dir, "promotions.jsonl")

    @property
    def proxy_log(self) -> str | None:
        return self.log_path if self.run_dir else None

    @property
    def supervisor_log_path(self) -> str:
        assert self.run_dir
        return os.path.join(self.run_dir, "supervisor.log")

    @property
    def supervised(self) -> bool:
        """True when the cluster record is on disk for a supervisor (auto failover was started)."""
        return bool(self.run_dir) and os.path.exists(self.cluster_record_path)

    # -- lifecycle ---------------------------------------------------------------------------
    def proxy_config(self) -> dict[str, Any]:
        """The proxy's configuration for this cluster (what goes into proxy.toml)."""
        assert self.cluster is not None
        c = self.cluster
        return {
            "engine": self.engine,
            "endpoints": [
                {"name": "default", "role": "read_write", "host": process.LOOPBACK, "port": self.ports["writer"],
                 "advertised_host": ADVERTISED_HOSTS["default"]},
                {"name": "reader", "role": "read_only", "host": process.LOOPBACK, "port": self.ports["reader"],
                 "advertised_host": ADVERTISED_HOSTS["reader"]},
            ],
            "instances": [self._instance_entry(i) for i in c.instances],
            "pool": self.pool_settings,
            "auth": self._auth_config(),
            "tls": {"require_tls": self.require_tls},
            "admin": {"host": process.LOOPBACK, "port": self.ports["admin"]},
            "testing": self.testing,
        }

    @property
    def _client_method(self) -> str:
        """The password method clients use with the proxy (RDS ClientPasswordAuthType)."""
        return "scram-sha-256" if self.engine == "postgres" else "mysql_native_password"

    def _auth_config(self) -> dict[str, Any]:
        """The proxy's ``[auth]``: the stand-in's secrets, or the cluster's user written in."""
        assert self.cluster is not None
        if self.credential_mode == "static":
            return {"users": [{"name": self.cluster.user, "password": self.cluster.password,
                               "method": self._client_method}]}
        assert self.aws is not None
        access = self.aws.access()
        iam = self.supports(Capability.IAM_AUTH) and self.iam_key is not None and IAM_SECRET in self.logins
        # The cluster's own user first: the proxy's topology monitor logs in with the first secret.
        auth: dict[str, Any] = {
            "secrets": [{"secret_id": sid, "method": self._client_method,
                         **({"iam_auth": "required"} if iam and sid == IAM_SECRET else {})} for sid in self.logins],
            "secrets_manager": {"region": access.region, "endpoint_url": access.endpoint_url,
                                "cache_ttl": SECRETS_CACHE_TTL, **self.secrets_manager}}
        if iam and self.iam_key is not None:
            key_id, secret_key = self.iam_key
            auth["iam"] = {"region": REGION, **self.iam_settings,
                           "access_keys": [{"access_key_id": key_id, "secret_access_key": secret_key}]}
        return auth

    def up(self) -> None:
        if self.standin is not None:
            self._follow_standin()
        if self.cluster is None:
            self.cluster = cluster_class(self.engine)(readers=self.readers,
                                                      reader_max_connections=self.reader_max_connections)
        self.run_dir = tempfile.mkdtemp(prefix="aurora-harness-proxy-")  # 0700: its proxy.toml holds secrets
        if self.credential_mode == "secrets" and self._owns_aws:
            self.aws = AwsStandin()
            self.aws.launch(self.run_dir)  # it takes seconds to listen: the cluster starts meanwhile
        if self._owns_cluster and not self.cluster.instances:
            self.cluster.start()
        self.ports = {"writer": process.free_port(), "reader": process.free_port(), "admin": process.free_port()}
        if self.credential_mode == "secrets" and self._owns_aws:
            self.start_aws()
        if self.auto_failover:
            self.start_supervisor()
        if self.relays:
            self.start_relays()
        self.start_proxy()
        if self.credential_mode == "secrets":
            self._check_secrets_read()

    def _follow_standin(self) -> None:
        """Check that every instance of the borrowed stand-in runs, and take its roles from its servers."""
        assert self.cluster is not None
        stopped = [i.id for i in self.cluster.instances if not self.cluster.running(i.id)]
        if stopped:
            raise TargetError(f"the stand-in recorded in {self.standin.path if self.standin else '?'} is not "
                              f"running ({', '.join(stopped)} stopped); start one with 'aurora-harness standin up'")
        self.follow_live_roles()

    def _check_secrets_read(self) -> None:
        """A proxy that could not read its secrets starts anyway (as RDS Proxy reports "no registered
        credentials" rather than failing); a target that cannot log in is useless, so say why now."""
        secrets_status = (self.status().get("credentials") or {}).get("secrets") or {}
        problems = {sid: entry.get("problem") for sid, entry in secrets_status.items() if entry.get("problem")}
        if problems or not secrets_status:
            said = "; ".join(f"{sid}: {problem}" for sid, problem in problems.items()) or "no secrets listed"
            raise TargetError(f"the reference proxy could not read its secrets: {said}")

    def start_aws(self) -> None:
        """Create the rotatable logins, start the AWS stand-in (or wait for the one launched) and put one
        secret per login in it."""
        assert self.cluster is not None and self.run_dir
        logins = {SECRET_PREFIX + self.cluster.user: (self.cluster.user, self.cluster.password)}
        if self.rotatable:
            made = {user: secrets.token_urlsafe(18) for user in (ROTATING_USER, *ALTERNATING_USERS, IAM_USER)}
            for user, password in made.items():
                self.cluster.create_login(user, password)
            self.cluster.wait_replicated()
            # The alternating secret holds its first user; a rotation gives the second one a new
            # password and switches the secret to it.
            first = ALTERNATING_USERS[0]
            logins[SECRET_PREFIX + ROTATING_USER] = (ROTATING_USER, made[ROTATING_USER])
            logins[ALTERNATING_SECRET] = (first, made[first])
            logins[IAM_SECRET] = (IAM_USER, made[IAM_USER])
        if self.aws is None:
            self.aws = AwsStandin()
            self.aws.launch(self.run_dir)
        self.aws.wait_ready()
        self.aws.create_secrets(logins)
        self.logins = logins

    def start_relays(self) -> None:
        """One relay per instance, listening on a free loopback port, forwarding to the instance."""
        assert self.cluster is not None
        if self.relay_process:
            self._start_relay_keeper()
            return
        for inst in self.cluster.instances:
            if inst.id not in self._relays:
                relay = RelayServer(inst.host, inst.port)
                relay.start()
                self._relays[inst.id] = relay

    def offer(self, capability: Capability) -> bool:
        """NETWORK_FAULTS is offered by starting with relays (only before the target is up)."""
        if capability is Capability.NETWORK_FAULTS and not self.relays and self.proxy_pid is None:
            self.relays = True
            self.capabilities = self.capabilities | {Capability.NETWORK_FAULTS}
        return self.supports(capability)

    def serve_relays(self) -> DeskAddress:
        """Serve this process's relays to other processes (a load run's Locust master carries out its
        network faults) on a loopback desk; its address and token go into :meth:`to_state`."""
        self.require(Capability.NETWORK_FAULTS)
        if not self._relays:
            raise TargetError("the relays are not running: the target is down")
        if self._desk is None:
            desk = RelayDesk(lambda: dict(self._relays))
            desk.start()
            self._desk = desk
        return self._desk.address

    def _start_relay_keeper(self) -> None:
        """The relays in a background process (:mod:`harness.net.relay_keeper`), reached through its desk."""
        assert self.cluster is not None and self.run_dir
        spec, ready = os.path.join(self.run_dir, "relays.spec.json"), os.path.join(self.run_dir, "relays.json")
        process.write_private(spec, json.dumps({"instances": [
            {"id": i.id, "host": i.host, "port": i.port} for i in self.cluster.instances]}), replace=True)
        log_path = os.path.join(self.run_dir, "relays.log")
        pid, pid_start = process.spawn([sys.executable, "-m", "harness.net.relay_keeper", "--spec", spec,
                                        "--ready", ready], log_path=log_path)
        self.relay_keeper = {"pid": pid, "pid_start": pid_start, "ports": {}}
        process.wait_until(lambda: os.path.exists(ready) or not process.pid_alive(pid, pid_start),
                           RELAY_KEEPER_READY_TIMEOUT)
        if not os.path.exists(ready):
            self.stop_relays()
            raise TargetError("the relay keeper did not start; its log ends:\n" + process.log_tail(log_path))
        with open(ready, encoding="utf-8") as fh:
            started = json.load(fh)
        self._remote_desk = DeskAddress.from_state(started["desk"])
        self.relay_keeper["ports"] = {iid: int(port) for iid, port in started["ports"].items()}

    def stop_relays(self) -> None:
        """Close the desk, every relay and its connections (or stop the relay keeper). Idempotent."""
        keeper, self.relay_keeper = self.relay_keeper, None
        if keeper is not None:
            process.terminate(keeper["pid"], keeper["pid_start"], timeout=15)
            self._remote_desk = None
        desk, self._desk = self._desk, None
        if desk is not None:
            desk.stop()
        relays, self._relays = self._relays, {}
        for relay in relays.values():
            relay.stop()

    def _instance_entry(self, inst: Instance) -> dict[str, Any]:
        """The proxy's view of an instance: its own id and role, at its relay's address if it has one."""
        relay = self._relays.get(inst.id)
        kept = (self.relay_keeper or {}).get("ports", {}).get(inst.id)
        host, port = (relay.address if relay is not None else ("127.0.0.1", kept) if kept is not None
                      else (inst.host, inst.port))
        return {"id": inst.id, "host": host, "port": port, "role": inst.role.value}

    def start_supervisor(self) -> None:
        """Record the cluster in the run directory and start the supervisor process watching it."""
        assert self.cluster is not None and self.run_dir
        write_json_atomically(Path(self.cluster_record_path), self.cluster.to_state())
        self.supervisor_pid, self.supervisor_pid_start = process.spawn(
            [sys.executable, "-m", "harness.standins.supervisor", "--state", self.cluster_record_path,
             "--grace", repr(self.failover_grace), "--promotions-log", self.promotions_path],
            log_path=self.supervisor_log_path)

        def started() -> bool:
            if not self.supervisor_running():
                return True  # stop polling; reported below
            try:
                with open(self.supervisor_log_path) as f:
                    return READY_LINE in f.read()
            except OSError:
                return False

        process.wait_until(started, SUPERVISOR_READY_TIMEOUT, interval=0.05)
        if not self.supervisor_running():
            raise TargetError("the failover supervisor exited at start; its log ends:\n"
                              + process.log_tail(self.supervisor_log_path))

    def stop_supervisor(self) -> None:
        """Stop the supervisor (it finishes a promotion in progress first). Idempotent."""
        if self.supervisor_pid is not None:
            process.terminate(self.supervisor_pid, self.supervisor_pid_start, timeout=60)
        self.supervisor_pid = self.supervisor_pid_start = None

    def supervisor_running(self) -> bool:
        return process.pid_alive(self.supervisor_pid, self.supervisor_pid_start)

    def promotions(self) -> list[dict[str, Any]]:
        """Automatic failovers done so far, oldest first (empty without auto failover)."""
        return read_promotions(self.promotions_path) if self.run_dir else []

    def _proxy_environment(self) -> dict[str, str]:
        """The proxy's environment: AWS confined to the stand-in, and failpoints allowed only when this
        target was asked for one (the proxy refuses a failpoint its environment does not allow)."""
        env = isolated_environment()
        env.pop(FAILPOINTS_ALLOW_ENV, None)
        if self.testing.get("failpoint"):
            env[FAILPOINTS_ALLOW_ENV] = "1"
        return env

    def start_proxy(self) -> None:
        """Write the configuration and start the proxy process; wait until it serves."""
        config = self.proxy_config()
        config["pool"] = {k: v for k, v in config["pool"].items() if v is not None}
        for section in ("pool", "testing"):
            if not config[section]:
                del config[section]
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.config_path)  # a restart writes it afresh
        process.write_private(self.config_path, render_toml(config))  # it holds passwords and keys
        self.proxy_pid, self.proxy_pid_start = process.spawn(
            [sys.executable, "-m", "reference_proxy", "--config", self.config_path],
            log_path=self.log_path, env=self._proxy_environment())
        ready = process.wait_until(self._ready, READY_TIMEOUT, interval=0.1)
        if not ready or not self.proxy_running():
            tail = process.log_tail(self.log_path)
            alive = process.pid_alive(self.proxy_pid, self.proxy_pid_start)
            raise TargetError(f"the reference proxy {'did not become ready' if alive else 'exited'} "
                              f"within {READY_TIMEOUT:.0f}s; its log ends:\n{tail}")

    def _ready(self) -> bool:
        if not process.pid_alive(self.proxy_pid, self.proxy_pid_start):
            return True  # stop polling; up() reports the exit
        return all(process.port_open(p) for p in self.ports.values())

    def stop_proxy(self) -> None:
        process.terminate(self.proxy_pid, self.proxy_pid_start, timeout=15)
        self.proxy_pid = None

    def down(self) -> None:
        self.stop_supervisor()  # first, so that stopping the servers is not taken for a failure
        try:
            self.stop_proxy()
        finally:
            self.stop_relays()  # threads of this process: never leave them behind
            if self.aws is not None and self._owns_aws:
                self.aws.stop()
        if self.supervised:
            self._reload_cluster()
        if self.cluster is not None and self._owns_cluster:
            self.cluster.stop()
        if self.standin is not None and self.cluster is not None:
            with contextlib.suppress(StateError):  # its servers know their roles; the record only follows
                self.follow_live_roles()
                self.standin.write(STANDIN_RECORD, self.cluster.to_state())
        process.remove_tree(self.run_dir)
        self.run_dir = None

    def proxy_running(self) -> bool:
        return process.pid_alive(self.proxy_pid, self.proxy_pid_start)

    # -- endpoints ---------------------------------------------------------------------------
    @property
    def writer_endpoint(self) -> Endpoint:
        return Endpoint("default", "writer", process.LOOPBACK, self.ports["writer"])

    @property
    def reader_endpoints(self) -> list[Endpoint]:
        return [Endpoint("reader", "reader", process.LOOPBACK, self.ports["reader"])]

    @property
    def credentials(self) -> Credentials:
        assert self.cluster is not None
        return Credentials(self.cluster.user, self.cluster.password, self.cluster.database)

    # -- control -----------------------------------------------------------------------------
    def failover(self, target_instance: str | None = None) -> str:
        """Planned failover; under the supervisor's lock when supervised, so the two never race."""
        return self._control(lambda c: c.failover(target_instance))

    def crash(self, instance_id: str) -> None:
        self._control(lambda c: c.crash(instance_id))

    def restart(self, instance_id: str) -> None:
        self._control(lambda c: c.restart(instance_id))

    def _control(self, operation: Callable[[Cluster], Any]) -> Any:
        assert self.cluster is not None
        if not self.supervised:
            return operation(self.cluster)
        with cluster_lock(self.cluster_record_path):
            self._reload_cluster()
            try:
                return operation(self.cluster)
            finally:
                write_json_atomically(Path(self.cluster_record_path), self.cluster.to_state())

    def _reload_cluster(self) -> None:
        """Take the supervised record as the truth (the supervisor may have promoted a reader)."""
        try:
            self.cluster = StateFileStore(self.cluster_record_path).load()
        except StandinError:
            pass  # keep the handle we have; down() still stops what it names

    def secrets_access(self) -> SecretsAccess:
        self.require(Capability.ROTATE_SECRET)
        if self.aws is None:
            raise TargetError("the AWS stand-in is not running; the target is down")
        return dataclasses.replace(self.aws.access(), single_user=SECRET_PREFIX + ROTATING_USER,
                                   alternating=(ALTERNATING_SECRET, *ALTERNATING_USERS))

    def iam_access(self) -> IamAccess:
        self.require(Capability.IAM_AUTH)
        if IAM_SECRET not in self.logins or self.iam_key is None or "writer" not in self.ports:
            raise TargetError("the target has no IAM user yet; it is down")
        key_id, secret_key = self.iam_key
        return IamAccess(user=IAM_USER, host=ADVERTISED_HOSTS["default"], port=self.ports["writer"], region=REGION,
                         access_key_id=key_id, secret_access_key=secret_key,
                         user_password=self.logins[IAM_SECRET][1])

    def set_database_password(self, user: str, password: str) -> None:
        self.require(Capability.ROTATE_SECRET)
        self._control(lambda c: c.set_password(user, password))

    def check_database_login(self, user: str, password: str) -> None:
        self.require(Capability.ROTATE_SECRET)
        self._control(lambda c: c.check_login(user, password))

    def _admin_get(self, path: str) -> bytes:
        url = f"http://{process.LOOPBACK}:{self.ports['admin']}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.read()
        except OSError as e:
            raise TargetError(f"cannot read {url}: {e}") from None

    @property
    def metrics_url(self) -> str:
        return f"http://{process.LOOPBACK}:{self.ports['admin']}/metrics"

    @property
    def status_url(self) -> str:
        return f"http://{process.LOOPBACK}:{self.ports['admin']}/status"

    def metrics(self, names: Collection[str] | None = None) -> list[MetricSample]:
        text = self._admin_get("/metrics").decode()
        return samples_from_text(text, time.monotonic_ns(), names)

    def status(self) -> dict[str, Any]:
        return json.loads(self._admin_get("/status"))

    def roles(self) -> dict[str, Any]:
        """The writer and readers as the cluster record has them (after this target's failovers,
        and the supervisor's when supervised)."""
        assert self.cluster is not None
        if self.supervised:
            self._reload_cluster()
        return {"writer": self.cluster.writer.id, "readers": [i.id for i in self.cluster.readers]}

    def relay(self, instance_id: str) -> RelayServer | RemoteRelay:
        """The relay in front of an instance: this process's own, or, for a target rebuilt from the
        record of a process that serves its relays, that relay reached through the desk."""
        self.require(Capability.NETWORK_FAULTS)
        if not self._relays and self._remote_desk is not None:
            return RemoteRelay(self._remote_desk, instance_id)
        try:
            return self._relays[instance_id]
        except KeyError:
            raise TargetError(f"no relay for instance {instance_id!r} "
                              f"(have: {', '.join(self._relays) or 'none; the target is down'})") from None

    def direct_instances(self) -> list[dict[str, Any]]:
        assert self.cluster is not None
        return self.cluster.describe()["instances"]

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["metrics_url"] = self.metrics_url
        d["status_url"] = self.status_url
        d["instances"] = self.direct_instances()
        d["proxy_log"] = self.log_path if self.run_dir else None
        d["proxy_testing"] = self.testing  # non-empty: the proxy was made unsafe on purpose
        d["relays"] = {iid: r.port for iid, r in self._relays.items()} or dict((self.relay_keeper or {}).get("ports", {}))
        d["aws_endpoint_url"] = self.aws.endpoint_url if self.aws is not None and self.aws.port else None
        d["secrets"] = {sid: user for sid, (user, _) in self.logins.items()}
        # The other logins behind the proxy (rotatable, IAM), e.g. for an external certification over
        # these endpoints whose --rotate-dsn names one; kept descriptions redact their passwords.
        d["logins"] = [{"secret_id": sid, "user": user, "password": password}
                       for sid, (user, password) in self.logins.items()
                       if self.cluster is None or user != self.cluster.user]
        d["iam"] = ({"user": IAM_USER, "region": REGION, "access_key_id": self.iam_key[0],
                     "secret_access_key": self.iam_key[1], "advertised_hosts": dict(ADVERTISED_HOSTS)}
                    if self.supports(Capability.IAM_AUTH) and self.iam_key is not None else None)
        d["auto_failover"] = {"enabled": self.supervised, "grace_seconds": self.failover_grace,
                              "supervisor_running": self.supervisor_running(),
                              "promotions": self.promotions()}
        return d

    # -- persistence for the CLI -------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        assert self.cluster is not None
        return {"engine": self.engine, "readers": self.readers, "pool": self.pool_settings,
                "reader_max_connections": list(self.reader_max_connections or ()),
                "testing": self.testing, "require_tls": self.require_tls, "run_dir": self.run_dir, "ports": self.ports,
                "proxy_pid": self.proxy_pid, "proxy_pid_start": self.proxy_pid_start,
                "auto_failover": self.auto_failover, "failover_grace": self.failover_grace,
                "supervisor_pid": self.supervisor_pid, "supervisor_pid_start": self.supervisor_pid_start,
                "credentials": self.credential_mode, "secrets_manager": self.secrets_manager,
                "aws": self.aws.to_state() if self.aws is not None else None,
                "logins": {sid: list(login) for sid, login in self.logins.items()},
                "iam_key": list(self.iam_key) if self.iam_key is not None else None, "iam": self.iam_settings,
                "relay_desk": self._desk.address.to_state() if self._desk is not None else None,
                "relay_keeper": ({**self.relay_keeper, "desk": self._remote_desk.to_state()}
                                 if self.relay_keeper is not None and self._remote_desk is not None else None),
                "cluster": self.cluster.to_state()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ReferenceTarget:
        t = cls(state["engine"], state["readers"], pool=state.get("pool"), require_tls=state["require_tls"],
                cluster=cluster_from_state(state["cluster"]), auto_failover=bool(state.get("auto_failover")),
                failover_grace=state.get("failover_grace", DEFAULT_GRACE), testing=state.get("testing"),
                credentials=state.get("credentials", "static"), secrets_manager=state.get("secrets_manager"),
                aws=AwsStandin.from_state(state["aws"]) if state.get("aws") else None,
                logins={sid: (user, pw) for sid, (user, pw) in (state.get("logins") or {}).items()},
                iam_key=tuple(state["iam_key"]) if state.get("iam_key") else None,  # type: ignore[arg-type]
                iam=state.get("iam"), reader_max_connections=tuple(state.get("reader_max_connections") or ()))
        t._owns_cluster = True
        t._owns_aws = True
        t.run_dir, t.ports = state["run_dir"], state["ports"]
        t.proxy_pid, t.proxy_pid_start = state["proxy_pid"], state["proxy_pid_start"]
        t.supervisor_pid, t.supervisor_pid_start = state.get("supervisor_pid"), state.get("supervisor_pid_start")
        if state.get("relay_desk"):
            t._remote_desk = DeskAddress.from_state(state["relay_desk"])
            t.capabilities = t.capabilities | {Capability.NETWORK_FAULTS}
        keeper = state.get("relay_keeper")
        if keeper:
            t.relays = t.relay_process = True
            t.relay_keeper = {"pid": keeper["pid"], "pid_start": keeper["pid_start"], "ports": dict(keeper["ports"])}
            t._remote_desk = DeskAddress.from_state(keeper["desk"])
            t.capabilities = t.capabilities | {Capability.NETWORK_FAULTS}
        if t.supervised:
            t._reload_cluster()
        return t

    def follow_live_roles(self) -> bool:
        """Update the recorded roles from the servers (after a failover done elsewhere); True if changed."""
        assert self.cluster is not None
        try:
            writer = self.cluster.topology().writer
        except StandinError:
            return False
        if writer is None or writer == self.cluster.writer.id:
            return False
        for inst in self.cluster.instances:
            inst.role = Role.WRITER if inst.id == writer else Role.READER
        return True


def borrowed_standin(standin: StateDir, engine: str) -> Cluster:
    """The stand-in cluster recorded in ``standin`` (``aurora-harness standin up``), checked to be of
    ``engine``; TargetError says what is wrong (nothing recorded, another engine, a bad record)."""
    try:
        record = standin.read(STANDIN_RECORD)
    except StateError as e:
        raise TargetError(f"--standin: {e}") from None
    if record is None:
        raise TargetError(f"--standin: no stand-in is recorded in {standin.path}; start one with "
                          f"'aurora-harness --state-dir {standin.path} standin up --engine {engine}'")
    try:
        cluster = cluster_from_state(record)
    except (StandinError, KeyError, TypeError, ValueError) as e:
        raise TargetError(f"--standin: the record in {standin.path} cannot be read: {e}") from None
    if cluster.engine != engine:
        raise TargetError(f"--standin: the stand-in in {standin.path} is {cluster.engine}, not {engine}")
    return cluster
