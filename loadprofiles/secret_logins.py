"""Logins that follow a target's secret, as an application reading Secrets Manager makes them.

Why: in a load run the rotation is carried out by the Locust master, while the users that log in live
in every Locust process (several machines, perhaps).  They cannot share the fault's idea of the
current login; they read the secret, as the applications the run stands for do.  So a user's "new"
login is whatever ``AWSCURRENT`` holds when it starts, and its "old" login is what the secret held
when this process's load began (before any rotation of the run): the login a rotation retires.  The
checkers' conventions are in :mod:`harness.checkers.rotation`.

No Locust here: the harness imports this module, and the unit tests drive it with a fake client.
"""

from __future__ import annotations

from typing import Any

from harness.faults.rotation import Login, read_secret_login
from harness.targets.base import Capability, Target, TargetError


class SecretLogins:
    """One process's view of the secret a single-user rotation changes."""

    def __init__(self, client: Any, secret_id: str) -> None:
        self._client, self.secret_id = client, secret_id
        self.first = self.current(generation="old")
        """What the secret held when the load began."""

    @classmethod
    def of(cls, target: Target) -> SecretLogins:
        """Follow the target's single-user secret; TargetError when the target names none (or rotates
        by a user's command, whose login the harness hands over instead of reading)."""
        target.require(Capability.ROTATE_SECRET)
        if target.own_rotation_login() is not None:
            raise TargetError("this target rotates by its own command, so no secret can be followed")
        access = target.secrets_access()
        if access.single_user is None:
            raise TargetError("the target names no secret for a single-user rotation")
        from harness.targets.aws_standin import secretsmanager_client

        return cls(secretsmanager_client(access), access.single_user)

    def current(self, generation: str = "new") -> Login:
        """The login ``AWSCURRENT`` holds now (FaultError when the secret cannot be read)."""
        value = read_secret_login(self._client, self.secret_id)
        return Login(value["username"], value["password"], generation)
