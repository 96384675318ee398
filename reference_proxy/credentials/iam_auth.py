"""An IAM login's steps, the same for every engine: TLS first, a slot, then the token.

An engine's login, on meeting a user whose credential method is IAM, calls :meth:`IamAuthenticator.begin`
before it asks the client for its password (PostgreSQL: AuthenticationCleartextPassword; MySQL: a switch
to ``mysql_clear_password``), and :meth:`IamAttempt.finish` with the password that comes back.  Either
step raises :class:`~.refusals.CredentialRefused` with RDS Proxy's reason and words:

* no TLS: the token, a bearer credential for 15 minutes, would cross the network in clear
  (RDS: "IAM authentication is allowed only with SSL connections.");
* too many IAM authentications in progress (:mod:`.iam_limit`);
* the token refused by :class:`~.iam_token.IamTokenVerifier`, the failed check kept as ``detail``.

The token is checked once, at login: a session outlives its token, as on RDS.
"""

from __future__ import annotations

from reference_proxy.credentials.iam_limit import IamAuthLimiter, IamAuthSlot
from reference_proxy.credentials.iam_token import IamTokenVerifier, TokenVerdict
from reference_proxy.credentials.refusals import CredentialRefused, RefusalReason

__all__ = ["IamAttempt", "IamAuthenticator"]


class IamAttempt:
    """One IAM login between asking for the token and judging it; holds a limiter slot meanwhile."""

    def __init__(self, authenticator: IamAuthenticator, user: str, slot: IamAuthSlot) -> None:
        self._authenticator = authenticator
        self.user = user
        self._slot = slot
        self.verdict: TokenVerdict | None = None

    def finish(self, token: str, *, host: str, port: int) -> TokenVerdict:
        """Judge the client's token for the endpoint ``host:port`` it reached; the slot is given back
        either way.  Returns the (accepted) verdict, or raises CredentialRefused."""
        try:
            self.verdict = self._authenticator.verifier.verify(token, user=self.user, host=host, port=port)
        finally:
            self._slot.release()
        if not self.verdict.accepted:
            raise CredentialRefused(RefusalReason.IAM_TOKEN_REFUSED, self.user,
                                    f"{self.verdict.refusal.value}: {self.verdict.detail}")
        return self.verdict

    def abandon(self) -> None:
        """The client left (or failed otherwise) before sending a token: give the slot back."""
        self._slot.release()


class IamAuthenticator:
    """What every engine's IAM login shares: the verifier, the limiter and the TLS rule."""

    def __init__(self, verifier: IamTokenVerifier, limiter: IamAuthLimiter) -> None:
        self.verifier = verifier
        self.limiter = limiter

    def begin(self, user: str, *, tls: bool) -> IamAttempt:
        """Start an IAM login for ``user`` on a connection that does (or does not) use TLS."""
        if not tls:
            raise CredentialRefused(RefusalReason.IAM_NEEDS_TLS, user, "IAM login without TLS")
        slot = self.limiter.try_acquire()
        if slot is None:
            raise CredentialRefused(RefusalReason.IAM_TOO_MANY_COMPETING, user,
                                    f"{self.limiter.max_concurrent} IAM authentications already in progress")
        return IamAttempt(self, user, slot)
