"""A proxy we do not run: known only by its writer and reader DSNs (and optionally a metrics URL).

Nothing can be failed over, crashed or inspected, so every guarantee that needs control is reported
as unknown for this target.  Useful for PgBouncer, PgDog, ProxySQL, or a proxy on another port.
Metrics come from a Prometheus text URL when one is given; without it the target has no metrics
source and the guarantees judged from metrics alone are unknown.
"""

from __future__ import annotations

import re
import time
import urllib.parse
import urllib.request
from collections.abc import Collection
from typing import Any

from harness.metrics import MetricSample
from harness.targets.base import Capability, Credentials, Endpoint, Target, TargetError, TargetOptions
from harness.targets.prometheus import samples_from_text

MASK = "***"
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


SHORT_SECRET = 6
"""A secret shorter than this is masked only where it stands as a word of its own (a two-letter
password masked everywhere would mangle every word that contains it)."""


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every one of ``secrets`` masked."""
    for secret in sorted(secrets, key=len, reverse=True):
        if not secret:
            continue
        if len(secret) >= SHORT_SECRET:
            text = text.replace(secret, MASK)
        else:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", MASK, text)
    return text


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


class ExternalTarget(Target):
    """Any proxy given by DSNs; it is assumed to be running already."""

    kind = "external"
    reachable_before_up = True

    def __init__(self, engine: str, writer_dsn: str, reader_dsns: list[str] | None = None,
                 metrics_url: str | None = None) -> None:
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

    @classmethod
    def from_options(cls, options: TargetOptions) -> ExternalTarget:
        if not options.writer_dsn:
            raise TargetError("--target external needs --writer-dsn (and optionally --reader-dsn, --metrics-url)")
        if options.proxy_settings:
            raise TargetError("--proxy-setting is for --target reference; an external proxy is configured "
                              "by whoever runs it")
        return cls(options.engine, options.writer_dsn, list(options.reader_dsns), options.metrics_url)

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

    def metrics(self, names: Collection[str] | None = None) -> list[MetricSample]:
        self.require(Capability.METRICS)
        assert self.metrics_url is not None
        with urllib.request.urlopen(self.metrics_url, timeout=5) as resp:
            text = resp.read().decode()
        return samples_from_text(text, time.monotonic_ns(), names)

    def describe(self) -> dict[str, Any]:
        """As every target's, with each reader DSN's own user and database (the run store keeps no password)."""
        d = super().describe()
        for entry, endpoint in zip(d["endpoints"]["readers"], self._readers, strict=True):
            if endpoint.credentials is not None:
                entry.update(user=endpoint.credentials.user, database=endpoint.credentials.database)
        d["metrics_url"] = self.metrics_url
        return d
