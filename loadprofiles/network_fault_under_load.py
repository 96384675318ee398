"""Load profile ``network_fault_under_load``: Every task set; the writer's path blackholed from 30 % to 50 % of the run.

The blackhole is put on the TCP relay between the proxy and the writer.  ``aurora-harness load``
starts a reference target with relays for this profile and serves them to the Locust master over a
loopback relay desk (:mod:`harness.net.relay_desk`); a target without relays (one left by
``aurora-harness up``, an external proxy) is refused with exit 2 rather than run with its fault's
guarantee unknown.

Run it with the harness (brings the target up, judges the histories)::

    aurora-harness load --profile network_fault_under_load --target reference --engine postgres --users 12 --run-time 60s

Locust itself can run it only with a record written by ``aurora-harness load`` (``--target-record``).
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
