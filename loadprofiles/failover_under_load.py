"""Load profile ``failover_under_load``: Every task set; a planned failover (the registered ``failover`` fault) at 40 % of the run.

Run it with the harness (brings the target up, judges the histories)::

    aurora-harness load --profile failover_under_load --target reference --engine postgres --users 12 --run-time 60s

or with Locust itself, against a running target::

    locust -f loadprofiles/failover_under_load.py --headless -u 12 -t 60s --target reference   # after "aurora-harness up"
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

FailoverUnderLoadShape = shape_for("failover_under_load")

__all__ = ["ChurnUser", "FailoverUnderLoadShape", "LongTransactionUser", "ReadWriteUser", "ReaderUser", "SessionStateUser", "UniqueWriteUser"]
