"""Load profile ``spike``: Every task set; a fifth of the users, then all of them at once for a fifth of the run, then a fifth again.

Run it with the harness (brings the target up, judges the histories)::

    aurora-harness load --profile spike --target reference --engine postgres --users 12 --run-time 60s

or with Locust itself, against a running target::

    locust -f loadprofiles/spike.py --headless -u 12 -t 60s --target reference   # after "aurora-harness up"
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

SpikeShape = shape_for("spike")

__all__ = ["ChurnUser", "LongTransactionUser", "ReadWriteUser", "ReaderUser", "SessionStateUser", "SpikeShape", "UniqueWriteUser"]
