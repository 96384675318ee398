"""Load profile ``rotation_under_load``: Every task set, plus sessions held open and logins that follow the secret; a single-user rotation of the secret at 40 % of the run.

The master rotates the target's single-user secret in the four real steps (createSecret, setSecret,
testSecret, finishSecret) with boto3; every process's users read the secret themselves
(:mod:`loadprofiles.secret_logins`), so a run over several machines sees the rotation as its
applications would.  Judged: ROTATION-SESSIONS-KEPT, ROTATION-NEW-LOGINS, ROTATION-OLD-PASSWORD beside
the steady guarantees.  Needs a target that can rotate its secrets (the reference target, whose
secrets live in its AWS stand-in).

Run it with the harness (brings the target up, judges the histories)::

    aurora-harness load --profile rotation_under_load --target reference --engine postgres --users 12 --run-time 60s

or with Locust itself, against a running target::

    locust -f loadprofiles/rotation_under_load.py --headless -u 12 -t 60s --target reference   # after "aurora-harness up"
"""

from loadprofiles.shapes import shape_for
from loadprofiles.users import (
    ChurnUser,
    HeldSessionUser,
    LongTransactionUser,
    ReaderUser,
    ReadWriteUser,
    SecretLoginUser,
    SessionStateUser,
    UniqueWriteUser,
)

RotationUnderLoadShape = shape_for("rotation_under_load")

__all__ = ["ChurnUser", "HeldSessionUser", "LongTransactionUser", "ReadWriteUser", "ReaderUser",
           "RotationUnderLoadShape", "SecretLoginUser", "SessionStateUser", "UniqueWriteUser"]
