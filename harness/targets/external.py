"""A proxy we do not run: known only by its writer and reader DSNs (and optionally a metrics URL).

Nothing can be failed over, crashed or inspected, so every guarantee that needs control is reported
as unknown for this target.  Useful for PgBouncer, PgDog, ProxySQL, or a proxy on another port.
Metrics come from a Prometheus text URL when one is given; without it the target has no metrics
source and the guarantees judged from metrics alone are unknown.
"""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
from collections.abc import Collection
from typing import Any

from harness.metrics import MetricSample
from harness.targets.base import Capability, Credentials, Endpoint, Target, TargetError, TargetOptions
from harness.targets.prometheus import samples_from_text


def parse_dsn(engine: str, dsn: str) -> tuple[str, int, Credentials]:
    """(host, port, credentials) from a PostgreSQL conninfo/URL or a mysql:// URL."""
    if engine == "postgres":
        from psycopg.conninfo import conninfo_to_dict

        try:
            d = conninfo_to_dict(dsn)
        except Exception as e:  # noqa: BLE001 - psycopg raises ProgrammingError with the parse problem
            raise TargetError(f"cannot parse DSN {dsn!r}: {e}") from None
        host, port = d.get("host", "127.0.0.1"), int(d.get("port", 5432))
        user = d.get("user")
        if not user:
            raise TargetError(f"DSN {dsn!r} names no user")
        return host, port, Credentials(user, d.get("password", ""), d.get("dbname", user))
    u = urllib.parse.urlsplit(dsn)
    if u.scheme not in ("mysql", "mariadb") or not u.hostname or not u.username:
        raise TargetError(f"cannot parse DSN {dsn!r}: expected mysql://user:password@host:port/database")
    return (u.hostname, u.port or 3306,
            Credentials(urllib.parse.unquote(u.username), urllib.parse.unquote(u.password or ""),
                        u.path.lstrip("/") or ""))


class ExternalTarget(Target):
    """Any proxy given by DSNs; it is assumed to be running already."""

    kind = "external"

    def __init__(self, engine: str, writer_dsn: str, reader_dsns: list[str] | None = None,
                 metrics_url: str | None = None) -> None:
        super().__init__(engine)
        host, port, self._credentials = parse_dsn(engine, writer_dsn)
        self._writer = Endpoint("writer", "writer", host, port)
        self._readers = []
        for i, dsn in enumerate(reader_dsns or []):
            rhost, rport, _ = parse_dsn(engine, dsn)
            self._readers.append(Endpoint(f"reader-{i + 1}" if i else "reader", "reader", rhost, rport))
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
        d = super().describe()
        d["metrics_url"] = self.metrics_url
        return d
