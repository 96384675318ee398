"""Masking secrets in text the harness shows: error messages, reports, a hook's output.

One rule for every place a password might leak: a DSN's refusal message, pytest's tracebacks, the
tail of a user's failover or rotate command.
"""

from __future__ import annotations

import re

MASK = "***"
SHORT_SECRET = 6
"""A secret shorter than this is masked only where it stands as a word of its own (a two-letter
password masked everywhere would mangle every word that contains it)."""


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every one of ``secrets`` masked."""
    for secret in sorted(secrets, key=len, reverse=True):
        if not secret:
            continue
        if len(secret) >= SHORT_SECRET:
            text = text.replace(secret, MASK)
        else:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", MASK, text)
    return text
