"""Load profile ``step``: Every task set, the user count rising in four equal steps.

Run it with the harness (brings the target up, judges the histories)::

    aurora-harness load --profile step --target reference --engine postgres --users 12 --run-time 60s

or with Locust itself, against a running target::

    locust -f loadprofiles/step.py --headless -u 12 -t 60s --target reference   # after "aurora-harness up"
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

StepShape = shape_for("step")

__all__ = ["ChurnUser", "LongTransactionUser", "ReadWriteUser", "ReaderUser", "SessionStateUser", "StepShape", "UniqueWriteUser"]
