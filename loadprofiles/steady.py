"""Load profile ``steady``: Every task set at a constant user count.

Run it with the harness (brings the target up, judges the histories)::

    aurora-harness load --profile steady --target reference --engine postgres --users 12 --run-time 60s

or with Locust itself, against a running target::

    locust -f loadprofiles/steady.py --headless -u 12 -t 60s --target reference   # after "aurora-harness up"
"""

from loadprofiles.shapes import shape_for
from loadprofiles.users import (
    ChurnUser,
    LongTransactionUser,
    ReaderUser,
    ReadWriteUser,
    SessionStateUser,
    UniqueWriteUser,
)

SteadyShape = shape_for("steady")

__all__ = ["ChurnUser", "LongTransactionUser", "ReadWriteUser", "ReaderUser", "SessionStateUser", "SteadyShape", "UniqueWriteUser"]
