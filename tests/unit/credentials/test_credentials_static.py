"""The configuration file's users as a credential source, for both engines."""

from __future__ import annotations

import asyncio

from reference_proxy.config import ProxyConfig
from reference_proxy.contracts import BackendCredentials, ClientCredential
from reference_proxy.credentials.static import StaticCredentialSource


def config(engine: str) -> ProxyConfig:
    return ProxyConfig.from_dict({
        "engine": engine,
        "endpoints": [{"name": "default", "port": 0}],
        "instances": [{"id": "instance-1", "port": 5432}],
        "auth": {"users": [
            {"name": "app", "password": "app-pw"},
            {"name": "legacy", "password": "legacy-pw",
             "method": "md5" if engine == "postgres" else "mysql_native_password",
             "backend_user": "legacy_db", "backend_password": "legacy-db-pw"},
        ]},
    })


def test_postgres_users_get_scram_by_default_and_their_backend_login() -> None:
    src = StaticCredentialSource.from_config(config("postgres"))
    app = src.cached("app")
    assert app.client == ClientCredential("app", "app-pw", "scram-sha-256")
    assert app.backend == BackendCredentials("app", "app-pw") and not app.requires_iam
    legacy = src.cached("legacy")
    assert legacy.client == ClientCredential("legacy", "legacy-pw", "md5")
    assert legacy.backend == BackendCredentials("legacy_db", "legacy-db-pw")


def test_mysql_users_get_caching_sha2_by_default() -> None:
    src = StaticCredentialSource.from_config(config("mysql"))
    assert src.cached("app").client.method == "caching_sha2_password"
    assert src.cached("legacy").client.method == "mysql_native_password"


def test_answers_are_the_same_sync_or_async_and_never_change() -> None:
    src = StaticCredentialSource.from_config(config("postgres"))
    app = src.cached("app")

    async def ask():
        return (await src.lookup("app"), await src.backend_login_failed("app", app.backend),
                await src.lookup("nobody"))

    looked_up, after_failure, unknown = asyncio.run(ask())
    assert looked_up == app and after_failure == app and unknown is None
    assert asyncio.run(src.client_login_failed("app", app.client)) == app
    assert src.cached("nobody") is None


def test_nothing_is_ever_due() -> None:
    src = StaticCredentialSource.from_config(config("postgres"))
    asyncio.run(src.refresh_due())
    assert src.cached("app").client.password == "app-pw"
