"""The proxy's configuration: one TOML file read into typed, frozen, validated dataclasses.

Every section is a frozen dataclass whose fields carry their meaning, default and range
(:func:`reference_proxy.settings_fields.setting`).  A small loader walks the dataclasses' type hints,
so that any unknown key, wrong type or out-of-range value is reported as a :class:`ConfigError`
naming the full dotted key (``endpoints[1].port``, ``pool.connection_borrow_timeout``).  Defaults are
RDS Proxy's.  Command-line flags apply on top with :meth:`ProxyConfig.with_overrides`, which goes
through the same validation.

A minimal file::

    engine = "postgres"
    [[endpoints]]
    name = "default"
    port = 6432
    [[instances]]
    id = "instance-1"
    port = 5432
    [[auth.users]]
    name = "app"
    password = "app-secret"

Users may instead live in Secrets Manager, one secret per user (``[[auth.secrets]]``, read through
``[auth.secrets_manager]``), and users of either kind may be required to log in with an IAM token
(``iam_auth = "required"``, checked locally against the access keys of ``[auth.iam]``)::

    [[auth.secrets]]
    secret_id = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db/app"
    [auth.secrets_manager]
    region = "us-east-1"
    cache_ttl = 60

See ``example-config.toml`` next to this module for every section.  Passwords and secret keys are
marked secret in their declarations, so no ``repr`` of a section shows them.

One section is not a setting of RDS Proxy: ``[testing]`` (:class:`UnsafeTestingConfig`) holds
switches that make the proxy unsafe on purpose, so that the harness can be shown to catch a pooler
that misbehaves.  They are all off by default and the proxy warns loudly at start when one is on.
"""

from __future__ import annotations

import dataclasses
import enum
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from reference_proxy.contracts import ConfigError, InstanceAddress, Role
from reference_proxy.credentials.methods import AuthMethod
from reference_proxy.credentials.settings import (
    IamAuth,
    IamSettings,
    SecretConfig,
    SecretsManagerSettings,
    check_secrets,
)
from reference_proxy.failpoints import FAILPOINTS
from reference_proxy.pool.settings import PoolSettings
from reference_proxy.settings_fields import check_ranges, setting

LOOPBACK = "127.0.0.1"


class Engine(str, enum.Enum):
    POSTGRES = "postgres"
    MYSQL = "mysql"


class EndpointRole(str, enum.Enum):
    """RDS Proxy endpoint target roles (``READ_WRITE`` / ``READ_ONLY``), in snake case."""

    READ_WRITE = "read_write"
    READ_ONLY = "read_only"


AUTH_METHODS_BY_ENGINE = {
    Engine.POSTGRES: (AuthMethod.SCRAM_SHA_256, AuthMethod.MD5),
    Engine.MYSQL: (AuthMethod.MYSQL_NATIVE_PASSWORD, AuthMethod.CACHING_SHA2_PASSWORD),
}
DEFAULT_AUTH_METHOD = {Engine.POSTGRES: AuthMethod.SCRAM_SHA_256,
                       Engine.MYSQL: AuthMethod.CACHING_SHA2_PASSWORD}
IAM_ENGINES = (Engine.POSTGRES, Engine.MYSQL)
"""Engines whose client login accepts IAM tokens (PostgreSQL as a cleartext password, MySQL through
``mysql_clear_password``, both over TLS only)."""


@dataclasses.dataclass(frozen=True)
class EndpointConfig:
    """One proxy endpoint: where clients connect, and whether it reaches the writer or the readers."""

    name: str = setting(doc="Endpoint name, as in metrics and logs (the default endpoint is 'default').")
    port: int = setting(minimum=0, maximum=65535, doc="TCP port to listen on; 0 lets the system choose.")
    role: EndpointRole = setting(EndpointRole.READ_WRITE,
                                 doc="read_write: the writer; read_only: spread over readers.")
    host: str = setting(LOOPBACK, doc="Address to listen on.")
    readers: tuple[str, ...] | None = setting(
        None, doc="For read_only endpoints: ids of the reader instances it covers; absent = all readers.")
    advertised_host: str | None = setting(
        None, doc="The endpoint's DNS name as clients are given it (an RDS Proxy endpoint's hostname): IAM "
                  "tokens must be made for this name and the endpoint's port; default: host.")

    def __post_init__(self) -> None:
        check_ranges(self)

    @property
    def token_host(self) -> str:
        """The host name IAM tokens for this endpoint must name."""
        return self.advertised_host if self.advertised_host is not None else self.host


@dataclasses.dataclass(frozen=True)
class InstanceConfig:
    """One database instance behind the proxy."""

    id: str = setting(doc="Instance identifier, as the cluster names it.")
    port: int = setting(minimum=1, maximum=65535, doc="Port the database listens on.")
    host: str = setting(LOOPBACK, doc="Host the database listens on.")
    role: Role | None = setting(None, doc="Static role until the topology monitor decides: writer or reader.")

    def __post_init__(self) -> None:
        check_ranges(self)

    @property
    def address(self) -> InstanceAddress:
        return InstanceAddress(self.id, self.host, self.port)


@dataclasses.dataclass(frozen=True)
class UserConfig:
    """A user clients may log in as, and the credentials the proxy uses towards the database."""

    name: str = setting(doc="User name clients log in with.")
    password: str = setting(doc="Password clients must prove (with iam_auth = required: only the database "
                                "password, unless backend_password is given).", secret=True)
    method: AuthMethod | None = setting(
        None, doc="Client auth method; default scram-sha-256 (postgres) or caching_sha2_password (mysql).")
    backend_user: str | None = setting(None, doc="Database user the proxy logs in as; default: name.")
    backend_password: str | None = setting(None, doc="Database password; default: password.", secret=True)
    iam_auth: IamAuth = setting(IamAuth.DISABLED,
                                doc="RDS IAMAuth: required = clients log in with an IAM token instead of the "
                                    "password (over TLS only).")

    @property
    def database_user(self) -> str:
        return self.backend_user if self.backend_user is not None else self.name

    @property
    def database_password(self) -> str:
        return self.backend_password if self.backend_password is not None else self.password


@dataclasses.dataclass(frozen=True)
class AuthConfig:
    """Who may log in: static users, Secrets Manager secrets, and how IAM tokens are checked.

    A static user shadows a secret naming the same user.  On AWS, RDS Proxy asks IAM whether a
    token is good; this proxy has no IAM to ask, so ``[auth.iam]`` holds the access keys (id and
    secret key) whose tokens it accepts and checks their signatures itself, the local stand-in of
    that check."""

    users: tuple[UserConfig, ...] = setting(default_factory=tuple, doc="Static users (secrets).")
    secrets: tuple[SecretConfig, ...] = setting(
        default_factory=tuple, doc="Secrets Manager secrets, one per database user (at most 200, as RDS Proxy).")
    secrets_manager: SecretsManagerSettings = setting(
        default_factory=SecretsManagerSettings, doc="How the secrets are read and how long a read is trusted.")
    iam: IamSettings | None = setting(
        None, doc="Local IAM token checking: the access keys whose tokens are accepted (AWS checks tokens "
                  "with IAM itself). Required when any user or secret has iam_auth = required.")

    def __post_init__(self) -> None:
        check_secrets(self.secrets, key="secrets")

    @property
    def requires_iam(self) -> bool:
        """Whether any user or secret makes its clients log in with an IAM token."""
        return any(x.iam_auth is IamAuth.REQUIRED for x in (*self.users, *self.secrets))


@dataclasses.dataclass(frozen=True)
class TlsConfig:
    """Client-side TLS. Without cert and key files a self-signed certificate is made at start."""

    cert_file: str | None = setting(None, doc="PEM certificate chain file.")
    key_file: str | None = setting(None, doc="PEM private key file.")
    require_tls: bool = setting(False, doc="RequireTLS: refuse clients that do not use TLS.")

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("cert_file" if self.cert_file is None else "key_file",
                              "cert_file and key_file must be given together")


@dataclasses.dataclass(frozen=True)
class AdminConfig:
    """The HTTP admin listener serving /metrics and /status."""

    host: str = setting(LOOPBACK, doc="Address to listen on.")
    port: int = setting(0, minimum=0, maximum=65535, doc="TCP port; 0 lets the system choose.")

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclasses.dataclass(frozen=True)
class LoggingConfig:
    level: str = setting("info", choices=("debug", "info", "warning", "error"), doc="Log level.")
    debug_logging: bool = setting(False, doc="DebugLogging: also log SQL text (may contain data).")
    file: str | None = setting(None, doc="Log file; absent = standard error.")

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclasses.dataclass(frozen=True)
class MonitorConfig:
    """The topology monitor: how often it polls every instance on its own connection, and as whom."""

    interval: float = setting(1.0, minimum=0.01, maximum=60.0,
                              doc="Seconds between polls while the topology is stable.")
    fast_interval: float = setting(0.1, minimum=0.01, maximum=60.0,
                                   doc="Seconds between polls from any error or role doubt until stable again.")
    connect_timeout: float = setting(2.0, minimum=0.1, maximum=60.0,
                                     doc="Seconds a poll may take, connecting included, before the instance "
                                         "counts as unreachable.")
    query_timeout: float = setting(1.0, minimum=0.01, maximum=60.0,
                                   doc="statement_timeout of the monitoring query, in seconds.")
    user: str | None = setting(None, doc="Database user the monitor logs in as; default: the first "
                                         "auth user's backend credentials, else the first secret's.")
    password: str | None = setting(None, doc="Password of monitor.user (required with it).", secret=True)
    database: str = setting("postgres", doc="Database the monitoring connections open.")

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.fast_interval > self.interval:
            raise ConfigError("fast_interval", f"must not exceed interval ({self.interval}), "
                                               f"got {self.fast_interval}")
        if self.user is not None and self.password is None:
            raise ConfigError("password", "monitor.user is set, so monitor.password is required")


@dataclasses.dataclass(frozen=True)
class ClientSessionConfig:
    """How the proxy treats client connections before they are served (the ``[proxy]`` section)."""

    client_handshake_timeout: float = setting(
        120.0, minimum=1.0, maximum=3600.0,
        doc="Seconds a client still setting up its connection (TLS, startup, authentication) may stay "
            "silent before it is dropped. Counted from the last bytes received, not from accept: a "
            "client that keeps answering is never dropped merely because it, or the proxy, is slow. "
            "The default is twice PostgreSQL's authentication_timeout because the client is the one "
            "computing SCRAM's key derivation: a host opening thousands of connections at once can "
            "leave each of them silent for tens of seconds.")
    client_login_timeout: float = setting(
        60.0, minimum=1.0, maximum=3600.0,
        doc="Seconds a client may take in all, from accept to the end of its authentication, whatever "
            "it sends meanwhile (PostgreSQL's authentication_timeout, whose default this is): a client "
            "that trickles one byte at a time cannot hold a connection in login for ever. The silence "
            "limit (client_handshake_timeout) only matters when it is the shorter of the two.")
    max_unauthenticated_clients: int = setting(
        10000, minimum=1, maximum=1_000_000,
        doc="Client connections that may be setting up (TLS, startup, authentication) at the same time; "
            "one more is refused at once as PostgreSQL refuses a client over max_connections (FATAL 53300 "
            "'sorry, too many clients already') or MySQL over max_connections (ERROR 1040 'Too many "
            "connections'). Logged-in clients do not count. The default lets a storm of 10,000 clients "
            "connecting at once through while bounding what unauthenticated peers can hold: each is "
            "also limited to a few tens of kilobytes of buffered login messages.")

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclasses.dataclass(frozen=True)
class UnsafeTestingConfig:
    """The ``[testing]`` section: switches that make the proxy unsafe on purpose, to show the harness
    catches it.  Never turn one on in front of real clients.

    A conformance harness is only as good as the failures it can see; a proxy that is correct
    cannot show that the isolation checks would fail a pooler that leaks.  These switches turn the
    reference proxy into such a pooler, on both engines, without a second code base to keep in step.
    Read at start only (a reload does not change them).
    """

    failpoint: str | None = setting(
        None, doc="Makes the proxy unsafe on purpose, to show the harness catches it: the name of one "
                "misbehaviour of reference_proxy.failpoints to ship (e.g. leak_session_state, "
                "split_transactions); unset: none. The proxy program refuses it unless its environment "
                "sets AURORA_PROXY_ALLOW_FAILPOINTS=1.")

    def __post_init__(self) -> None:
        if self.failpoint is not None and self.failpoint not in FAILPOINTS:  # allowed? failpoints.check_allowed
            raise ConfigError("failpoint", f"{self.failpoint!r} is not a failpoint; known: {', '.join(sorted(FAILPOINTS))}")

    def on(self, name: str) -> bool:
        """Whether failpoint ``name`` is the one turned on."""
        return self.failpoint == name


@dataclasses.dataclass(frozen=True)
class ProxyConfig:
    """The whole configuration of one reference proxy."""

    engine: Engine = setting(doc="postgres or mysql: the wire protocol spoken on both sides.")
    endpoints: tuple[EndpointConfig, ...] = setting(doc="Listeners; at least one.")
    instances: tuple[InstanceConfig, ...] = setting(doc="Database instances of the cluster; at least one.")
    pool: PoolSettings = setting(default_factory=PoolSettings, doc="Target group connection pool settings.")
    auth: AuthConfig = setting(default_factory=AuthConfig, doc="Who may log in.")
    tls: TlsConfig = setting(default_factory=TlsConfig, doc="Client TLS.")
    admin: AdminConfig = setting(default_factory=AdminConfig, doc="Metrics and status over HTTP.")
    logging: LoggingConfig = setting(default_factory=LoggingConfig, doc="Logging.")
    monitor: MonitorConfig = setting(default_factory=MonitorConfig, doc="Topology monitor.")
    proxy: ClientSessionConfig = setting(default_factory=ClientSessionConfig,
                                         doc="Client connection setup.")
    testing: UnsafeTestingConfig = setting(
        default_factory=UnsafeTestingConfig,
        doc="Test-only switches that make the proxy unsafe on purpose, to show the harness catches it; "
            "all off by default.")

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ConfigError("endpoints", "at least one endpoint is required")
        if not self.instances:
            raise ConfigError("instances", "at least one instance is required")
        _unique("endpoints", "name", [e.name for e in self.endpoints])
        _unique("instances", "id", [i.id for i in self.instances])
        _unique("auth.users", "name", [u.name for u in self.auth.users])
        listeners = [(e.host, e.port) for e in self.endpoints if e.port != 0]
        if self.admin.port:
            listeners.append((self.admin.host, self.admin.port))
        if len(set(listeners)) != len(listeners):
            raise ConfigError("endpoints", "two listeners (endpoints or admin) use the same host and port")
        instance_ids = {i.id for i in self.instances}
        for n, endpoint in enumerate(self.endpoints):
            if endpoint.readers is None:
                continue
            if endpoint.role is not EndpointRole.READ_ONLY:
                raise ConfigError(f"endpoints[{n}].readers", "only read_only endpoints list readers")
            for reader in endpoint.readers:
                if reader not in instance_ids:
                    raise ConfigError(f"endpoints[{n}].readers", f"unknown instance id {reader!r}")
        writers = [i.id for i in self.instances if i.role is Role.WRITER]
        if len(writers) > 1:
            raise ConfigError("instances", f"at most one instance may be the writer, got {writers}")
        if self.pool.session_pinning_filters and self.engine is not Engine.MYSQL:
            raise ConfigError("pool.session_pinning_filters",
                              "session pinning filters apply to the MySQL engine only, as on RDS Proxy")
        allowed = AUTH_METHODS_BY_ENGINE[self.engine]
        for section, entries in (("auth.users", self.auth.users), ("auth.secrets", self.auth.secrets)):
            for n, entry in enumerate(entries):
                if entry.method is not None and entry.method not in allowed:
                    raise ConfigError(f"{section}[{n}].method",
                                      f"{entry.method.value!r} is not a {self.engine.value} method; "
                                      f"use one of {', '.join(m.value for m in allowed)}")
        self._check_iam()

    def _check_iam(self) -> None:
        """IAM users need keys to check their tokens against, and an engine whose login speaks IAM."""
        if not self.auth.requires_iam:
            return
        section, n = next((s, n) for s, entries in (("auth.users", self.auth.users),
                                                     ("auth.secrets", self.auth.secrets))
                          for n, e in enumerate(entries) if e.iam_auth is IamAuth.REQUIRED)
        if self.engine not in IAM_ENGINES:
            raise ConfigError(f"{section}[{n}].iam_auth",
                              f"IAM authentication is not served on {self.engine.value} by this proxy yet")
        if self.auth.iam is None or not self.auth.iam.access_keys:
            raise ConfigError("auth.iam.access_keys",
                              f"{section}[{n}] requires IAM authentication, so at least one access key whose "
                              f"tokens are accepted must be configured")

    # ---------------------------------------------------------------------------- loading

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read and validate a TOML file; errors name the file and the key."""
        path = Path(path)
        try:
            with path.open("rb") as handle:
                data = tomllib.load(handle)
        except OSError as exc:
            raise ConfigError("", f"cannot read configuration file {str(path)!r}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("", f"{path}: not valid TOML: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from plain data (as TOML gives it); unknown keys, bad types and ranges raise."""
        return _build(cls, data, "")

    def to_dict(self) -> dict[str, Any]:
        """Plain data that :meth:`from_dict` turns back into an equal configuration."""
        return _plain(self)

    def with_overrides(self, overrides: Mapping[str, Any] | None = None, /, **dotted: Any) -> Self:
        """A copy with some settings replaced, validated like a file.

        Keys are dotted paths, list items by index: ``{"pool.connection_borrow_timeout": 5,
        "endpoints.0.port": 6543}``; keyword arguments use ``__`` for the dot
        (``admin__port=9000``).  A value of None leaves the setting as it was, so unset CLI flags
        can be passed straight through.
        """
        changes = dict(overrides or {})
        changes.update({k.replace("__", "."): v for k, v in dotted.items()})
        data = self.to_dict()
        for path, value in changes.items():
            if value is not None:
                _set_path(data, path, value)
        return self.from_dict(data)

    # ---------------------------------------------------------------------------- helpers

    def auth_method(self, user: UserConfig) -> AuthMethod:
        """The client auth method in force for ``user`` (its own or the engine's default)."""
        return user.method if user.method is not None else DEFAULT_AUTH_METHOD[self.engine]

    def endpoint(self, name: str) -> EndpointConfig:
        for endpoint in self.endpoints:
            if endpoint.name == name:
                return endpoint
        raise ConfigError("endpoints", f"no endpoint named {name!r}")

    def user(self, name: str) -> UserConfig | None:
        return next((u for u in self.auth.users if u.name == name), None)

    def monitor_credentials(self) -> tuple[str, str] | None:
        """(user, password) the topology monitor logs in with: its own, else the first static user's
        database login.  None when only secrets hold logins: the monitor then uses the first secret's,
        which only a read of the secret tells (the server supplies it, read again as it rotates)."""
        if self.monitor.user is not None:
            assert self.monitor.password is not None  # enforced by MonitorConfig
            return self.monitor.user, self.monitor.password
        if self.auth.users:
            first = self.auth.users[0]
            return first.database_user, first.database_password
        if self.auth.secrets:
            return None
        raise ConfigError("monitor.user", "the monitor needs credentials: set monitor.user and "
                                          "monitor.password, or declare at least one auth user or secret")


def _unique(section: str, attribute: str, values: list[str]) -> None:
    seen: set[str] = set()
    for n, value in enumerate(values):
        if value in seen:
            raise ConfigError(f"{section}[{n}].{attribute}", f"duplicate {attribute} {value!r}")
        seen.add(value)


# ------------------------------------------------------------------------- the generic loader

def _build(cls: type, data: Any, path: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(path, f"must be a table, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = _join(path, str(unknown[0]))
        raise ConfigError(key, f"unknown setting; allowed here: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, field in fields.items():
        key = _join(path, name)
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], key)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(key, "required setting is missing")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(_join(path, exc.key), exc.message) from None


def _convert(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _convert(options[0], value, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"must be a list, got {_describe(value)}")
        item = typing.get_args(hint)[0]
        return tuple(_convert(item, v, f"{key}[{n}]") for n, v in enumerate(value))
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            raise ConfigError(key, f"must be one of {', '.join(repr(m.value) for m in hint)}, "
                                   f"got {value!r}") from None
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, got {_describe(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be a whole number, got {_describe(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"must be a number, got {_describe(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {_describe(value)}")
        if not value:
            raise ConfigError(key, "must not be empty")
        return value
    raise ConfigError(key, f"unsupported setting type {hint!r}")  # a bug in a declaration


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _join(path: str, key: str) -> str:
    if not key:
        return path
    if not path:
        return key
    return f"{path}{key}" if key.startswith("[") else f"{path}.{key}"


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if getattr(value, f.name) is not None}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node: Any = data
    for n, part in enumerate(parts):
        last = n == len(parts) - 1
        where = ".".join(parts[: n + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(where, f"no list item {part!r} (there are {len(node)})")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ConfigError(where, "cannot set a key inside a plain value")


# --------------------------------------------------------------------------- JSON schema

def json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of the configuration file, derived from the dataclasses."""
    schema = _schema_of(ProxyConfig)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "reference proxy configuration"
    return schema


def _schema_of(hint: Any, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    meta = meta or {}
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return _schema_of(next(a for a in typing.get_args(hint) if a is not type(None)), meta)
    if origin is tuple:
        return {"type": "array", "items": _schema_of(typing.get_args(hint)[0])}
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        props = {}
        required = []
        for f in dataclasses.fields(hint):
            prop = _schema_of(hints[f.name], f.metadata)
            if f.metadata.get("doc"):
                prop["description"] = f.metadata["doc"]
            if f.metadata.get("secret"):
                prop["writeOnly"] = True  # a password or key: tools must not echo it back
            if f.default is not dataclasses.MISSING and f.default is not None:
                prop["default"] = _plain(f.default)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                required.append(f.name)
            props[f.name] = prop
        result: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
        if required:
            result["required"] = required
        return result
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"enum": [m.value for m in hint]}
    kind = {bool: "boolean", int: "integer", float: "number", str: "string"}[hint]
    result = {"type": kind}
    if meta.get("minimum") is not None:
        result["minimum"] = meta["minimum"]
    if meta.get("maximum") is not None:
        result["maximum"] = meta["maximum"]
    if meta.get("choices"):
        result["enum"] = list(meta["choices"])
    return result
