"""How a client proves its password to the proxy: RDS Proxy's ``ClientPasswordAuthType``, per user.

It lives with the credentials rather than in the configuration module because both the static users
of the configuration file and the Secrets Manager secrets carry it, and the configuration imports
the secrets' settings from this package.
"""

from __future__ import annotations

import enum

__all__ = ["AuthMethod"]


class AuthMethod(str, enum.Enum):
    """How a client proves its password (RDS ``ClientPasswordAuthType``)."""

    SCRAM_SHA_256 = "scram-sha-256"
    MD5 = "md5"
    MYSQL_NATIVE_PASSWORD = "mysql_native_password"
    CACHING_SHA2_PASSWORD = "caching_sha2_password"
