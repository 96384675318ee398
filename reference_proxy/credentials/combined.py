"""Several credential sources as one: each user is answered by the first source that knows it.

The configuration chooses a source per user (static users written in the file, users whose secrets
live in Secrets Manager); the engines still ask one :class:`~.source.CredentialSource`.  Sources are
asked in order, so a static user shadows a secret naming the same user.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from reference_proxy.contracts import BackendCredentials, ClientCredential
from reference_proxy.credentials.source import CredentialSource, UserCredentials

__all__ = ["CombinedCredentialSource"]


class CombinedCredentialSource:
    """The first answer of ``sources``, in order; see the module docstring."""

    def __init__(self, sources: Sequence[CredentialSource]) -> None:
        self._sources = tuple(sources)

    def cached(self, user: str) -> UserCredentials | None:
        return next((found for s in self._sources if (found := s.cached(user)) is not None), None)

    async def lookup(self, user: str) -> UserCredentials | None:
        for source in self._sources:
            found = await source.lookup(user)
            if found is not None:
                return found
        return None

    async def backend_login_failed(self, user: str, tried: BackendCredentials) -> UserCredentials | None:
        owner = self._owner(user)
        return None if owner is None else await owner.backend_login_failed(user, tried)

    async def client_login_failed(self, user: str, tried: ClientCredential) -> UserCredentials | None:
        owner = self._owner(user)
        return None if owner is None else await owner.client_login_failed(user, tried)

    async def refresh_due(self) -> None:
        await asyncio.gather(*(s.refresh_due() for s in self._sources))

    def _owner(self, user: str) -> CredentialSource | None:
        """The source answering for ``user`` now (a failure is re-read where the answer came from)."""
        return next((s for s in self._sources if s.cached(user) is not None), None)
