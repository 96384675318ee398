"""A local stand-in for the AWS APIs the reference target needs: Secrets Manager, served by moto.

The reference proxy reads its logins from Secrets Manager as RDS Proxy does, and a rotation fault
changes them with boto3 as a rotation function does; both talk to this stand-in over HTTP on
loopback, exactly as they would talk to AWS.  It runs as a process of its own (moto's server) rather
than in a thread, because ``aurora-harness up`` leaves the target running after the command exits and
later commands act on it from other processes; the process is recorded by pid and start time like the
proxy, and stopped with it.

Nothing here may reach AWS or read the machine's AWS configuration: every client gets the endpoint
and fake access keys explicitly, and the environment given to child processes (the proxy) names
fake keys and points the shared AWS files at the null device.

Run as ``python -m harness.targets.aws_standin --port N --run-dir DIR``: the run directory is named
on the command line so that the harness's process checks recognise the server as its own.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import string
import sys
from collections.abc import Mapping
from typing import Any

from harness import process
from harness.targets.base import SecretsAccess, TargetError

REGION = "us-east-1"
FAKE_ACCESS_KEY_ID = "AKIDAURORAHARNESS"
FAKE_SECRET_ACCESS_KEY = "aurora-harness-fake-secret-key"
READY_TIMEOUT = 30.0

_AWS_VARIABLES_TO_DROP = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
                          "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                          "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_ENDPOINT_URL",
                          "AWS_ENDPOINT_URL_SECRETS_MANAGER")


def isolated_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: ours) with the AWS SDK confined to fake keys: no profile, no shared files,
    no instance metadata, so a child process's boto3 can only use what it is told explicitly."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in _AWS_VARIABLES_TO_DROP}
    env.update({"AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_ACCESS_KEY,
                "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"})
    return env


def secretsmanager_client(access: SecretsAccess) -> Any:
    """A boto3 Secrets Manager client for ``access`` (see :func:`aws_client`)."""
    return aws_client("secretsmanager", region=access.region, endpoint_url=access.endpoint_url,
                      access_key_id=access.access_key_id, secret_access_key=access.secret_access_key)


def aws_client(service: str, *, region: str, endpoint_url: str | None = None, access_key_id: str | None = None,
               secret_access_key: str | None = None) -> Any:
    """A boto3 client of ``service`` in ``region``.

    With explicit access keys (a stand-in, or keys the harness was given) the client's session reads
    no shared AWS file at all; without them (a real account) boto3's usual chain applies."""
    try:
        import boto3
        import botocore.session
    except ImportError:
        raise TargetError("boto3 is not installed: install the 'aws' extra "
                          "(pip install 'aurora-proxy-harness[aws]')") from None
    if access_key_id is None:
        return boto3.client(service, region_name=region, endpoint_url=endpoint_url)
    # Session variables read from no environment variable and no file: no profile, empty AWS files.
    core = botocore.session.Session(session_vars={
        "profile": (None, None, None, None),
        "config_file": (None, None, os.devnull, None),
        "credentials_file": (None, None, os.devnull, None),
    })
    session = boto3.session.Session(aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key,
                                    region_name=region, botocore_session=core)
    return session.client(service, endpoint_url=endpoint_url)


def generate_access_key() -> tuple[str, str]:
    """A made-up access key (id, secret) of AWS's shape, e.g. the one a proxy trusts IAM tokens from."""
    key_id = "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))
    return key_id, secrets.token_urlsafe(30)


def login_secret(user: str, password: str) -> str:
    """A secret string as RDS Proxy reads it: JSON with ``username`` and ``password``."""
    return json.dumps({"username": user, "password": password})


class AwsStandin:
    """The moto server process of one reference target, with the secrets it was asked to hold."""

    def __init__(self) -> None:
        self.port: int | None = None
        self.pid: int | None = None
        self.pid_start: int | None = None
        self.log_path: str | None = None

    @property
    def endpoint_url(self) -> str:
        if self.port is None:
            raise TargetError("the AWS stand-in is not running")
        return f"http://{process.LOOPBACK}:{self.port}"

    def access(self) -> SecretsAccess:
        """How a client reaches this stand-in's Secrets Manager (explicit endpoint, fake keys)."""
        return SecretsAccess(region=REGION, endpoint_url=self.endpoint_url, access_key_id=FAKE_ACCESS_KEY_ID,
                             secret_access_key=FAKE_SECRET_ACCESS_KEY)

    def start(self, run_dir: str) -> None:
        """Start the server on a free loopback port and wait until it answers; TargetError if not."""
        self.launch(run_dir)
        self.wait_ready()

    def launch(self, run_dir: str) -> None:
        """Start the server process on a free loopback port, without waiting for it (see :meth:`wait_ready`):
        it takes a few seconds to import moto and listen, which the caller may spend on other work."""
        try:
            import moto.server  # noqa: F401 - only to fail early with a clear message
        except ImportError:
            raise TargetError("the AWS stand-in needs moto: install it (pip install 'moto[secretsmanager]'), "
                              "or start the target with static credentials") from None
        self.port = process.free_port()
        self.log_path = os.path.join(run_dir, "aws.log")
        self.pid, self.pid_start = process.spawn(
            [sys.executable, "-m", "harness.targets.aws_standin", "--port", str(self.port), "--run-dir", run_dir],
            log_path=self.log_path, env=isolated_environment())

    def wait_ready(self) -> None:
        """Wait until the launched server answers; TargetError (and the server stopped) if it does not."""
        if self.port is None or self.log_path is None:
            raise TargetError("the AWS stand-in was not launched")
        process.wait_until(lambda: not self.running() or process.port_open(self.port or 0), READY_TIMEOUT)
        if not self.running() or not process.port_open(self.port):
            alive = self.running()
            self.stop()
            raise TargetError(f"the AWS stand-in {'did not answer' if alive else 'exited'} within "
                              f"{READY_TIMEOUT:.0f}s; its log ends:\n{process.log_tail(self.log_path)}")

    def running(self) -> bool:
        return process.pid_alive(self.pid, self.pid_start)

    def stop(self) -> None:
        """Stop the server (its secrets go with it). Idempotent."""
        process.terminate(self.pid, self.pid_start, timeout=10)
        self.pid = self.pid_start = None

    def create_secrets(self, secrets: Mapping[str, tuple[str, str]]) -> None:
        """Create each secret id with its (user, password) login as its current version."""
        client = secretsmanager_client(self.access())
        for secret_id, (user, password) in secrets.items():
            client.create_secret(Name=secret_id, SecretString=login_secret(user, password))

    # -- persistence -------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {"port": self.port, "pid": self.pid, "pid_start": self.pid_start, "log_path": self.log_path}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> AwsStandin:
        standin = cls()
        standin.port, standin.pid, standin.pid_start = state.get("port"), state.get("pid"), state.get("pid_start")
        standin.log_path = state.get("log_path")
        return standin


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a local imitation of AWS (moto) on loopback.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--run-dir", required=True, help="The target's run directory (names the process).")
    args = parser.parse_args(argv)
    from moto.server import main as serve

    serve(["-H", process.LOOPBACK, "-p", str(args.port)])


if __name__ == "__main__":
    main()
