"""The one question every engine's login asks about a user, whatever holds the answer.

For a user name a :class:`CredentialSource` says two things at once, because RDS Proxy keeps them in
one secret: how the user's clients must prove themselves to the proxy (a password with a method, or
an IAM token) and which login the proxy uses towards the database on their behalf.

The interface is asynchronous where an answer may need I/O (a secret read from AWS) and offers a
synchronous :meth:`~CredentialSource.cached` view for code that cannot wait.  A source never drops a
connection: when a secret changes, sessions already logged in and backend connections already open
keep going, and only new logins see the new values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from reference_proxy.contracts import BackendCredentials, ClientCredential

__all__ = ["IAM_METHOD", "CredentialSource", "UserCredentials"]

IAM_METHOD = "iam"
"""The :attr:`ClientCredential.method` of a user whose clients must send an IAM token as their
password (RDS ``IAMAuth = REQUIRED``).  Such a credential's ``password`` is empty: no password the
client could send proves anything for it.  An engine that does not speak IAM refuses the method like
any other it does not know."""


@dataclass(frozen=True)
class UserCredentials:
    """What the proxy knows about one user: the client's proof, and the database login."""

    client: ClientCredential
    backend: BackendCredentials

    @property
    def requires_iam(self) -> bool:
        return self.client.method == IAM_METHOD


class CredentialSource(Protocol):
    """Answers, per user: how may a client log in as ``user``, and as whom does the proxy log in?"""

    def cached(self, user: str) -> UserCredentials | None:
        """What is known about ``user`` right now, without any I/O; None: nothing (yet)."""
        ...

    async def lookup(self, user: str) -> UserCredentials | None:
        """The current credentials of ``user``, read again first if the held copy is older than the
        source allows.  None means the proxy has no credentials for this user
        (:attr:`~reference_proxy.credentials.refusals.RefusalReason.NO_CREDENTIALS`)."""
        ...

    async def backend_login_failed(self, user: str, tried: BackendCredentials) -> UserCredentials | None:
        """The database refused ``tried`` for ``user``: read the user's credentials again if the source
        can and may, and return what is current now.  Getting ``tried`` back means retrying is
        pointless for now; a source bounds how often one user's failures cause a read, so a storm of
        failed backend logins never becomes a storm of reads."""
        ...

    async def client_login_failed(self, user: str, tried: ClientCredential) -> UserCredentials | None:
        """A client's proof did not match ``tried``: perhaps the secret was rotated and the client
        already uses the new password.  Read again as :meth:`backend_login_failed` does; the engine
        then checks the proof again when its method allows (MD5, a cleartext password), or refuses
        and lets the client's retry meet the new secret (SCRAM's exchange cannot be redone)."""
        ...

    async def refresh_due(self) -> None:
        """Read again whatever is older than the source allows, for every user.  Run periodically, it
        keeps :meth:`cached` current for code that cannot wait for :meth:`lookup`."""
        ...
