"""Helpers shared by the CLI command modules: state directory access, JSON output, errors."""

from __future__ import annotations

import json
from typing import Any

import click

from harness.process import ProcessError
from harness.redaction import redact
from harness.standins.base import StandinError
from harness.statedir import StateDir, StateError, resolve
from harness.targets.base import TargetError


def state_dir(ctx: click.Context) -> StateDir:
    return StateDir(resolve(ctx.find_root().obj.get("state_dir")))


def emit(data: Any, as_json: bool, human: str) -> None:
    """Print ``data`` as JSON for scripts, or ``human`` text."""
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(human)


show_secrets_option = click.option(
    "--show-secrets", is_flag=True,
    help="Print passwords, secret keys and tokens in clear (hidden by default; see harness.redaction).")


def shown(data: Any, show_secrets: bool) -> Any:
    """``data`` as it may be printed: with its secrets hidden unless asked for."""
    return data if show_secrets else redact(data)


class CliFailure(click.ClickException):
    """A failure the user can act on; click prints 'Error: <message>' and exits 1."""


class UnreadableInput(CliFailure):
    """A file or directory given to a command cannot be read: one line, exit status 2 (as for a usage
    error), never a traceback."""

    exit_code = 2


def fail_on_errors(fn):
    """Turn the harness's own errors into clean CLI failures instead of tracebacks."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ProcessError, StandinError, StateError, TargetError) as e:
            raise CliFailure(str(e)) from None

    return wrapper
