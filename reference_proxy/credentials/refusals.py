"""RDS Proxy's words for every credential refusal, and the error that carries them.

The texts are the ones RDS Proxy documents for its PostgreSQL-family clients; the harness and client
code match on them, so they are reproduced exactly.  A refusal names its :class:`RefusalReason` as
well, because the MySQL family words most of them as MySQL's own "Access denied" (1045) and only the
engine knows its codes: an engine maps the reason, never the text.
"""

from __future__ import annotations

import enum

from reference_proxy.contracts import ProxyError

__all__ = [
    "MYSQL_IAM_RATE_LIMIT_TEXT",
    "CredentialRefused",
    "RefusalReason",
    "refusal_text",
]


class RefusalReason(str, enum.Enum):
    """Why a login was refused for its credentials."""

    NO_CREDENTIALS = "no-credentials"
    """The proxy holds no secret for this user (or could never read it)."""
    WRONG_PASSWORD = "wrong-password"
    """The client's password does not match the user's secret."""
    UNSUPPORTED_METHOD = "unsupported-method"
    """The client asked for an authentication method RDS Proxy does not speak."""
    IAM_NEEDS_TLS = "iam-needs-tls"
    """An IAM user connected without TLS: its token would cross the network in clear."""
    IAM_TOKEN_REFUSED = "iam-token-refused"
    """The IAM token is malformed, expired, for someone or somewhere else, or badly signed."""
    IAM_TOO_MANY_COMPETING = "iam-too-many-competing"
    """Too many IAM authentications were in progress at once."""


MYSQL_IAM_RATE_LIMIT_TEXT = "IAM authentication rate limit exceeded"
"""RDS Proxy's MySQL-family text (error 1040, SQLSTATE HY000) for :attr:`RefusalReason.IAM_TOO_MANY_COMPETING`:
the one credential refusal it words differently from MySQL's "Access denied"."""


def refusal_text(reason: RefusalReason, user: str) -> str:
    """RDS Proxy's words for ``reason`` when ``user`` tried to log in."""
    if reason is RefusalReason.NO_CREDENTIALS:
        return (f"This RDS proxy has no credentials for the role {user}. Check the credentials for this role "
                f"and try again.")
    if reason is RefusalReason.WRONG_PASSWORD:
        return f"The password that was provided for the role {user} is wrong."
    if reason is RefusalReason.UNSUPPORTED_METHOD:
        return "RDS supports only IAM, MD5, or SCRAM authentication."
    if reason is RefusalReason.IAM_NEEDS_TLS:
        return "IAM authentication is allowed only with SSL connections."
    if reason is RefusalReason.IAM_TOKEN_REFUSED:
        return f"IAM authentication failed for user {user}. Check the IAM token for this user and try again."
    if reason is RefusalReason.IAM_TOO_MANY_COMPETING:
        return "The IAM authentication failed because of too many competing requests."
    raise AssertionError(f"no text for {reason!r}")


class CredentialRefused(ProxyError):
    """A login refused for its credentials.

    ``str(e)`` and ``message`` are RDS Proxy's words for the client; ``detail`` says more for the
    proxy's log (which check failed) and never holds a password or a token.
    """

    def __init__(self, reason: RefusalReason, user: str, detail: str = "") -> None:
        self.reason = reason
        self.user = user
        self.message = refusal_text(reason, user)
        self.detail = detail
        super().__init__(self.message)
