"""One Secrets Manager secret per database user, as RDS Proxy reads them.

Each secret's ``AWSCURRENT`` version holds JSON with ``username`` and ``password`` (other keys are
ignored).  The user name inside the secret is the name clients log in with and the database login,
so the proxy finds a user's secret by reading the secrets, not by their names: a rotation that
alternates between two users moves a secret from one user to the other, and clients of the old name
then meet "no credentials for the role", as on RDS Proxy.  Only ``AWSCURRENT`` is ever read: between a
rotation's setSecret (the database has the new password) and its finishSecret (the new version becomes
current) new backend logins fail, which is the window a rotation fault measures.

A read is trusted for ``cache_ttl`` seconds; the next login after that reads the secret again.  A
refused backend login reads it again at once, at most once per ``refresh_min_interval`` per secret,
and concurrent reads of one secret coalesce into a single call (:class:`~.single_flight.SingleFlight`),
so neither a rotation nor an outage turns logins into a storm of calls to AWS.  When a read fails the
last good value stays in use and the failure is kept for ``/status``; a secret never read successfully
gives its user no credentials.  Nothing here logs or reports a password, a secret string or an AWS
error body that could quote one.

boto3 is blocking, so reads run in a worker thread (``run_blocking``); the client is passed in, so the
same code talks to AWS, to a local imitation of it, or to an in-process mock.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from reference_proxy.contracts import BackendCredentials, ClientCredential, Clock
from reference_proxy.credentials.settings import IamAuth, SecretConfig, SecretsManagerSettings, check_secrets
from reference_proxy.credentials.single_flight import SingleFlight
from reference_proxy.credentials.source import IAM_METHOD, UserCredentials

__all__ = ["SecretProblem", "SecretsManagerSource", "make_client", "parse_secret_string", "quiet_aws_sdk_logs"]

log = logging.getLogger("reference_proxy.credentials")

CURRENT_STAGE = "AWSCURRENT"


class SecretProblem(Exception):
    """A secret could not be read or does not hold a usable login; the text names the secret only."""


def parse_secret_string(secret_id: str, text: str | None) -> tuple[str, str]:
    """(username, password) from a secret's string, or :class:`SecretProblem` saying what is wrong
    without quoting any of it."""
    if text is None:
        raise SecretProblem(f"secret {secret_id} has no SecretString (a binary secret cannot hold a login)")
    try:
        value = json.loads(text)
    except ValueError:
        raise SecretProblem(f"secret {secret_id} is not JSON") from None
    if not isinstance(value, dict):
        raise SecretProblem(f"secret {secret_id} is not a JSON object")
    username, password = value.get("username"), value.get("password")
    if not isinstance(username, str) or not username:
        raise SecretProblem(f"secret {secret_id} has no 'username' string")
    if not isinstance(password, str):
        raise SecretProblem(f"secret {secret_id} has no 'password' string")
    return username, password


AWS_SDK_LOGGERS = ("boto3", "botocore")
"""The AWS SDK's loggers: at DEBUG they print whole response bodies, secret values included."""


def quiet_aws_sdk_logs() -> None:
    """Keep the AWS SDK's loggers at WARNING or above whatever the proxy's own log level is, so a
    proxy run with debug logging never writes a secret's value."""
    for name in AWS_SDK_LOGGERS:
        sdk_log = logging.getLogger(name)
        if sdk_log.level < logging.WARNING:
            sdk_log.setLevel(logging.WARNING)


def make_client(settings: SecretsManagerSettings) -> Any:
    """A boto3 Secrets Manager client for ``settings`` (AWS credentials from the usual chain)."""
    import boto3

    quiet_aws_sdk_logs()
    return boto3.client("secretsmanager", region_name=settings.region, endpoint_url=settings.endpoint_url)


@dataclass
class _Entry:
    """What the proxy holds for one secret."""

    config: SecretConfig
    credentials: UserCredentials | None = None
    version_id: str | None = None
    read_at: float | None = None       # when the held credentials were read
    tried_at: float | None = None      # when a read was last attempted, successful or not
    problem: str | None = None         # why the last read failed
    conflict: str | None = None        # why its value is not used: another secret serves that user


class SecretsManagerSource:
    """A :class:`~.source.CredentialSource` over Secrets Manager; see the module docstring.

    ``client`` is a boto3 ``secretsmanager`` client; ``default_method`` the engine's client auth
    method for secrets that name none; ``clock`` is monotonic.
    """

    def __init__(self, client: Any, secrets: Sequence[SecretConfig], *, default_method: str, clock: Clock,
                 settings: SecretsManagerSettings | None = None,
                 run_blocking: Callable[..., Awaitable[Any]] = asyncio.to_thread, read_once: bool = False) -> None:
        check_secrets(secrets)
        self._client = client
        self._default_method = default_method
        self._clock = clock
        self._settings = settings or SecretsManagerSettings()
        self._run_blocking = run_blocking
        self._entries = {s.secret_id: _Entry(s) for s in secrets}
        self._by_user: dict[str, str] = {}
        self._reads: SingleFlight[str, None] = SingleFlight()
        self._read_once = read_once
        """True only under the failpoint ``secrets_read_once`` (unsafe on purpose, test only): a secret
        read once is never read again, neither when its cache entry is due nor after a refused login."""

    # ------------------------------------------------------------------ CredentialSource

    def cached(self, user: str) -> UserCredentials | None:
        secret_id = self._by_user.get(user)
        return None if secret_id is None else self._entries[secret_id].credentials

    async def lookup(self, user: str) -> UserCredentials | None:
        secret_id = self._by_user.get(user)
        if secret_id is not None:
            if self._due(self._entries[secret_id]):
                await self._read(secret_id)
            return self.cached(user)
        # An unknown name: only a secret that is due may have become this user's.
        await self.refresh_due()
        return self.cached(user)

    async def backend_login_failed(self, user: str, tried: BackendCredentials) -> UserCredentials | None:
        return await self._read_again(user, lambda held: held.backend == tried)

    async def client_login_failed(self, user: str, tried: ClientCredential) -> UserCredentials | None:
        return await self._read_again(user, lambda held: held.client == tried)

    async def _read_again(self, user: str, unchanged: Callable[[UserCredentials], bool]) -> UserCredentials | None:
        """After a failed login: read the user's secret again, unless a read since then already
        changed what is held, or one was tried less than ``refresh_min_interval`` ago."""
        secret_id = self._by_user.get(user)
        if secret_id is None:
            return None
        entry = self._entries[secret_id]
        if self._read_once and entry.read_at is not None:
            return entry.credentials
        if entry.credentials is not None and not unchanged(entry.credentials):
            return entry.credentials
        if self._reads.in_flight(secret_id) or not self._recently_tried(entry):
            await self._read(secret_id)
        return self.cached(user)

    async def refresh_due(self) -> None:
        due = [sid for sid, entry in self._entries.items() if self._due(entry)]
        if due:
            await asyncio.gather(*(self._read(sid) for sid in due))

    # ------------------------------------------------------------------ loading and status

    async def load_all(self) -> dict[str, str]:
        """Read every secret now (at start); returns the problems, by secret id."""
        await asyncio.gather(*(self._read(sid) for sid in self._entries))
        return self.problems()

    def problems(self) -> dict[str, str]:
        """Secret id to what is wrong with it, for every secret whose last read failed or is unused."""
        return {sid: e.problem or e.conflict for sid, e in self._entries.items() if e.problem or e.conflict}

    @property
    def has_credentials(self) -> bool:
        """False while no secret gave a usable login (RDS: "Proxy does not have any registered
        credentials")."""
        return bool(self._by_user)

    def first_login(self) -> UserCredentials | None:
        """The credentials of the first listed secret that holds a usable login now: what the topology
        monitor logs in with when the configuration names no other login."""
        return next((e.credentials for e in self._entries.values()
                     if e.credentials is not None and e.conflict is None), None)

    @property
    def reads_started(self) -> int:
        """Calls made to Secrets Manager so far (coalesced reads count once)."""
        return self._reads.started

    def snapshot(self) -> dict[str, Any]:
        """Per secret: the user it serves, the version in use, its age and any problem (no values)."""
        now = self._clock.monotonic()
        out = {}
        for sid, entry in self._entries.items():
            out[sid] = {
                "user": entry.credentials.client.user if entry.credentials is not None else None,
                "version_id": entry.version_id,
                "age": None if entry.read_at is None else round(now - entry.read_at, 3),
                "problem": entry.problem or entry.conflict,
            }
        return out

    # ------------------------------------------------------------------ reading

    def _due(self, entry: _Entry) -> bool:
        """Whether the next login should read this secret first."""
        if self._recently_tried(entry):
            return False
        return entry.read_at is None or (not self._read_once
                                         and self._clock.monotonic() - entry.read_at >= self._settings.cache_ttl)

    def _recently_tried(self, entry: _Entry) -> bool:
        return (entry.tried_at is not None
                and self._clock.monotonic() - entry.tried_at < self._settings.refresh_min_interval)

    async def _read(self, secret_id: str) -> None:
        await self._reads.run(secret_id, lambda: self._read_now(secret_id))

    async def _read_now(self, secret_id: str) -> None:
        entry = self._entries[secret_id]
        try:
            response = await self._run_blocking(self._get_current, secret_id)
            username, password = parse_secret_string(secret_id, response.get("SecretString"))
        except SecretProblem as e:
            self._failed(entry, str(e))
            return
        except (ClientError, BotoCoreError, OSError) as e:  # AWS refused, or unreachable: keep the last value
            self._failed(entry, f"secret {secret_id} could not be read: {_describe_aws_error(e)}")
            return
        now = self._clock.monotonic()
        entry.tried_at = entry.read_at = now
        config = entry.config
        if config.iam_auth is IamAuth.REQUIRED:
            client = ClientCredential(username, "", IAM_METHOD)
        else:
            client = ClientCredential(username, password,
                                      config.method.value if config.method is not None else self._default_method)
        previous = entry.credentials
        entry.credentials = UserCredentials(client, BackendCredentials(username, password))
        entry.version_id = response.get("VersionId")
        entry.problem = None
        self._reindex()
        if previous is not None and previous != entry.credentials:
            log.info("secret %s changed (version %s, user %s)", secret_id, entry.version_id, username)

    def _get_current(self, secret_id: str) -> dict[str, Any]:
        return self._client.get_secret_value(SecretId=secret_id, VersionStage=CURRENT_STAGE)

    def _failed(self, entry: _Entry, problem: str) -> None:
        entry.tried_at = self._clock.monotonic()
        if problem != entry.problem:
            log.warning("%s%s", problem, "; using the value read before" if entry.credentials else "")
        entry.problem = problem

    def _reindex(self) -> None:
        """Rebuild user -> secret; when two secrets name one user, the first listed wins."""
        by_user: dict[str, str] = {}
        for sid, entry in self._entries.items():
            entry.conflict = None
            if entry.credentials is None:
                continue
            user = entry.credentials.client.user
            if user in by_user:
                entry.conflict = f"secret {sid} names user {user}, already served by secret {by_user[user]}"
                continue
            by_user[user] = sid
        self._by_user = by_user


def _describe_aws_error(error: Exception) -> str:
    """An AWS error's code and message (AWS messages name secrets, never their values); else the type."""
    response = getattr(error, "response", None)
    if isinstance(response, dict) and isinstance(response.get("Error"), dict):
        code = response["Error"].get("Code", "?")
        message = response["Error"].get("Message", "")
        return f"{code}: {message}" if message else str(code)
    return type(error).__name__

