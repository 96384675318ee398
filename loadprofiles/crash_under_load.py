"""Load profile ``crash_under_load``: Every task set; the writer killed (``writer_crash``) at 30 % of the run, restarted at 60 %.

Run it with the harness (brings the target up, judges the histories)::

    aurora-harness load --profile crash_under_load --target reference --engine postgres --users 12 --run-time 60s

or with Locust itself, against a running target::

    locust -f loadprofiles/crash_under_load.py --headless -u 12 -t 60s --target reference   # after "aurora-harness up"
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

CrashUnderLoadShape = shape_for("crash_under_load")

__all__ = ["ChurnUser", "CrashUnderLoadShape", "LongTransactionUser", "ReadWriteUser", "ReaderUser", "SessionStateUser", "UniqueWriteUser"]
