"""The configuration file's credential sections, declared once (default, meaning, range).

They mirror RDS Proxy's ``Auth`` entries (one per secret: ``SecretArn``, ``IAMAuth``,
``ClientPasswordAuthType``) plus what a local imitation needs that AWS keeps to itself: how long a
secret read is trusted, and the access keys an IAM token may be signed with.  The configuration
module composes them into ``[auth]``; nothing here imports it.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence

from reference_proxy.contracts import ConfigError
from reference_proxy.credentials.methods import AuthMethod
from reference_proxy.settings_fields import check_ranges, setting

__all__ = [
    "MAX_SECRETS",
    "IamAccessKey",
    "IamAuth",
    "IamSettings",
    "SecretConfig",
    "SecretsManagerSettings",
    "check_secrets",
]

MAX_SECRETS = 200
"""RDS Proxy reads at most 200 secrets (its ``Auth`` list holds at most 200 entries)."""

MAX_TOKEN_LIFETIME = 900.0
"""Seconds an IAM token lives at most: ``generate_db_auth_token`` signs every token for 900 s."""


class IamAuth(str, enum.Enum):
    """RDS ``IAMAuth`` for one user: whether its clients must log in with an IAM token."""

    DISABLED = "disabled"
    REQUIRED = "required"


@dataclasses.dataclass(frozen=True)
class SecretConfig:
    """One Secrets Manager secret holding one database user's ``username`` and ``password``."""

    secret_id: str = setting(doc="The secret's ARN or name (RDS SecretArn).")
    method: AuthMethod | None = setting(
        None, doc="ClientPasswordAuthType for this user; default: the engine's (scram-sha-256 or "
                  "caching_sha2_password).")
    iam_auth: IamAuth = setting(IamAuth.DISABLED,
                                doc="required: clients log in with an IAM token instead of the password.")


@dataclasses.dataclass(frozen=True)
class SecretsManagerSettings:
    """How the proxy reaches Secrets Manager and how long it trusts what it read."""

    region: str | None = setting(None, doc="AWS region of the secrets; default: the AWS SDK's own choice.")
    endpoint_url: str | None = setting(None, doc="Secrets Manager endpoint; default: AWS's (set it for a "
                                                 "local imitation of AWS).")
    cache_ttl: float = setting(60.0, minimum=0.0, maximum=86400.0,
                               doc="Seconds a secret read is used before the next login reads it again.")
    refresh_min_interval: float = setting(
        1.0, minimum=0.0, maximum=3600.0,
        doc="Seconds between two reads of one secret caused by failures (a backend login refused, a "
            "read that failed): bounds the calls to AWS during a rotation or an outage.")

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclasses.dataclass(frozen=True)
class IamAccessKey:
    """An access key whose IAM tokens the proxy accepts; the proxy checks signatures with its secret."""

    access_key_id: str = setting(doc="The access key id (AKID) tokens name in their credential.")
    secret_access_key: str = setting(doc="Its secret access key.", secret=True)

    def __repr__(self) -> str:
        return f"IamAccessKey(access_key_id={self.access_key_id!r}, secret_access_key=<hidden>)"


@dataclasses.dataclass(frozen=True)
class IamSettings:
    """Checking IAM tokens locally, in place of AWS."""

    region: str = setting("us-east-1", doc="The region tokens must be signed for.")
    access_keys: tuple[IamAccessKey, ...] = setting(default_factory=tuple,
                                                    doc="Access keys whose tokens are accepted.")
    max_concurrent_authentications: int = setting(
        200, minimum=1, maximum=100000,
        doc="IAM authentications in progress at once before the next is refused with RDS's 'too many "
            "competing requests' (RDS has such a limit and does not publish it).")
    max_clock_skew: float = setting(300.0, minimum=0.0, maximum=MAX_TOKEN_LIFETIME,
                                    doc="Seconds a token's date may lie in the future (the signer's clock "
                                        "ahead of the proxy's).")

    def __post_init__(self) -> None:
        check_ranges(self)
        ids = [k.access_key_id for k in self.access_keys]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ConfigError("access_keys", f"access key ids must be unique, repeated: {duplicates}")

    def secret_keys(self) -> dict[str, str]:
        """Access key id to secret access key, as the token verifier takes them."""
        return {k.access_key_id: k.secret_access_key for k in self.access_keys}


def check_secrets(secrets: Sequence[SecretConfig], key: str = "auth.secrets") -> None:
    """Refuse more secrets than RDS Proxy reads, and a secret named twice."""
    if len(secrets) > MAX_SECRETS:
        raise ConfigError(key, f"at most {MAX_SECRETS} secrets, as RDS Proxy, got {len(secrets)}")
    ids = [s.secret_id for s in secrets]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(key, f"each secret may be listed once, repeated: {duplicates}")
