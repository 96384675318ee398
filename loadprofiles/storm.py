"""Load profile ``storm``: Connect-query-disconnect users, all spawned in the first second (a connection storm), then held.

Run it with the harness (brings the target up, judges the histories)::

    aurora-harness load --profile storm --target reference --engine postgres --users 12 --run-time 60s

or with Locust itself, against a running target::

    locust -f loadprofiles/storm.py --headless -u 12 -t 60s --target reference   # after "aurora-harness up"
"""

from loadprofiles.shapes import shape_for
from loadprofiles.users import ChurnUser

StormShape = shape_for("storm")

__all__ = ["ChurnUser", "StormShape"]
