"""Load profile ``network_fault_under_load``: Every task set; the writer"s path blackholed from 30 % to 50 % of the run
(needs a target with relays, NETWORK_FAULTS; otherwise its verdict is unknown).

Run it with the harness (brings the target up, judges the histories)::

    aurora-harness load --profile network_fault_under_load --target reference --engine postgres --users 12 --run-time 60s

or with Locust itself, against a running target::

    locust -f loadprofiles/network_fault_under_load.py --headless -u 12 -t 60s --target reference   # after "aurora-harness up"
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

NetworkFaultUnderLoadShape = shape_for("network_fault_under_load")

__all__ = ["ChurnUser", "LongTransactionUser", "NetworkFaultUnderLoadShape", "ReadWriteUser", "ReaderUser", "SessionStateUser", "UniqueWriteUser"]
