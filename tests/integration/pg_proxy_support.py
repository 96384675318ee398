"""Helpers for the reference proxy's PostgreSQL integration tests: the proxy in a thread
(:mod:`proxy_support`), its configuration and psycopg connections to it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import proxy_support
import psycopg
from polling import eventually  # noqa: F401 - re-exported for the proxy tests
from proxy_support import config_for

from reference_proxy.config import ProxyConfig

MD5_USER = "legacy_md5"
MD5_PASSWORD = "md5-secret"


def proxy_config(cluster, **overrides: Any) -> ProxyConfig:
    """A PostgreSQL proxy in front of ``cluster`` (see :func:`proxy_support.config_for`)."""
    return config_for("postgres", cluster, [
        {"name": cluster.user, "password": cluster.password},
        {"name": MD5_USER, "password": MD5_PASSWORD, "method": "md5",
         "backend_user": cluster.user, "backend_password": cluster.password},
    ], **overrides)


class RunningProxy(proxy_support.RunningProxy):
    """A started PostgreSQL proxy; use :func:`running_proxy`."""

    def connect(self, endpoint: str = "default", *, user: str | None = None, password: str | None = None,
                **kwargs: Any) -> psycopg.Connection:
        kwargs.setdefault("autocommit", True)
        kwargs.setdefault("connect_timeout", 10)
        return psycopg.connect(host="127.0.0.1", port=self.port(endpoint), user=user or self.cluster.user,
                               password=password if password is not None else self.cluster.password,
                               dbname=self.cluster.database, **kwargs)


@contextlib.contextmanager
def running_proxy(cluster, **overrides: Any) -> Iterator[RunningProxy]:
    """Start a PostgreSQL proxy in front of ``cluster`` with config ``overrides``; drain it on exit."""
    with proxy_support.running(proxy_config(cluster, **overrides), cluster, RunningProxy) as proxy:
        yield proxy


def backend_pid(conn: psycopg.Connection) -> int:
    return conn.execute("select pg_backend_pid()", prepare=False).fetchone()[0]
