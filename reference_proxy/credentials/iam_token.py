"""Checking an RDS IAM authentication token locally, with botocore's own SigV4 code.

A client of an IAM user sends, as its password, what ``generate_db_auth_token`` made: a SigV4
presigned ``GET https://<host>:<port>/?Action=connect&DBUser=<user>`` for the service ``rds-db``,
without its scheme.  AWS checks such tokens inside IAM; an imitation has no IAM, so it holds the
secret keys of the access keys it trusts and checks the signature itself: it rebuilds the request the
token must have signed (for the endpoint the client actually reached and the user it logs in as),
lets botocore compute that request's canonical form, string to sign and signature, and compares the
signature in constant time.  Nothing is sent anywhere.

Every check has its own :class:`TokenRefusal`, so a test (and the proxy's log) can tell an expired
token from a forged one; the client is only ever told RDS's one sentence for a refused token.

Tokens made with temporary credentials carry ``X-Amz-Security-Token``; it is signed like any other
parameter, so such a token passes when its access key's secret is configured, but the session token
itself is not checked against anything.
"""

from __future__ import annotations

import calendar
import enum
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

__all__ = ["MAX_TOKEN_LENGTH", "IamTokenVerifier", "TokenRefusal", "TokenVerdict"]

SERVICE = "rds-db"
ALGORITHM = "AWS4-HMAC-SHA256"
MAX_LIFETIME = 900
"""Seconds a token may declare in ``X-Amz-Expires``: ``generate_db_auth_token`` always says 900."""
MAX_TOKEN_LENGTH = 8192
"""Longer passwords are not tokens (a token with a session token is 1-2 KB)."""
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_REQUIRED = ("Action", "DBUser", "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
             "X-Amz-SignedHeaders", "X-Amz-Signature")


class TokenRefusal(str, enum.Enum):
    """Which check a token failed."""

    MALFORMED = "malformed"
    NOT_CONNECT = "not-connect"
    WRONG_USER = "wrong-user"
    WRONG_ENDPOINT = "wrong-endpoint"
    WRONG_SERVICE = "wrong-service"
    WRONG_REGION = "wrong-region"
    UNKNOWN_ACCESS_KEY = "unknown-access-key"
    LIFETIME_TOO_LONG = "lifetime-too-long"
    NOT_YET_VALID = "not-yet-valid"
    EXPIRED = "expired"
    BAD_SIGNATURE = "bad-signature"


@dataclass(frozen=True)
class TokenVerdict:
    """The outcome of one check.  ``detail`` is for the proxy's log: it never quotes the signature."""

    refusal: TokenRefusal | None
    detail: str = ""
    access_key_id: str | None = None

    @property
    def accepted(self) -> bool:
        return self.refusal is None


def _refused(refusal: TokenRefusal, detail: str, access_key_id: str | None = None) -> TokenVerdict:
    return TokenVerdict(refusal, detail, access_key_id)


class IamTokenVerifier:
    """Checks tokens against ``secret_keys`` (access key id to secret access key) for ``region``.

    ``wall_clock()`` is the time in seconds since the epoch (tokens carry UTC dates, so a monotonic
    clock will not do); ``max_clock_skew`` is how far in the future a token's date may lie.
    """

    def __init__(self, secret_keys: Mapping[str, str], *, region: str,
                 wall_clock: Callable[[], float] = time.time, max_clock_skew: float = 300.0,
                 check_expiry: bool = True) -> None:
        self._signers = {akid: Credentials(akid, secret) for akid, secret in secret_keys.items()}
        self.region = region
        self._wall_clock = wall_clock
        self._max_clock_skew = max_clock_skew
        self._check_expiry = check_expiry
        """False only under the failpoint ``iam_expiry_unchecked`` (unsafe on purpose, test only)."""

    def verify(self, token: str, *, user: str, host: str, port: int) -> TokenVerdict:
        """Check ``token`` for a client that reached ``host:port`` (the proxy endpoint's advertised
        name, as the token's maker was given it) and logs in as ``user``."""
        if len(token) > MAX_TOKEN_LENGTH:
            return _refused(TokenRefusal.MALFORMED, f"longer than {MAX_TOKEN_LENGTH} characters")
        try:
            parts = urlsplit("https://" + token)
            pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
            token_host, token_port = parts.hostname, parts.port
        except ValueError as e:
            return _refused(TokenRefusal.MALFORMED, f"not a presigned URL: {e}")
        params = dict(pairs)
        if len(params) != len(pairs):
            return _refused(TokenRefusal.MALFORMED, "a query parameter appears twice")
        missing = [name for name in _REQUIRED if name not in params]
        if missing or parts.path != "/" or parts.fragment or parts.username or parts.password:
            return _refused(TokenRefusal.MALFORMED, f"missing {', '.join(missing)}" if missing
                            else "not of the form host:port/?query")
        if params["X-Amz-Algorithm"] != ALGORITHM or params["X-Amz-SignedHeaders"] != "host":
            return _refused(TokenRefusal.MALFORMED, "not a SigV4 query signature over the host header")
        if params["Action"] != "connect":
            return _refused(TokenRefusal.NOT_CONNECT, f"Action is {params['Action']!r}, not 'connect'")
        if params["DBUser"] != user:
            return _refused(TokenRefusal.WRONG_USER, f"made for user {params['DBUser']!r}")
        if (token_host or "").lower() != host.lower() or token_port != port:
            return _refused(TokenRefusal.WRONG_ENDPOINT, f"made for {token_host}:{token_port}, "
                                                         f"not {host}:{port}")
        scope = params["X-Amz-Credential"].split("/")
        amz_date = params["X-Amz-Date"]
        if len(scope) != 5 or scope[4] != "aws4_request" or scope[1] != amz_date[:8]:
            return _refused(TokenRefusal.MALFORMED, "credential scope is not akid/date/region/service/aws4_request "
                                                    "for the token's date")
        access_key_id, _, scope_region, service, _ = scope
        if service != SERVICE:
            return _refused(TokenRefusal.WRONG_SERVICE, f"signed for service {service!r}", access_key_id)
        if scope_region != self.region:
            return _refused(TokenRefusal.WRONG_REGION, f"signed for region {scope_region!r}", access_key_id)
        signer_credentials = self._signers.get(access_key_id)
        if signer_credentials is None:
            return _refused(TokenRefusal.UNKNOWN_ACCESS_KEY, f"access key {access_key_id!r} is not trusted",
                            access_key_id)
        try:
            signed_at = calendar.timegm(time.strptime(amz_date, _AMZ_DATE))
            lifetime = int(params["X-Amz-Expires"])
        except ValueError:
            return _refused(TokenRefusal.MALFORMED, "X-Amz-Date or X-Amz-Expires is not valid", access_key_id)
        if not 0 < lifetime <= MAX_LIFETIME:
            return _refused(TokenRefusal.LIFETIME_TOO_LONG,
                            f"declares {lifetime} s of life, allowed 1 to {MAX_LIFETIME}", access_key_id)
        now = self._wall_clock()
        if signed_at - now > self._max_clock_skew:
            return _refused(TokenRefusal.NOT_YET_VALID, f"dated {signed_at - now:.0f} s in the future",
                            access_key_id)
        if now > signed_at + lifetime and self._check_expiry:
            return _refused(TokenRefusal.EXPIRED, f"expired {now - signed_at - lifetime:.0f} s ago",
                            access_key_id)
        expected = self._signature(signer_credentials, parts.netloc, pairs, amz_date)
        if not hmac.compare_digest(expected.encode(), params["X-Amz-Signature"].encode()):
            return _refused(TokenRefusal.BAD_SIGNATURE, "signature does not match", access_key_id)
        return TokenVerdict(None, "accepted", access_key_id)

    def _signature(self, credentials: Credentials, netloc: str, pairs: list[tuple[str, str]],
                   amz_date: str) -> str:
        """The signature botocore computes for the request this token must have signed: a GET of
        ``/`` on the (already checked) endpoint with every query parameter but the signature."""
        request = AWSRequest(method="GET", url=f"https://{netloc}/",
                             params=[(k, v) for k, v in pairs if k != "X-Amz-Signature"])
        request.context["timestamp"] = amz_date
        signer = SigV4QueryAuth(credentials, SERVICE, self.region, expires=MAX_LIFETIME)
        canonical = signer.canonical_request(request)
        return signer.signature(signer.string_to_sign(request, canonical), request)
