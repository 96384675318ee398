"""The ``aurora-harness`` command line.

Every command takes ``--json`` for scripts; human output goes to stdout, errors to stderr with a
non-zero exit code and a message naming the problem.  Subcommand groups live in sibling modules.
"""

from __future__ import annotations

import signal
import sys

import click

from harness import __version__
from harness.cli.standin import standin


def _sigterm_as_interrupt(signum, frame):  # the signal handler's signature
    # Turn SIGTERM into the same unwinding as Ctrl-C so context managers clean up what they started.
    raise KeyboardInterrupt


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aurora-harness")
@click.option("--state-dir", envvar="AURORA_HARNESS_STATE_DIR", default=None, metavar="DIR",
              help="Where background clusters and targets are recorded (default ./.aurora-harness).")
@click.pass_context
def cli(ctx: click.Context, state_dir: str | None) -> None:
    """Chaos and conformance harness for proxied Amazon Aurora."""
    ctx.ensure_object(dict)
    ctx.obj["state_dir"] = state_dir


cli.add_command(standin)


def _register_optional() -> None:
    """Attach command groups whose modules may not exist yet in a partial install."""
    import importlib

    for module, name in (("harness.cli.target", "up"), ("harness.cli.target", "down"),
                         ("harness.cli.target", "status"), ("harness.cli.target", "failover"),
                         ("harness.cli.target", "crash"), ("harness.cli.target", "rotate"),
                         ("harness.cli.bench", "bench"),
                         ("harness.cli.certify", "certify"), ("harness.cli.guarantees", "guarantees"),
                         ("harness.cli.load", "load"), ("harness.cli.fault", "fault"),
                         ("harness.cli.report", "report"), ("harness.cli.report", "compare")):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        cli.add_command(getattr(mod, name))


_register_optional()


def main() -> None:
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        cli(obj={})
    except KeyboardInterrupt:
        click.echo("interrupted; everything started by this command was stopped", err=True)
        sys.exit(130)
