"""Load profile ``network_fault_under_load``: Every task set; the writer's path blackholed from 30 % to 50 % of the run.

Refused for now, by ``aurora-harness load`` and by Locust itself (exit 2, see
:meth:`loadprofiles.profiles.Profile.refusal`): the blackhole needs the TCP relays between the proxy and
the instances, which live in the process that starts the target, not in the Locust process that
carries out the run's faults.

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
