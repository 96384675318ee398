"""Load profile ``churn``: Every task set, the user count swinging between all and half every two seconds: users come and go.

Run it with the harness (brings the target up, judges the histories)::

    aurora-harness load --profile churn --target reference --engine postgres --users 12 --run-time 60s

or with Locust itself, against a running target::

    locust -f loadprofiles/churn.py --headless -u 12 -t 60s --target reference   # after "aurora-harness up"
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

ChurnShape = shape_for("churn")

__all__ = ["ChurnShape", "ChurnUser", "LongTransactionUser", "ReadWriteUser", "ReaderUser", "SessionStateUser", "UniqueWriteUser"]
