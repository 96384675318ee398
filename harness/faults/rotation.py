"""Credential rotation as a fault: a secret's password (or user) changes behind the proxy.

A rotation is driven the way a Secrets Manager rotation function drives one, with boto3 against the
target's Secrets Manager (a local stand-in or a real account: :meth:`Target.secrets_access`) and the
database's own password change (:meth:`Target.set_database_password`), so the same fault runs against
AWS.  Three strategies:

* ``single_user`` - the four real steps on one user: createSecret (a new version with a new password,
  staged ``AWSPENDING``), setSecret (the database's password changes), testSecret (a direct login with
  the pending password), finishSecret (``AWSCURRENT`` moves to the new version).  Between setSecret
  and finishSecret the database has the new password and the secret still the old one: the window in
  which a proxy that reads only ``AWSCURRENT`` cannot open backend connections.
* ``alternating_users`` - the same steps, but the new version names the *other* of two database users
  (with a new password for it), as the alternating-users rotation does; the old user keeps working in
  the database, but the secret no longer names it.
* ``database_first`` - the order operators get wrong: the database's password changes, and only then
  is the secret updated (``put_secret_value``, which makes the new value current at once); no pending
  version, no test.

A target whose rotation is a user's command (:meth:`Target.own_rotation_login`, an external proxy
given ``--rotate-command``) does all four steps itself, in one call: the harness generates the new
password, hands it over and sees only when the command ran.  Only ``single_user`` can be asked of
it.  Its ``finishSecret`` event is recorded when the command returns (the latest instant the step
can have happened), and the end event lists the steps the harness could not observe.

Each step's instant is an event ``rotation_step`` (value: the step's name) inside the fault's window,
so checkers find setSecret and finishSecret; ``database_first`` records setSecret and finishSecret
too.  ``window_seconds`` is how long the rotation waits between testSecret (or setSecret) and
finishSecret, as the invocations of a rotation function are apart.

The steps run in a background thread from :meth:`start`, so that a suite keeps its clients busy
meanwhile; :meth:`wait` waits for finishSecret, :meth:`stop` writes the end event.  Clients that
behave like applications reading the secret log in with :meth:`current_login`, which switches to
the new login at the finishSecret instant.  No password is ever written into the history.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import threading
import time
import uuid
from typing import Any

from harness.checkers.rotation import FINISH_STEP, FINISH_WITHIN_KEY, ROTATION_FAULT, SET_STEP, STEP_EVENT
from harness.faults.base import Fault, FaultError, check_number
from harness.faults.registry import register
from harness.history import Recorder
from harness.targets.base import Capability, ControlFailed, SecretsAccess, Target, TargetError, Unsupported

STRATEGIES = ("single_user", "alternating_users", "database_first")
CREATE, SET, TEST, FINISH = "createSecret", SET_STEP, "testSecret", FINISH_STEP
CURRENT, PENDING = "AWSCURRENT", "AWSPENDING"
BY_COMMAND_UNOBSERVED = (CREATE, SET, TEST)
"""The steps a rotation done by a user's command does out of the harness's sight."""


@dataclasses.dataclass(frozen=True)
class Login:
    """A database login as a secret holds it; ``generation`` says whether it is the rotation's
    ``old`` or ``new`` one (what the history records instead of the password)."""

    user: str
    password: str = dataclasses.field(repr=False)
    generation: str

    @property
    def pair(self) -> tuple[str, str]:
        return self.user, self.password


def new_password() -> str:
    """A password a rotation function would generate (letters and digits: valid in any quoting)."""
    return secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")


@register(ROTATION_FAULT)
@dataclasses.dataclass
class RotateSecret(Fault):
    """Rotate one of the target's secrets with ``strategy`` (see the module docstring)."""

    requires = Capability.ROTATE_SECRET
    strategy: str = "single_user"
    window_seconds: float = 1.0
    step_timeout: float = 60.0
    secret_id: str | None = None
    """The secret a single-user rotation changes (default: the one the target names for it)."""

    def validate(self) -> None:
        if self.strategy not in STRATEGIES:
            raise FaultError(f"{self.name}: strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        check_number(self.name, "window_seconds", self.window_seconds, high=600)
        check_number(self.name, "step_timeout", self.step_timeout, low=1, high=3600)
        self.old: Login | None = None
        self.new: Login | None = None
        self._current: Login | None = None
        self._finished = threading.Event()
        self._database_changed = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._client: Any = None
        self._secret_id = ""
        self._steps: dict[str, float] = {}
        self._by_target = False

    # -- what clients use --------------------------------------------------------------------
    def current_login(self) -> Login:
        """The login ``AWSCURRENT`` holds now, as an application reading the secret would use it."""
        if self._current is None:
            raise FaultError(f"{self.name}: not started")
        return self._current

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the rotation is over (finished or failed); True if it is."""
        return self._finished.wait(timeout)

    @property
    def steps_observed(self) -> bool:
        """Whether the harness sees each step as it happens (False: a user's command does them all)."""
        return not self._by_target

    def wait_database_changed(self, timeout: float | None = None) -> bool:
        """Wait until the database has the new password (the setSecret step, seen by the harness);
        False if the rotation ended without it being seen (a user's command did the steps, or it failed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._database_changed.is_set():
            if self._finished.is_set():
                return self._database_changed.is_set()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self._database_changed.wait(0.05 if left is None else min(0.05, left))
        return True

    # -- the fault ---------------------------------------------------------------------------
    def choose(self, target: Target) -> dict[str, Any]:
        if self.old is None or self.new is None:
            self.prepare(target)
        assert self.old is not None and self.new is not None
        return {"secret_id": self._secret_id, "old_user": self.old.user, "new_user": self.new.user}

    def prepare(self, target: Target, *, password: str | None = None) -> Login:
        """Read the secret's current login and pick the new one, before the fault starts (so that
        sessions can be opened with the old login first); returns the old login.  ``password`` is
        the new password when the caller chose it (else one is generated); it is never recorded."""
        target.require(Capability.ROTATE_SECRET)
        own = target.own_rotation_login()
        if own is not None:
            if self.strategy != "single_user":
                raise Unsupported(target.kind, Capability.ROTATE_SECRET,
                                  f"its rotate command does single-user rotations, not {self.strategy}")
            self._by_target, self._secret_id = True, "(the rotate command's)"
            self.old = Login(own.user, own.password, "old")
            self.new = Login(own.user, password or new_password(), "new")
            self._current = self.old
            return self.old
        access = target.secrets_access()
        self._client = secrets_client(access)
        if self.strategy == "alternating_users":
            if access.alternating is None:
                raise TargetError("the target names no secret that alternates between two users")
            self._secret_id, *users = access.alternating
        else:
            if access.single_user is None:
                raise TargetError("the target names no secret for a single-user rotation")
            self._secret_id, users = self.secret_id or access.single_user, []
        current = self._read_current()
        self.old = Login(current["username"], current["password"], "old")
        if users:
            if self.old.user not in users:
                raise FaultError(f"{self.name}: secret {self._secret_id} names {self.old.user!r}, "
                                 f"not one of its alternating users {users}")
            new_user = next(u for u in users if u != self.old.user)
        else:
            new_user = self.old.user
        self.new = Login(new_user, password or new_password(), "new")
        self._current = self.old
        return self.old

    def apply(self, target: Target, recorder: Recorder, chosen: dict[str, Any]) -> None:
        def run() -> None:
            try:
                if self._by_target:
                    self._by_command(target, recorder)
                elif self.strategy == "database_first":
                    self._database_first(target, recorder)
                else:
                    self._four_steps(target, recorder)
            except BaseException as e:  # noqa: BLE001 - reported by stop()
                self._failure = e
            finally:
                self._finished.set()

        self._thread = threading.Thread(target=run, name="rotate-secret", daemon=True)
        self._thread.start()

    def heal(self, target: Target, recorder: Recorder, chosen: dict[str, Any]) -> dict[str, Any]:
        limit = 4 * self.step_timeout + self.window_seconds
        if not self.wait(limit):
            said = f"the rotation did not finish within {limit:.0f} s"
            if self._by_target:  # the user's command is still running: the rotation was not carried out
                raise FaultError(said) from ControlFailed(f"the rotate command was still running after {limit:.0f} s")
            raise FaultError(said)
        if self._failure is not None:
            raise FaultError(f"the rotation failed: {self._failure}") from self._failure
        if self._by_target:
            return {"steps": dict(self._steps), "control": target.last_control,
                    "unobserved_steps": list(BY_COMMAND_UNOBSERVED),
                    "finish_observed": "not later than the rotate command's end"}
        return {"steps": dict(self._steps)}

    # -- the strategies ----------------------------------------------------------------------
    def _four_steps(self, target: Target, recorder: Recorder) -> None:
        assert self.old is not None and self.new is not None
        old_version = self._read_current()["version"]
        token = str(uuid.uuid4())
        self._client.put_secret_value(SecretId=self._secret_id, ClientRequestToken=token,
                                      SecretString=_secret_string(self.new), VersionStages=[PENDING])
        self._step(recorder, CREATE, version=token)
        target.set_database_password(self.new.user, self.new.password)
        self._step(recorder, SET, user=self.new.user)
        target.check_database_login(self.new.user, self.new.password)
        self._step(recorder, TEST, user=self.new.user)
        time.sleep(self.window_seconds)
        self._client.update_secret_version_stage(SecretId=self._secret_id, VersionStage=CURRENT,
                                                 MoveToVersionId=token, RemoveFromVersionId=old_version)
        self._client.update_secret_version_stage(SecretId=self._secret_id, VersionStage=PENDING,
                                                 RemoveFromVersionId=token)
        self._current = self.new
        self._step(recorder, FINISH, version=token)

    def _by_command(self, target: Target, recorder: Recorder) -> None:
        """The target's own rotation (a user's command) does the four steps; finishSecret is over by
        the time it returns, which is when clients following the secret take the new login."""
        assert self.new is not None
        target.rotate_login(self.new.user, self.new.password)
        self._current = self.new
        took = float((target.last_control or {}).get("duration_s", 0.0))
        self._step(recorder, FINISH, user=self.new.user, observed="the rotate command's end",
                   **{FINISH_WITHIN_KEY: took})

    def _database_first(self, target: Target, recorder: Recorder) -> None:
        assert self.new is not None
        target.set_database_password(self.new.user, self.new.password)
        self._step(recorder, SET, user=self.new.user)
        time.sleep(self.window_seconds)
        response = self._client.put_secret_value(SecretId=self._secret_id, SecretString=_secret_string(self.new))
        self._current = self.new
        self._step(recorder, FINISH, version=response.get("VersionId"), how="put_secret_value")

    # -- helpers -----------------------------------------------------------------------------
    def _step(self, recorder: Recorder, step: str, **details: Any) -> None:
        recorder.event(STEP_EVENT, step, extra={"fault": self.name, "strategy": self.strategy,
                                                "secret_id": self._secret_id, **details})
        self._steps[step] = time.monotonic()
        if step == SET:
            self._database_changed.set()

    def _read_current(self) -> dict[str, Any]:
        """The ``AWSCURRENT`` version: its id, user and password (as a rotation function reads it)."""
        return read_secret_login(self._client, self._secret_id)


def _secret_string(login: Login) -> str:
    return json.dumps({"username": login.user, "password": login.password})


def read_secret_login(client: Any, secret_id: str, stage: str = CURRENT) -> dict[str, Any]:
    """A secret's version at ``stage``: ``{"version", "username", "password"}``, as a rotation function
    or an application reading the secret sees it; FaultError (never quoting a value) when it cannot."""
    try:
        response = client.get_secret_value(SecretId=secret_id, VersionStage=stage)
    except Exception as e:  # boto3's ClientError / BotoCoreError; their texts never quote a value
        raise FaultError(f"cannot read secret {secret_id}: {type(e).__name__}: {e}") from e
    try:
        value = json.loads(response["SecretString"])
        return {"version": response["VersionId"], "username": str(value["username"]),
                "password": str(value["password"])}
    except (KeyError, TypeError, ValueError):
        raise FaultError(f"secret {secret_id} does not hold a JSON login (username, password)") from None


def secrets_client(access: SecretsAccess) -> Any:
    # The targets' boto3 client factory: it keeps a stand-in's client away from the machine's AWS files.
    from harness.targets.aws_standin import secretsmanager_client

    return secretsmanager_client(access)
