"""The target of a load run, given through Locust's own command line and environment.

A locustfile of this package registers these options with ``events.init_command_line_parser``
(:func:`add_arguments`), so ``locust -f loadprofiles/steady.py --help`` lists them beside Locust's own,
and a master hands them to its workers with every spawn message (a worker needs none on its own
command line).  They never include ``--host``: that is Locust's HTTP base URL.

Where the target comes from (:func:`build_target`), first match wins:

1. ``--target-record FILE`` - a JSON record written by ``aurora-harness load`` for the Locust
   processes it starts (readable by its owner only: it holds the target's passwords);
2. ``--target reference`` - the reference target ``aurora-harness up`` left running, found in
   ``--state-dir`` (default ``$AURORA_HARNESS_STATE_DIR`` or ``.aurora-harness``);
3. ``--target external`` - a running proxy given by ``--writer-dsn`` (and ``--reader-dsn``,
   ``--failover-command``...: every option ``certify`` offers for an external target).  The DSNs may
   instead come from the environment, one per line, as for ``certify``
   (``AURORA_HARNESS_WRITER_DSN``, ``AURORA_HARNESS_READER_DSNS``): they hold passwords, and ``ps``
   shows command lines.

Locust is not imported here: the parser is the one Locust hands to the listener, and the unit tests
hand in their own.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from harness.statedir import StateDir, StateError, resolve
from harness.targets import registry as target_kinds
from harness.targets.base import Target, TargetError, TargetOptions, option_fields

TARGET_RECORD_ENV = "AURORA_HARNESS_TARGET_RECORD"
RUN_DIR_ENV = "AURORA_HARNESS_RUN_DIR"
STATE_RECORD = "target"
"""The state directory's record of ``aurora-harness up`` (see :mod:`harness.cli.target`)."""


def add_arguments(parser: Any) -> None:
    """Add the harness's options to Locust's parser (a ``configargparse`` parser, which takes
    ``env_var``, ``include_in_web_ui`` and ``is_secret`` besides argparse's keywords)."""
    g = parser  # Locust's own add_argument (its groups' do not take include_in_web_ui / is_secret)
    g.add_argument("--target", choices=target_kinds.kind_names(), default=None, env_var="AURORA_HARNESS_TARGET",
                   help="reference: the target 'aurora-harness up' started (see --state-dir); external: a running "
                        "proxy given by --writer-dsn.")
    g.add_argument("--engine", choices=["postgres", "mysql"], default="postgres", env_var="AURORA_HARNESS_ENGINE",
                   help="Database engine of an external target (a reference target knows its own).")
    g.add_argument("--state-dir", default=None, env_var="AURORA_HARNESS_STATE_DIR",
                   help="Where 'aurora-harness up' recorded the reference target (default .aurora-harness).")
    g.add_argument("--target-record", default=None, env_var=TARGET_RECORD_ENV, include_in_web_ui=False,
                   help="A target record written by 'aurora-harness load' (overrides --target).")
    g.add_argument("--run-dir", default=None, env_var=RUN_DIR_ENV,
                   help="Run directory for histories, manifest and verdicts (default runs/<UTC time>-load-<engine>).")
    g.add_argument("--skip-verdicts", action="store_true", default=False, env_var="AURORA_HARNESS_SKIP_VERDICTS",
                   help="Do not judge the histories when the run ends ('aurora-harness load' judges them itself).")
    for f in option_fields():
        if f.metadata["type"] is bool:
            g.add_argument(f.metadata["flag"], dest=f.name, action="store_true", default=False,
                           help=f.metadata["help"])
        elif isinstance(f.default, tuple):
            g.add_argument(f.metadata["flag"], dest=f.name, action="append", default=None,
                           help=f.metadata["help"], is_secret=bool(f.metadata["env"]))
        else:
            g.add_argument(f.metadata["flag"], dest=f.name, default=None, type=f.metadata["type"],
                           help=f.metadata["help"], is_secret=bool(f.metadata["env"]))


def target_options(ns: argparse.Namespace | Any, environ: dict[str, str] | None = None) -> TargetOptions:
    """The :class:`TargetOptions` the parsed options say; a DSN not given on the command line is read
    from its environment variable (one value per line), as ``certify``'s child runs do."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in option_fields():
        value = getattr(ns, f.name, None)
        env = f.metadata["env"]
        from_env = [line.strip() for line in environ.get(env, "").splitlines() if line.strip()] if env else []
        if isinstance(f.default, tuple):
            values[f.name] = tuple(value or from_env)
        elif f.metadata["type"] is bool:
            values[f.name] = bool(value)
        else:
            values[f.name] = value if value is not None else (from_env[0] if from_env else None)
    return TargetOptions(getattr(ns, "engine", None) or "postgres", **values)


def target_record(target: Target) -> dict[str, Any]:
    """What a Locust process needs to rebuild ``target`` (already up): its kind and its state."""
    if hasattr(target, "to_state"):
        return {"kind": target.kind, "engine": target.engine, "state": target.to_state()}
    raise TargetError(f"a {target.kind} target cannot be handed to Locust processes as a record")


def external_record(options: TargetOptions) -> dict[str, Any]:
    """The record of an external target: the options it is built from."""
    import dataclasses

    return {"kind": "external", "engine": options.engine,
            "options": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(options).items()}}


def write_record(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Write a target record readable by its owner only (it holds passwords)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(record, fh)


def target_from_record(record: dict[str, Any]) -> Target:
    kind = record.get("kind")
    if kind == "reference":
        from harness.targets.reference import ReferenceTarget

        return ReferenceTarget.from_state(record["state"])
    if kind == "external":
        opts = {k: tuple(v) if isinstance(v, list) else v for k, v in record["options"].items()}
        return target_kinds.build_target("external", TargetOptions(**opts))
    raise TargetError(f"a target record of unknown kind {kind!r}")


def build_target(ns: argparse.Namespace | Any, environ: dict[str, str] | None = None) -> Target:
    """The running target the parsed options name (see the module docstring); raises TargetError
    with a sentence naming what is missing.  Nothing is started."""
    record_path = getattr(ns, "target_record", None)
    if record_path:
        try:
            with open(record_path, encoding="utf-8") as fh:
                return target_from_record(json.load(fh))
        except (OSError, json.JSONDecodeError, KeyError) as e:
            raise TargetError(f"cannot read the target record {record_path!r}: {e}") from None
    kind = getattr(ns, "target", None)
    if kind is None:
        raise TargetError("no target: give --target reference (after 'aurora-harness up') or "
                          "--target external --writer-dsn DSN")
    if kind == "reference":
        try:
            state = StateDir(resolve(getattr(ns, "state_dir", None))).read(STATE_RECORD)
        except StateError as e:
            raise TargetError(str(e)) from None
        if state is None:
            raise TargetError("--target reference: no reference target is running (nothing recorded in the "
                              "state directory); start one with 'aurora-harness up'")
        from harness.targets.reference import ReferenceTarget

        return ReferenceTarget.from_state(state)
    return target_kinds.build_target(kind, target_options(ns, environ))
