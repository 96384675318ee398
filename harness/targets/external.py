"""A proxy we do not run: known only by its writer and reader DSNs (and optionally a metrics URL).

Nothing can be failed over, crashed or inspected by the harness itself, so every guarantee that needs
control is reported as unknown for this target - unless the user supplies the control:

* ``--failover-command`` (``FAILOVER``): a shell command run at the failover fault's time
  (:mod:`harness.targets.hooks`).  With direct access to the instances the new writer is read from
  :meth:`roles`; without it the caller watches the writer endpoint until it names another instance;
* ``--rotate-command`` (``ROTATE_SECRET``): a shell command that rotates one login (``--rotate-dsn``'s,
  default the writer DSN's) to a password the harness generates and hands over in the environment;
  the harness then logs in with the new one.  It sees only when the command ran, not its steps;
* ``--iam-user`` (``IAM_AUTH``): a user that must log in with IAM tokens, signed with boto3's usual
  credentials for ``--iam-region`` and naming ``--iam-host`` (default the writer DSN's host).

Useful for PgBouncer, PgDog, ProxySQL, or a proxy on another port.  Metrics come from a Prometheus
text URL when one is given; without it the target has no metrics source and the guarantees judged
from metrics alone are unknown.

What the user can tell besides the endpoints widens what is judged:

* ``--direct-writer-dsn`` / ``--direct-reader-dsn``: the instances themselves, bypassing the proxy
  (for Aurora, the instance endpoints).  The target then offers ``DIRECT``: latency baselines,
  backend counts on the writer, and who is writer now.  Roles are never taken from which option
  named a DSN: every instance is asked its identity and whether it takes writes, each time, through
  the engine's own driver and dialect, so the answer stays right after a failover turned the
  instance of ``--direct-writer-dsn`` into a reader.
* ``--max-connections-percent`` / ``--borrow-timeout``: the proxy's pool settings as the user
  configured them (RDS Proxy's MaxConnectionsPercent and ConnectionBorrowTimeout), offered as
  ``POOL_SETTINGS``.  With ``DIRECT`` too, the pool cap on each instance is known without asking the
  proxy (:func:`harness.plugin.targets.pool_caps`), so the pool cap and the borrow timeout are judged.

This module sits above the clients in the import floors: a target known only by its endpoints
learns anything about its instances as a client does.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Collection
from typing import Any

from harness.clients.address import DIRECT_PROGRAM, Address
from harness.clients.client import SYNC_DRIVERS, identify
from harness.clients.plans import ClientError
from harness.metrics import MetricSample
from harness.targets import hooks
from harness.targets.base import (
    DIRECT_PREFIX,
    Capability,
    ControlFailed,
    Credentials,
    Endpoint,
    IamAccess,
    Target,
    TargetError,
    TargetOptions,
)
from harness.targets.masking import MASK, scrub
from harness.targets.prometheus import samples_from_text

SHOWN_KEYS = frozenset({"host", "hostaddr", "port", "user", "dbname", "database", "sslmode", "application_name",
                        "connect_timeout", "target_session_attrs", "options", "charset"})
"""DSN keys whose values are shown in messages; every other value (a password, or a misspelt
``pasword=``) is masked, since a typo must not print the secret it guards."""
_PAIR = re.compile(r"(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?P<value>'(?:[^'\\]|\\.)*'?|\S*)")


def _is_url(dsn: str) -> bool:
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", dsn) is not None


def _hidden_values(dsn: str) -> list[str]:
    """The parts of ``dsn`` a message must not show: values of keys outside :data:`SHOWN_KEYS`, the
    URL's password, and any text that is not a key=value pair at all."""
    hidden: list[str] = []
    if _is_url(dsn):
        parts = urllib.parse.urlsplit(dsn)
        userinfo = parts.netloc.rpartition("@")[0]
        if ":" in userinfo:
            hidden.append(userinfo.split(":", 1)[1])
        for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
            if key.lower() not in SHOWN_KEYS and value:
                hidden.append(value)
                hidden.append(urllib.parse.quote(value, safe=""))
        return hidden
    for m in _PAIR.finditer(dsn):
        if m.group("key").lower() not in SHOWN_KEYS and m.group("value"):
            hidden.append(m.group("value"))
            hidden.append(m.group("value").strip("'"))
    return hidden + _stray_words(dsn)


def redact_dsn(dsn: str) -> str:
    """``dsn`` with its password and every value that might be one masked, even unparsable.

    Error messages name the DSN they refuse so the user can find it, but never print the secret."""
    if _is_url(dsn):
        parts = urllib.parse.urlsplit(dsn)
        user, _, host = parts.netloc.rpartition("@")
        if ":" in user:
            user = user.split(":", 1)[0] + ":" + MASK
        query = "&".join(f"{k}={v if k.lower() in SHOWN_KEYS else MASK}"
                         for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        netloc = f"{user}@{host}" if user else host
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    shown = []
    for m in _PAIR.finditer(dsn):
        key = m.group("key")
        shown.append(f"{key}={m.group('value') if key.lower() in SHOWN_KEYS else MASK}")
    return " ".join(shown) + (f" {MASK}" if _stray_words(dsn) else "")


def _stray_words(dsn: str) -> list[str]:
    """Words of a conninfo DSN that are not key=value pairs: perhaps a password whose key went missing."""
    return _PAIR.sub(" ", dsn).split()


def dsn_secrets(dsn: str) -> list[str]:
    """Every text in ``dsn`` that may be a password (what :func:`redact_dsn` masks), longest first."""
    found = {h for h in _hidden_values(dsn) if h and h != MASK}
    found |= {urllib.parse.unquote(h) for h in found}
    return sorted(found, key=len, reverse=True)


def parse_dsn(engine: str, dsn: str, label: str = "DSN") -> tuple[str, int, Credentials]:
    """(host, port, credentials) from a PostgreSQL conninfo/URL or a mysql:// URL.

    ``label`` names the DSN in errors (``--writer-dsn``); the DSN itself is shown redacted."""
    shown = redact_dsn(dsn)
    is_mysql_url = urllib.parse.urlsplit(dsn).scheme in ("mysql", "mariadb")
    if engine == "postgres":
        if is_mysql_url:
            raise TargetError(f"{label} {shown!r} is a MySQL URL, but --engine is postgres")
        from psycopg.conninfo import conninfo_to_dict

        try:
            d = conninfo_to_dict(dsn)
        except Exception as e:  # noqa: BLE001 - psycopg raises ProgrammingError with the parse problem
            problem = scrub(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__,
                            dsn_secrets(dsn))
            raise TargetError(f"cannot parse {label} {shown!r}: {problem}") from None
        host = d.get("host", "127.0.0.1")
        try:
            port = int(d.get("port", 5432))
        except ValueError:
            raise TargetError(f"cannot parse {label} {shown!r}: port {d.get('port')!r} is not a number") from None
        user = d.get("user")
        if not user:
            raise TargetError(f"{label} {shown!r} names no user")
        return host, port, Credentials(user, d.get("password", ""), d.get("dbname", user))
    try:
        u = urllib.parse.urlsplit(dsn)
        port = u.port or 3306
    except ValueError as e:
        raise TargetError(f"cannot parse {label} {shown!r}: {scrub(str(e), dsn_secrets(dsn))}") from None
    if u.scheme not in ("mysql", "mariadb") or not u.hostname or not u.username:
        hint = " (it looks like a PostgreSQL DSN, but --engine is mysql)" if "=" in dsn and "://" not in dsn else ""
        raise TargetError(f"cannot parse {label} {shown!r}: expected mysql://user:password@host:port/database{hint}")
    return (u.hostname, port,
            Credentials(urllib.parse.unquote(u.username), urllib.parse.unquote(u.password or ""),
                        u.path.lstrip("/") or ""))


IDENTIFY_TIMEOUT_S = 5.0
MAX_BORROW_TIMEOUT_S = 3600.0
"""RDS Proxy's largest ConnectionBorrowTimeout."""


def _numbered(option: str, i: int, count: int) -> str:
    return option + (f" #{i + 1}" if count > 1 else "")


def pool_settings_from(max_connections_percent: int | None, borrow_timeout: float | None) -> dict[str, Any]:
    """The pool settings the user stated, under the reference proxy's names (RDS Proxy's
    MaxConnectionsPercent and ConnectionBorrowTimeout); a TargetError names a bad one."""
    settings: dict[str, Any] = {}
    if max_connections_percent is not None:
        if isinstance(max_connections_percent, bool) or not isinstance(max_connections_percent, int) \
                or not 1 <= max_connections_percent <= 100:
            raise TargetError(f"--max-connections-percent must be a whole number from 1 to 100, "
                              f"got {max_connections_percent!r}")
        settings["max_connections_percent"] = max_connections_percent
    if borrow_timeout is not None:
        if isinstance(borrow_timeout, bool) or not isinstance(borrow_timeout, (int, float)) \
                or not 0 < borrow_timeout <= MAX_BORROW_TIMEOUT_S:
            raise TargetError(f"--borrow-timeout must be seconds in (0, {MAX_BORROW_TIMEOUT_S:g}], got {borrow_timeout!r}")
        if max_connections_percent is None:
            raise TargetError("--borrow-timeout needs --max-connections-percent too: a borrow can only be "
                              "made to wait once every backend connection of the pool is held, so the cap "
                              "must be known")
        settings["connection_borrow_timeout"] = float(borrow_timeout)
    return settings


class ExternalTarget(Target):
    """Any proxy given by DSNs; it is assumed to be running already."""

    kind = "external"
    reachable_before_up = True

    def __init__(self, engine: str, writer_dsn: str, reader_dsns: list[str] | None = None,
                 metrics_url: str | None = None, *, direct_writer_dsn: str | None = None,
                 direct_reader_dsns: list[str] | None = None, max_connections_percent: int | None = None,
                 borrow_timeout: float | None = None) -> None:
        super().__init__(engine)
        host, port, self._credentials = parse_dsn(engine, writer_dsn, "--writer-dsn")
        self._writer = Endpoint("writer", "writer", host, port, self._credentials)
        self._readers = []
        for i, dsn in enumerate(reader_dsns or []):
            rhost, rport, rcred = parse_dsn(engine, dsn, "--reader-dsn" + (f" #{i + 1}" if reader_dsns and len(reader_dsns) > 1 else ""))
            self._readers.append(Endpoint(f"reader-{i + 1}" if i else "reader", "reader", rhost, rport, rcred))
        self._dsn_secrets = {s for d in [writer_dsn, *(reader_dsns or [])] for s in dsn_secrets(d)}
        self.metrics_url = metrics_url
        self.capabilities = frozenset({Capability.METRICS} if metrics_url else set())
        self._add_direct(direct_writer_dsn, list(direct_reader_dsns or []))
        self._add_pool_settings(max_connections_percent, borrow_timeout)
        self.control = ExternalControl()
        self._rotation_login: Credentials | None = None

    def with_control(self, control: ExternalControl) -> ExternalTarget:
        """Take the user's control (hooks, IAM user) and offer the capabilities it gives; returns self."""
        self.control = control
        if control.rotate_dsn:
            _, _, login = parse_dsn(self.engine, control.rotate_dsn, "--rotate-dsn")
            self._rotation_login = login
            self._dsn_secrets |= set(dsn_secrets(control.rotate_dsn))
        self.capabilities = self.capabilities | control.capabilities()
        return self

    def _add_direct(self, writer_dsn: str | None, reader_dsns: list[str]) -> None:
        """The instances given directly (``DIRECT``), each as an endpoint named ``direct-...``."""
        self._direct = self._direct_endpoints(self.engine, writer_dsn, reader_dsns)
        self._direct_ids: dict[str, str] = {}
        """Each direct endpoint's instance id once it answered: an instance endpoint always reaches the
        same instance, while its role is asked every time."""
        self._dsn_secrets |= {s for d in [*([writer_dsn] if writer_dsn else []), *reader_dsns] for s in dsn_secrets(d)}
        if self._direct:
            self.capabilities = self.capabilities | {Capability.DIRECT}

    def _add_pool_settings(self, max_connections_percent: int | None, borrow_timeout: float | None) -> None:
        """The pool settings the user stated (``POOL_SETTINGS``)."""
        self.pool_settings = pool_settings_from(max_connections_percent, borrow_timeout) or None
        if self.pool_settings:
            self.capabilities = self.capabilities | {Capability.POOL_SETTINGS}

    @staticmethod
    def _direct_endpoints(engine: str, writer_dsn: str | None, reader_dsns: list[str]) -> list[Endpoint]:
        if reader_dsns and not writer_dsn:
            raise TargetError("--direct-reader-dsn needs --direct-writer-dsn too: who is writer is asked of "
                              "every instance, the writer's included")
        endpoints = []
        if writer_dsn:
            host, port, cred = parse_dsn(engine, writer_dsn, "--direct-writer-dsn")
            endpoints.append(Endpoint(DIRECT_PREFIX + "writer", "writer", host, port, cred))
        for i, dsn in enumerate(reader_dsns):
            host, port, cred = parse_dsn(engine, dsn, _numbered("--direct-reader-dsn", i, len(reader_dsns)))
            name = DIRECT_PREFIX + "reader" + (f"-{i + 1}" if i else "")
            endpoints.append(Endpoint(name, "reader", host, port, cred))
        return endpoints

    @classmethod
    def from_options(cls, options: TargetOptions) -> ExternalTarget:
        if not options.writer_dsn:
            raise TargetError("--target external needs --writer-dsn (and optionally --reader-dsn, --metrics-url)")
        if options.proxy_settings:
            raise TargetError("--proxy-setting is for --target reference; an external proxy is configured "
                              "by whoever runs it")
        if options.standin:
            raise TargetError("--standin is for --target reference; an external proxy is in front of a cluster "
                              "of its own")
        if options.rotate_dsn and not options.rotate_command:
            raise TargetError("--rotate-dsn names the login --rotate-command rotates; give --rotate-command too")
        if (options.iam_region or options.iam_host) and not options.iam_user:
            raise TargetError("--iam-region/--iam-host describe the tokens of --iam-user; give --iam-user too")
        if options.hook_timeout is not None and not 0 < options.hook_timeout <= 3600:
            raise TargetError(f"--hook-timeout must be seconds in (0, 3600], got {options.hook_timeout:g}")
        target = cls(options.engine, options.writer_dsn, list(options.reader_dsns), options.metrics_url,
                     direct_writer_dsn=options.direct_writer_dsn, direct_reader_dsns=list(options.direct_reader_dsns),
                     max_connections_percent=options.max_connections_percent, borrow_timeout=options.borrow_timeout)
        if options.requires_tls:  # what the user says of the proxy; TLS-REQUIRED then judges it
            target.capabilities = target.capabilities | {Capability.REQUIRES_TLS}
        region = options.iam_region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if options.iam_user and not region:
            raise TargetError("--iam-user needs --iam-region (or $AWS_REGION) to sign its tokens for")
        return target.with_control(ExternalControl(
            failover_command=options.failover_command, rotate_command=options.rotate_command,
            rotate_dsn=options.rotate_dsn,
            hook_timeout=options.hook_timeout if options.hook_timeout is not None else hooks.DEFAULT_TIMEOUT_S,
            iam_user=options.iam_user, iam_region=region if options.iam_user else None, iam_host=options.iam_host))

    def secret_texts(self) -> list[str]:
        """The passwords, and anything in the DSNs that may be one (a DSN that parsed oddly)."""
        return sorted({*super().secret_texts(), *self._dsn_secrets}, key=len, reverse=True)

    @property
    def writer_endpoint(self) -> Endpoint:
        return self._writer

    @property
    def reader_endpoints(self) -> list[Endpoint]:
        return list(self._readers)

    @property
    def credentials(self) -> Credentials:
        return self._credentials

    @property
    def direct_endpoints(self) -> list[Endpoint]:
        return list(self._direct)

    def direct_address(self, endpoint: Endpoint) -> Address:
        """Where the harness reaches one of :attr:`direct_endpoints`, named as its own connection."""
        c = self.credentials_for(endpoint)
        return Address(self.engine, f"direct:{endpoint.name}", endpoint.host, endpoint.port, c.user, c.password,
                       c.database, self.identity_query, DIRECT_PROGRAM)

    def direct_instances(self) -> list[dict[str, Any]]:
        """Every direct DSN's instance as ``standin up --json`` lists one, its role asked now.

        ``role`` is ``writer`` or ``reader`` as the instance reports it, or ``unknown`` when it did
        not answer (a crashed instance; ``problem`` says why, without a password); its ``id`` is then
        the one it gave before, or its address if it never answered."""
        self.require(Capability.DIRECT)
        return [self._ask(e) for e in self._direct]

    def _ask(self, endpoint: Endpoint) -> dict[str, Any]:
        c = self.credentials_for(endpoint)
        entry: dict[str, Any] = {"host": endpoint.host, "port": endpoint.port, "user": c.user,
                                 "password": c.password, "database": c.database, "given_as": endpoint.role}
        try:
            instance, role = identify(self.direct_address(endpoint), timeout=IDENTIFY_TIMEOUT_S)
        except (SYNC_DRIVERS[self.engine].errors, ClientError, OSError) as e:
            problem = scrub(" ".join(str(e).split()) or type(e).__name__, self.secret_texts())
            fallback = f"{endpoint.host}:{endpoint.port}"
            return {"id": self._direct_ids.get(endpoint.name, fallback), "role": "unknown", "problem": problem,
                    **entry}
        if instance is None:
            raise TargetError(f"the instance of {self._option_of(endpoint)} names no instance (its identity "
                              f"query {self.identity_query!r} gave NULL)")
        self._direct_ids[endpoint.name] = instance
        return {"id": instance, "role": role or "unknown", **entry}

    @staticmethod
    def _option_of(endpoint: Endpoint) -> str:
        return f"--direct-{endpoint.role}-dsn {endpoint.host}:{endpoint.port}"

    def roles(self) -> dict[str, Any]:
        """Who is writer now, by every direct instance's own answer (right after a failover too).

        The writer is the instance that takes writes; if none does (a promotion under way, or the
        writer down) it is None.  Two that both take writes (a failover half done) give the first in
        the order the DSNs were given."""
        instances = self.direct_instances()
        writers = [i["id"] for i in instances if i["role"] == "writer"]
        return {"writer": writers[0] if writers else None,
                "readers": [i["id"] for i in instances if i["role"] == "reader"]}

    def metrics(self, names: Collection[str] | None = None) -> list[MetricSample]:
        self.require(Capability.METRICS)
        assert self.metrics_url is not None
        with urllib.request.urlopen(self.metrics_url, timeout=5) as resp:
            text = resp.read().decode()
        return samples_from_text(text, time.monotonic_ns(), names)

    # -- the user's control -----------------------------------------------------------------
    def failover(self, target_instance: str | None = None) -> str | None:
        """Run the failover command; the new writer from :meth:`roles` when there is direct access
        (waited for until the command's timeout), else None: the caller watches the writer endpoint."""
        self.require(Capability.FAILOVER)
        assert self.control.failover_command is not None
        before = self.roles()["writer"] if self.supports(Capability.DIRECT) else None
        wanted = {hooks.FAILOVER_TO_ENV: target_instance} if target_instance else {}
        if before is not None:
            wanted[hooks.OLD_WRITER_ENV] = before
        self.last_control = None
        outcome = hooks.run_hook("failover", self.control.failover_command, wanted=wanted,
                                 secrets=self.secret_texts(), timeout=self.control.hook_timeout)
        self.last_control = outcome.as_event()
        if before is None:
            return None
        return self._writer_other_than(before, target_instance)

    def _writer_other_than(self, before: str, wanted: str | None) -> str:
        """The writer :meth:`roles` names once it is not ``before`` (the cluster may take a moment to
        report the promotion its command asked for)."""
        deadline = time.monotonic() + self.control.hook_timeout
        while True:
            writer = self.roles()["writer"]
            if writer != before:
                if wanted and writer != wanted:
                    raise ControlFailed(f"the failover command promoted {writer}, not {wanted} as asked",
                                        {**(self.last_control or {}), "new_writer": writer})
                return writer
            if time.monotonic() >= deadline:
                raise ControlFailed(f"the failover command succeeded but {before} was still the writer "
                                    f"{self.control.hook_timeout:g} s later", dict(self.last_control or {}))
            time.sleep(0.1)

    def own_rotation_login(self) -> Credentials | None:
        if self.control.rotate_command is None:
            return None
        return self._rotation_login or self._credentials

    def rotate_login(self, user: str, new_password: str) -> None:
        """Run the rotate command with the new password in its environment; then every login of
        ``user`` this target holds is the new one, so later tests still log in."""
        self.require(Capability.ROTATE_SECRET)
        assert self.control.rotate_command is not None
        self.last_control = None
        outcome = hooks.run_hook("rotate", self.control.rotate_command,
                                 wanted={hooks.ROTATE_USER_ENV: user, hooks.NEW_PASSWORD_ENV: new_password},
                                 secrets=self.secret_texts(), timeout=self.control.hook_timeout)
        self.last_control = outcome.as_event()
        self._dsn_secrets.add(new_password)

        def renewed(c: Credentials | None) -> Credentials | None:
            return dataclasses.replace(c, password=new_password) if c is not None and c.user == user else c

        self._credentials = renewed(self._credentials) or self._credentials
        self._writer = dataclasses.replace(self._writer, credentials=renewed(self._writer.credentials))
        self._readers = [dataclasses.replace(e, credentials=renewed(e.credentials)) for e in self._readers]
        self._rotation_login = renewed(self._rotation_login)

    def iam_access(self) -> IamAccess:
        """The ``--iam-user``'s tokens for the writer endpoint; boto3's usual chain signs them."""
        self.require(Capability.IAM_AUTH)
        assert self.control.iam_user is not None and self.control.iam_region is not None
        return IamAccess(user=self.control.iam_user, host=self.control.iam_host or self._writer.host,
                         port=self._writer.port, region=self.control.iam_region)

    def describe(self) -> dict[str, Any]:
        """As every target's, with each reader DSN's own user and database (the run store keeps no password)."""
        d = super().describe()
        for entry, endpoint in zip(d["endpoints"]["readers"], self._readers, strict=True):
            if endpoint.credentials is not None:
                entry.update(user=endpoint.credentials.user, database=endpoint.credentials.database)
        d["metrics_url"] = self.metrics_url
        d["control"] = self.control.describe(self.own_rotation_login())
        d["direct"] = [{"name": e.name, "given_as": e.role, "host": e.host, "port": e.port,
                        "user": self.credentials_for(e).user, "database": self.credentials_for(e).database}
                       for e in self._direct]
        d["pool_settings"] = self.pool_settings
        return d


@dataclasses.dataclass(frozen=True)
class ExternalControl:
    """What the user gave the harness to control an external target with (see the module docstring)."""

    failover_command: str | None = None
    rotate_command: str | None = None
    rotate_dsn: str | None = dataclasses.field(default=None, repr=False)  # holds a password
    hook_timeout: float = hooks.DEFAULT_TIMEOUT_S
    iam_user: str | None = None
    iam_region: str | None = None
    iam_host: str | None = None

    def capabilities(self) -> frozenset[Capability]:
        given = {Capability.FAILOVER: self.failover_command, Capability.ROTATE_SECRET: self.rotate_command,
                 Capability.IAM_AUTH: self.iam_user}
        return frozenset(cap for cap, value in given.items() if value)

    def describe(self, rotation_login: Credentials | None) -> dict[str, Any]:
        """Which control was given (commands are named by whether they were given: they may hold secrets)."""
        return {"failover_command": self.failover_command is not None,
                "rotate_command": self.rotate_command is not None,
                "rotate_user": rotation_login.user if rotation_login is not None else None,
                "hook_timeout_s": self.hook_timeout,
                "iam": ({"user": self.iam_user, "region": self.iam_region, "host": self.iam_host}
                        if self.iam_user else None)}
