"""Which values of a description are secrets, and a copy of it with them hidden.

Descriptions of targets and clusters (``describe()``, the run directory's ``target.json``, what
``up`` and ``status`` print) carry credentials next to everything else.  Secrets are recognised by
their key's name, not by a list of known fields, so that a field added later (an IAM secret key, a
session token) is hidden without anyone remembering to list it: any key naming a password, a
secret, a token or a private key holds one, unless its name says it holds only a reference to one
(``secret_id``, ``secret_arn``, ``key_file``...).  Containers are walked, never hidden whole: the
``secrets`` map of secret ids to user names stays readable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["REDACTED", "is_secret_key", "redact"]

REDACTED = "(redacted)"

_SECRET_WORDS = re.compile(r"password|passwd|passphrase|secret|token|private_?key", re.IGNORECASE)
_REFERENCE_SUFFIXES = ("_id", "_ids", "_arn", "_arns", "_url", "_file", "_path", "_name", "_names", "_ttl")


def is_secret_key(key: str) -> bool:
    """Whether a value stored under ``key`` is a secret (see the module docstring)."""
    lowered = key.lower()
    return bool(_SECRET_WORDS.search(lowered)) and not lowered.endswith(_REFERENCE_SUFFIXES)


def redact(value: Any) -> Any:
    """A copy of ``value`` with every non-empty text or number under a secret key replaced."""
    if isinstance(value, Mapping):
        return {k: (REDACTED if isinstance(k, str) and is_secret_key(k) and _is_scalar(v) and v not in ("", None)
                    else redact(v))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, bytes, int, float)) and not isinstance(value, bool)
