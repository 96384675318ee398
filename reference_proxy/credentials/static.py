"""The users written in the configuration file, as a credential source.

Nothing here ever changes while the proxy runs (a new file means a new proxy), so every answer is
immediate and a failed backend login cannot be cured by reading again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from reference_proxy.contracts import BackendCredentials, ClientCredential
from reference_proxy.credentials.settings import IamAuth
from reference_proxy.credentials.source import IAM_METHOD, UserCredentials

if TYPE_CHECKING:
    from reference_proxy.config import ProxyConfig

__all__ = ["StaticCredentialSource"]


class StaticCredentialSource:
    """A fixed table of users; see the module docstring."""

    def __init__(self, users: Iterable[UserCredentials]) -> None:
        self._users: Mapping[str, UserCredentials] = {u.client.user: u for u in users}

    @classmethod
    def from_config(cls, config: ProxyConfig) -> StaticCredentialSource:
        """The ``[[auth.users]]`` of ``config``, each with its method or the engine's default; a user
        with ``iam_auth = required`` proves itself with a token, so its password is the database's only."""
        return cls(UserCredentials(ClientCredential(u.name, "", IAM_METHOD) if u.iam_auth is IamAuth.REQUIRED
                                   else ClientCredential(u.name, u.password, config.auth_method(u).value),
                                   BackendCredentials(u.database_user, u.database_password))
                   for u in config.auth.users)

    def cached(self, user: str) -> UserCredentials | None:
        return self._users.get(user)

    async def lookup(self, user: str) -> UserCredentials | None:
        return self._users.get(user)

    async def backend_login_failed(self, user: str, tried: BackendCredentials) -> UserCredentials | None:
        return self._users.get(user)

    async def client_login_failed(self, user: str, tried: ClientCredential) -> UserCredentials | None:
        return self._users.get(user)

    async def refresh_due(self) -> None:
        """Nothing is ever due: the table is fixed."""
