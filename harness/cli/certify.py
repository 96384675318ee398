"""``aurora-harness certify``: run the suites against a target and say which guarantees held.

The suites run in a child pytest process with the harness plugin (``python -m pytest suites/...
--target ...``).  A child process, not ``pytest.main`` in this one, because a run imports test
modules, starts threads and servers and registers Hypothesis profiles: all of that is torn down with
the process, a second certify in the same interpreter (our own tests) starts clean, and Ctrl-C is
handled by pytest itself (it tears the session fixtures down, so the target is stopped).  The child
prints live progress, one line per verdict; when it has finished, this command renders the reports
from the run directory and prints the verdict table.

Before anything starts, the options are checked and, for a target that is already running (an
external proxy), every endpoint, and every instance given directly, is tried
(:mod:`harness.clients.preflight`): a bad option, a DSN
that does not parse, an unreachable endpoint, a refused login or the wrong engine ends the command
with one line naming the problem and exit status 2, and no suite runs.

The headline says CERTIFIED only when every selected guarantee was judged true and no check failed;
NOT CERTIFIED names the false ones; INCOMPLETE counts the unknown ones and says why each is unknown.
Exit status: 0 certified; 1 a guarantee false or a check failed; 2 the run could not be carried
out (usage, configuration, connectivity, the target did not come up, the results are missing);
3 incomplete (``--allow-unknown`` makes that 0; ``--strict``, the former way to refuse unknown
verdicts, is now the default and kept as a no-op for scripts); 130 when interrupted (the partial
run directory is kept).

Profiles: ``quick`` runs the conformance suites (pooling, routing, pinning, isolation, borrow
timeout, TLS, latency), a 1,000-client connection storm, the Hypothesis session model with the
``ci`` profile, and one planned failover under mixed load (the promise RDS Proxy is bought for);
writer and reader crashes and network faults run only in ``full`` (with a 10,000-client storm and
the ``nightly`` Hypothesis profile): they take longer.  Chaos changes the cluster, so the chaos
suite runs last.  Guarantees left out by the profile are listed as such, never reported as held.
Measured on 2 cores shared with other work: quick under a minute, full about 3.5 min.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from harness import guarantees as _guarantees
from harness.cli.common import CliFailure
from harness.runstore import (
    DEFAULT_ROOT,
    EXIT_NOT_CARRIED_OUT,
    INCOMPLETE,
    NOT_CARRIED_OUT,
    Certification,
    RunStore,
    RunStoreError,
    default_run_dir,
    utc_now,
)
from harness.targets import registry as target_kinds
from harness.targets.base import TargetError, TargetOptions, option_environment_names, option_fields

SUITES = ("conformance", "models", "chaos")
"""Run in this order: chaos last, because a failover or crash changes the cluster the others would see."""
INTERRUPT_GRACE_S = 120.0


def target_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add a click option for every :class:`TargetOptions` field (passed on by field name)."""
    for f in reversed(option_fields()):
        repeatable = isinstance(f.default, tuple)
        if f.metadata["type"] is bool:
            command = click.option(f.metadata["flag"], f.name, is_flag=True, help=f.metadata["help"])(command)
            continue
        command = click.option(f.metadata["flag"], f.name, multiple=repeatable, type=f.metadata["type"],
                               default=None if not repeatable else (), help=f.metadata["help"])(command)
    return command


class NotCarriedOut(CliFailure):
    """The run cannot be carried out (usage, configuration, connectivity): exit status 2, one line."""

    exit_code = EXIT_NOT_CARRIED_OUT

_INI = """[pytest]
addopts = --strict-markers
timeout = 900
console_output_style = classic
"""


def preflight(built: Any, command: str) -> None:
    """Try a target that is reachable before it is brought up (an external one) with the clients'
    preflight: NotCarriedOut on a problem, each warning printed to stderr prefixed by ``command``."""
    if not built.reachable_before_up:
        return
    from harness.clients.preflight import preflight_lines

    problem, warnings = preflight_lines(built)
    if problem:
        raise NotCarriedOut(f"preflight: {problem}")
    for line in warnings:
        click.echo(f"{command}: warning: {line}", err=True)


def suites_dir() -> Path:
    import suites

    return Path(suites.__file__).resolve().parent


def masked_command_line(argv: list[str], secrets: list[str]) -> str:
    """``aurora-harness certify ...`` as typed, with every password of the target masked: it goes
    into results.json and the report, which get shared."""
    import shlex

    from harness.targets.masking import scrub

    return scrub(shlex.join(["aurora-harness", *argv]), secrets)


def child_env(options: TargetOptions, *, preflight_done: bool = False,
              command: str | None = None) -> dict[str, str]:
    """The child's environment: ours plus the options that carry passwords (DSNs), kept out of argv."""
    from harness.pytest_plugin import COMMAND_ENV, PREFLIGHT_DONE_ENV

    ours = {PREFLIGHT_DONE_ENV, COMMAND_ENV, *option_environment_names()}
    env = {k: v for k, v in os.environ.items() if k not in ours}
    if preflight_done:
        env[PREFLIGHT_DONE_ENV] = "1"
    if command:
        env[COMMAND_ENV] = command
    env.update(options.child_arguments()[1])
    return env


def pytest_command(*, target: str, options: TargetOptions, profile: str, run_dir: Path, ini: Path, seed: int,
                   thresholds: str | None = None, select: str | None = None,
                   suites: tuple[str, ...] = ()) -> list[str]:
    """The child pytest command line for one certification run."""
    base = suites_dir()
    paths = [os.fspath(base / s) for s in (suites or SUITES)]
    cmd = [sys.executable, "-m", "pytest", *paths, "-c", os.fspath(ini), "--rootdir", os.fspath(base.parent),
           "-p", "no:locust", "-p", "no:cacheprovider", "-q", "-rfEs",
           "--target", target, "--engine", options.engine, "--profile", profile, "--run-dir", os.fspath(run_dir),
           f"--hypothesis-seed={seed}"]
    # Load the plugin by module name, and block its entry point: whether the entry point is visible
    # depends on the environment (a stale egg-info beside the sources hides it), and loading both
    # would register the plugin twice.
    cmd += ["-p", "no:aurora_harness", "-p", "harness.pytest_plugin"]
    # The DSNs (with their passwords) travel in the environment, not on the command line: see child_env.
    cmd += options.child_arguments()[0]
    if thresholds:
        cmd += ["--thresholds", os.fspath(Path(thresholds).resolve())]
    if select:
        cmd += ["-k", select]
    return cmd


def _default_sigint() -> None:
    """In the child: take SIGINT back from SIG_IGN (a background job inherits it ignored), so that an
    interrupt reaches pytest, which then tears the target down."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _run_child(cmd: list[str], *, env: dict[str, str], to_stderr: bool) -> int:
    """Run pytest, streaming its output; on Ctrl-C let it tear down, and stop it if it will not."""
    child = subprocess.Popen(cmd, env=env, stdout=sys.stderr if to_stderr else None, stdin=subprocess.DEVNULL,
                             preexec_fn=_default_sigint)  # noqa: PLW1509 - only resets one signal
    try:
        return child.wait()
    except KeyboardInterrupt:
        # The terminal's Ctrl-C reached the child too; SIGTERM to us did not, so pass it on.
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=INTERRUPT_GRACE_S)
        except subprocess.TimeoutExpired:
            child.terminate()
            child.wait(timeout=30)
        raise


@click.command()
@click.option("--target", "target_kind", type=click.Choice(target_kinds.kind_names()), required=True,
              help="; ".join(f"{k.name}: {k.summary}" for k in target_kinds.registered().values()) + ".")
@click.option("--engine", type=click.Choice(["postgres", "mysql"]), default="postgres", show_default=True)
@click.option("--profile", type=click.Choice(["quick", "full"]), default="quick", show_default=True,
              help="quick (conformance, storm, model, a loud and a silent failover; budget 5 min on 2 cores) or full "
                   "(adds crashes, network faults, bigger storm; budget 20 min).")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="Where to write the run (default runs/<UTC time>-<target>-<engine>).")
@target_options
@click.option("--thresholds", type=click.Path(exists=True, dir_okay=False), default=None,
              help="TOML or JSON file overriding guarantee thresholds.")
@click.option("--allow-unknown", is_flag=True,
              help="Exit 0 when nothing is false even if some guarantees are unknown (the headline still "
                   "says INCOMPLETE).")
@click.option("--strict", is_flag=True, hidden=True,
              help="Refuse unknown verdicts: the default now (exit 3); kept so that old scripts still run.")
@click.option("--json", "as_json", is_flag=True, help="Print report.json instead of the table.")
@click.option("--suite", "suites", multiple=True, type=click.Choice(SUITES),
              help="Run only these suites (repeatable; default all).")
@click.option("-k", "--select", default=None, metavar="EXPR",
              help="Run only tests matching this pytest -k expression.")
@click.option("--seed", type=int, default=None, help="Hypothesis seed (default random; printed for replay).")
def certify(target_kind: str, engine: str, profile: str, run_dir: str | None, thresholds: str | None,
            allow_unknown: bool, strict: bool, as_json: bool, suites: tuple[str, ...], select: str | None,
            seed: int | None, **target_values: Any) -> None:
    """Certify a proxied Aurora target against the guarantee catalogue.

    Exit status: 0 CERTIFIED, 1 NOT CERTIFIED, 2 not carried out, 3 INCOMPLETE."""
    if strict and allow_unknown:
        raise NotCarriedOut("--strict and --allow-unknown contradict each other (unknown verdicts are refused "
                            "by default; --allow-unknown accepts them)")
    try:  # building starts nothing; it is how the target's kind checks the options before the run
        options = TargetOptions(engine, **target_values)
        built = target_kinds.build_target(target_kind, options)
    except TargetError as e:
        raise NotCarriedOut(str(e)) from None
    if thresholds:
        try:
            _guarantees.load_thresholds(thresholds)
        except _guarantees.GuaranteeError as e:
            raise NotCarriedOut(str(e)) from None
    default_location = run_dir is None
    path = Path(run_dir) if run_dir else default_run_dir(DEFAULT_ROOT, target_kind, engine, utc_now())
    if path.exists() and any(path.iterdir()):
        raise NotCarriedOut(f"run directory {os.fspath(path)!r} exists and is not empty")
    preflight(built, "certify")
    seed = seed if seed is not None else random.SystemRandom().randrange(2**32)
    info = click.echo if not as_json else (lambda m: click.echo(m, err=True))
    info(f"certify: target={target_kind} engine={engine} profile={profile} seed={seed} run-dir={path}"
         + "".join(f" proxy-setting={s}" for s in options.proxy_settings))
    workdir = tempfile.mkdtemp(prefix="aurora-certify-")
    try:
        ini = Path(workdir) / "pytest.ini"
        ini.write_text(_INI)
        cmd = pytest_command(target=target_kind, options=options, profile=profile, run_dir=path, ini=ini, seed=seed,
                             thresholds=thresholds, select=select, suites=suites)
        try:
            # A target the harness starts has no password on the command line (it makes its own).
            secrets = built.secret_texts() if built.reachable_before_up else []
            env = child_env(options, preflight_done=built.reachable_before_up,
                            command=masked_command_line(sys.argv[1:], secrets))
            pytest_status = _run_child(cmd, env=env, to_stderr=as_json)
        except KeyboardInterrupt:
            interrupted = True
            pytest_status = 2
        else:
            interrupted = False
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    status = finish(path, allow_unknown=allow_unknown, as_json=as_json, pytest_status=pytest_status,
                    point_latest=default_location)
    if interrupted:
        click.echo("certify: interrupted; the target was stopped and the partial run kept", err=True)
        sys.exit(130)
    sys.exit(status)


def finish(path: Path, *, allow_unknown: bool = False, as_json: bool, pytest_status: int,
           point_latest: bool = False) -> int:
    """Render the reports of a finished run, print the verdicts and the headline, return the exit status."""
    from reports.model import ReportError
    from reports.render import write_reports
    from reports.table import for_terminal

    strict = not allow_unknown
    try:
        report = write_reports(path, strict=strict)
    except (ReportError, RunStoreError) as e:
        click.echo(f"certify: NOT CARRIED OUT: no results (pytest exit status {pytest_status}): {e}", err=True)
        return EXIT_NOT_CARRIED_OUT
    if point_latest:
        RunStore(path).point_latest(path.parent)
    target_error = report.results.get("target_error")
    if target_error and not as_json:
        # Nothing ran, so a table of guarantees "no test judged" would only bury the reason.
        click.echo(f"certify: {NOT_CARRIED_OUT}: the target did not come up: {target_error}", err=True)
        return EXIT_NOT_CARRIED_OUT
    outcome = report.certification
    if as_json:
        from reports.json_report import report_dict

        click.echo(json.dumps(report_dict(report, strict=strict), indent=2))
    else:
        click.echo("")
        click.echo(for_terminal(report))
        click.echo("")
        click.echo(f"run directory: {path}  (results.json, junit.xml, report.html, history/)")
        click.echo(headline_text(outcome, allow_unknown=allow_unknown))
    return outcome.exit_status(allow_unknown=allow_unknown)


def headline_text(outcome: Certification, *, allow_unknown: bool = False) -> str:
    """The last lines of a run: the headline with its counts, then one line per reason."""
    accepted = allow_unknown and outcome.headline == INCOMPLETE
    lines = [outcome.summary() + (" (accepted by --allow-unknown)" if accepted else "")]
    lines += [f"  {line}" for line in outcome.problems()]
    return "\n".join(lines)
