"""Static users and Secrets Manager users behind one source."""

from __future__ import annotations

import asyncio

from conftest import login_secret

from reference_proxy.contracts import BackendCredentials, ClientCredential
from reference_proxy.credentials.combined import CombinedCredentialSource
from reference_proxy.credentials.secrets_manager import SecretsManagerSource
from reference_proxy.credentials.settings import SecretConfig, SecretsManagerSettings
from reference_proxy.credentials.source import UserCredentials
from reference_proxy.credentials.static import StaticCredentialSource


def static(user: str, password: str) -> StaticCredentialSource:
    return StaticCredentialSource([UserCredentials(ClientCredential(user, password, "md5"),
                                                   BackendCredentials(user, password))])


def test_each_user_is_answered_by_the_first_source_that_knows_it(secretsmanager, clock) -> None:
    secretsmanager.create_secret(Name="db/app", SecretString=login_secret("app", "from-secret"))
    secretsmanager.create_secret(Name="db/shadowed", SecretString=login_secret("admin", "from-secret"))
    managed = SecretsManagerSource(secretsmanager, (SecretConfig("db/app"), SecretConfig("db/shadowed")),
                                   default_method="md5", clock=clock,
                                   settings=SecretsManagerSettings(refresh_min_interval=1.0))
    both = CombinedCredentialSource([static("admin", "from-file"), managed])

    async def scenario():
        app = await both.lookup("app")
        admin = await both.lookup("admin")
        unknown = await both.lookup("nobody")
        secretsmanager.put_secret_value(SecretId="db/app", SecretString=login_secret("app", "rotated"))
        clock.advance(1.0)
        after_failure = await both.backend_login_failed("app", app.backend)
        await both.refresh_due()
        return app, admin, unknown, after_failure

    app, admin, unknown, after_failure = asyncio.run(scenario())
    assert app.client.password == "from-secret" and admin.client.password == "from-file" and unknown is None
    assert after_failure.backend.password == "rotated"
    assert both.cached("app").backend.password == "rotated" and both.cached("admin").client.password == "from-file"
    assert asyncio.run(both.client_login_failed("admin", admin.client)) == admin
    assert asyncio.run(both.backend_login_failed("nobody", BackendCredentials("nobody", "x"))) is None
