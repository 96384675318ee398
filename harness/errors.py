"""The harness's root exception.

Each harness package keeps its own root error (stand-ins, history, targets, relay, checkers,
clients, faults) so that callers can catch one package's failures precisely; all of them derive
from :class:`HarnessError`, so the command line and the pytest plugin can catch "anything the
harness reported on purpose" in one place and let genuine bugs surface as tracebacks.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Root of every error the harness raises deliberately (bad input, a failed stand-in, ...)."""
