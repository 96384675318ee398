"""Helpers for the reference proxy's MySQL integration tests: the proxy in a thread
(:mod:`proxy_support`), its configuration and PyMySQL connections to it."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from typing import Any

import proxy_support
import pymysql
from proxy_support import config_for

from reference_proxy.config import ProxyConfig

SHA2_USER = "sha2_client"
SHA2_PASSWORD = "sha2-secret"


def proxy_config(cluster, **overrides: Any) -> ProxyConfig:
    """A MySQL proxy in front of ``cluster`` (see :func:`proxy_support.config_for`)."""
    return config_for("mysql", cluster, [
        {"name": cluster.user, "password": cluster.password, "method": "mysql_native_password"},
        {"name": SHA2_USER, "password": SHA2_PASSWORD, "method": "caching_sha2_password",
         "backend_user": cluster.user, "backend_password": cluster.password},
    ], {"monitor": {"database": cluster.database}}, **overrides)


def client_tls() -> ssl.SSLContext:
    """A client TLS context that accepts the proxy's self-signed certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class RunningProxy(proxy_support.RunningProxy):
    """A started MySQL proxy; use :func:`running_proxy`."""

    def connect(self, endpoint: str = "default", *, user: str | None = None, password: str | None = None,
                tls: bool = False, **kwargs: Any) -> pymysql.connections.Connection:
        kwargs.setdefault("autocommit", True)
        kwargs.setdefault("connect_timeout", 10)
        kwargs.setdefault("database", self.cluster.database)
        options = {"ssl": client_tls()} if tls else {"ssl_disabled": True}
        return pymysql.connect(host="127.0.0.1", port=self.port(endpoint), user=user or self.cluster.user,
                               password=password if password is not None else self.cluster.password,
                               **options, **kwargs)


@contextlib.contextmanager
def running_proxy(cluster, **overrides: Any) -> Iterator[RunningProxy]:
    """Start a MySQL proxy in front of ``cluster`` with config ``overrides``; drain it on exit."""
    with proxy_support.running(proxy_config(cluster, **overrides), cluster, RunningProxy) as proxy:
        yield proxy


def connection_id(conn: pymysql.connections.Connection) -> int:
    """The backend's thread id: which pooled connection served this statement."""
    with conn.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID()")
        return cur.fetchone()[0]


def scalar(conn: pymysql.connections.Connection, sql: str) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone()
        return None if row is None else row[0]
