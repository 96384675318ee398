"""The harness as a pytest plugin: options, fixtures, the ``guarantee`` marker, and verdict collection.

Installed as the ``aurora_harness`` pytest11 entry point, so it is loaded in every pytest run but
stays inert until ``--target`` is given.  Then one run directory is made (``--run-dir`` or
``runs/<UTC time>-<target>-<engine>``), the target is brought up once per session, every test gets
a ``recorder`` writing its history into the run directory, and after the body of each test marked
``@pytest.mark.guarantee("ID", ...)`` the checkers of those guarantees judge its history:

* FALSE fails the test with the reason and the evidence;
* UNKNOWN is recorded; a test that raises :class:`~harness.targets.base.Unsupported` (the target
  cannot do what it needs) is skipped with the reason, and its guarantees are unknown; so is one
  whose fault could not be carried out (:class:`~harness.targets.base.ControlFailed`, e.g. a user's
  failover command that exited 1): a half-done fault proves nothing about the proxy, either way;
* a test that errors before finishing turns its TRUE verdicts into UNKNOWN: a half-run workload
  proves nothing, though a FALSE found in it stands.

A line per verdict is printed as it is reached (live progress).  ``results.json`` is rewritten after
every test; ``aurora-harness certify`` renders the reports from it.

The option is ``--target`` and never ``--host``: Locust's pytest plugin owns ``--host``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from harness import guarantees as _guarantees
from harness.history import History, Recorder
from harness.plugin import PluginError
from harness.plugin.coverage import guarantees_of as _guarantees_of
from harness.plugin.faults import Faults
from harness.plugin.progress import Progress, suite_of
from harness.plugin.targets import pool_caps, reader_weights
from harness.runstore import DEFAULT_ROOT, RunStore, RunStoreError
from harness.targets import registry as _target_kinds
from harness.targets.base import (
    Capability,
    Target,
    TargetError,
    TargetOptions,
    Unsupported,
    control_failure,
    option_fields,
)

if TYPE_CHECKING:
    from harness.checkers import CheckContext
    from harness.plugin.run import HarnessRun

# The checkers, the metrics sampler and the recording client are imported where they are used: this
# module is loaded by every pytest run in an environment where the package is installed, and must
# cost nothing (and risk nothing) there unless --target is given.

PREFLIGHT_DONE_ENV = "AURORA_HARNESS_PREFLIGHT_DONE"
"""Set by ``aurora-harness certify`` when it has tried the endpoints itself already."""
COMMAND_ENV = "AURORA_HARNESS_COMMAND"
"""The command line that started the run, passwords masked, set by ``aurora-harness certify`` for the
report (the child's own argv is a pytest command nobody typed)."""
TARGET_DID_NOT_COME_UP = 2
"""pytest's exit status when the target could not be brought up (pytest's own "interrupted")."""
RUN_KEY = pytest.StashKey["HarnessRun"]()
RECORDER_KEY = pytest.StashKey[Recorder]()
CONTEXT_KEY = pytest.StashKey[dict]()
TARGET_KEY = pytest.StashKey[Target]()
PROGRESS_KEY = pytest.StashKey[Progress]()
SUITE_SIZES_KEY = pytest.StashKey[dict]()
PROFILES = ("quick", "full")


# -- options and configuration ---------------------------------------------------------------------
def _env_list(name: str) -> list[str]:
    return [line.strip() for line in os.environ.get(name, "").splitlines() if line.strip()]


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("aurora-harness", "proxied-Aurora certification (aurora-proxy-harness)")
    kinds = _target_kinds.registered().values()
    g.addoption("--target", choices=tuple(k.name for k in kinds), default=None,
                help="What to certify: " + "; ".join(f"{k.name} ({k.summary})" for k in kinds) + ".")
    g.addoption("--engine", choices=("postgres", "mysql"), default="postgres", help="Database engine.")
    for f in option_fields():
        if f.metadata["type"] is bool:
            g.addoption(f.metadata["flag"], action="store_true", default=False, dest=f.name, help=f.metadata["help"])
            continue
        env = f.metadata["env"]
        repeatable = isinstance(f.default, tuple)
        if env:
            given = _env_list(env)
            default = given if repeatable else (given[0] if given else None)
        else:
            default = [] if repeatable else None
        g.addoption(f.metadata["flag"], action="append" if repeatable else "store", default=default,
                    type=f.metadata["type"], dest=f.name,
                    help=f.metadata["help"] + (f" (or ${env}{', one per line' if repeatable else ''})" if env else ""))
    g.addoption("--run-dir", default=None, help="Run directory (default runs/<UTC time>-<target>-<engine>).")
    g.addoption("--runs-root", default=DEFAULT_ROOT, help="Where default run directories go (default runs).")
    g.addoption("--thresholds", default=None, help="TOML or JSON file of guarantee threshold overrides.")
    g.addoption("--profile", choices=PROFILES, default="quick",
                help="quick: no failover chaos, small storms; full: everything, deeper Hypothesis.")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "guarantee(*ids): the catalogue guarantees this test's history is "
                                       "judged against")
    config.addinivalue_line("markers", "profile(name): run only in this certification profile (e.g. full)")
    kind = config.getoption("--target", default=None)
    if kind is None or hasattr(config, "workerinput"):
        return
    if config.getoption("numprocesses", default=None):
        raise pytest.UsageError("--target runs the suites in one process (one target, one run directory): "
                                "leave out -n, or give -n 0")
    engine = config.getoption("--engine")
    try:
        catalogue = _guarantees.CATALOGUE
        if config.getoption("--thresholds"):
            catalogue = _guarantees.load_thresholds(config.getoption("--thresholds"))
        store = RunStore.create(config.getoption("--run-dir"), target=kind, engine=engine,
                                root=config.getoption("--runs-root"))
    except (_guarantees.GuaranteeError, RunStoreError) as e:
        raise pytest.UsageError(str(e)) from None
    from harness.plugin.run import HarnessRun

    run = config.stash[RUN_KEY] = HarnessRun(store, target=kind, engine=engine,
                                             profile=config.getoption("--profile"), catalogue=catalogue,
                                             seed=config.getoption("hypothesis_seed", default=None))
    run.command = os.environ.get(COMMAND_ENV) or shlex.join(["pytest", *config.invocation_params.args])
    _check_target(config, run)


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # before xdist's own, which always answers
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """With --target, ``-n auto`` (a project's default options may say it) starts no workers: a
    certification brings one target up once per session and judges its tests in one process."""
    return 0 if config.getoption("--target", default=None) else None


def _target_options(config: pytest.Config, engine: str) -> TargetOptions:
    values = {}
    for f in option_fields():
        value = config.getoption(f.name)
        values[f.name] = tuple(value or ()) if isinstance(f.default, tuple) else value
    return TargetOptions(engine, **values)


def _check_target(config: pytest.Config, run: HarnessRun) -> None:
    """Build the target from the options (starting nothing) and, if it is already running, try its
    endpoints: a bad option or an unusable endpoint stops the session with one line, before any test."""
    try:
        built = _target_kinds.build_target(run.target_kind, _target_options(config, run.engine))
    except TargetError as e:
        raise pytest.UsageError(str(e)) from None
    if not built.reachable_before_up:
        return
    run.secrets = built.secret_texts()
    if os.environ.get(PREFLIGHT_DONE_ENV):
        return
    from harness.clients.preflight import preflight_lines

    problem, warnings = preflight_lines(built)
    if problem:
        raise pytest.UsageError(f"preflight: {problem}")
    run.warnings.extend(warnings)


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    run = config.stash.get(RUN_KEY, None)
    if run is None:
        return None
    return [(f"aurora-harness: target={run.target_kind} engine={run.engine} profile={run.profile} "
             f"run-dir={run.store.path}")] + [f"aurora-harness: warning: {w}" for w in run.warnings]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Check guarantee ids, and leave out tests of another profile (recording which guarantees that hides)."""
    for item in items:
        for gid in _guarantees_of(item):
            if gid not in _guarantees.CATALOGUE:
                raise pytest.UsageError(f"{item.nodeid}: unknown guarantee {gid!r} in @pytest.mark.guarantee")
    run = config.stash.get(RUN_KEY, None)
    if run is None:
        needing = [item.nodeid for item in items if "harness_run" in getattr(item, "fixturenames", ())]
        if needing and not config.option.collectonly:  # one usage error, not a traceback per test
            raise pytest.UsageError(
                f"{len(needing)} collected test(s) use the harness's fixtures (the first: {needing[0]}) and need "
                f"a target: give --target {{{','.join(_target_kinds.kind_names())}}} and --engine "
                "(see pytest --help, 'aurora-harness' options), or run them with 'aurora-harness certify'")
        return
    keep, drop = [], []
    for item in items:
        mark = item.get_closest_marker("profile")
        (drop if mark is not None and run.profile not in mark.args else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    run.not_in_profile = sorted({g for item in drop for g in _guarantees_of(item)}
                                - {g for item in keep for g in _guarantees_of(item)})


def pytest_collection_finish(session: pytest.Session) -> None:
    """The guarantees this run will judge: those of the tests left after every deselection (-k too)."""
    run = session.config.stash.get(RUN_KEY, None)
    if run is None:
        return
    run.selected = list(dict.fromkeys(g for item in session.items for g in _guarantees_of(item)))
    run.save()
    session.config.stash[PROGRESS_KEY] = Progress(len(session.items))
    sizes: dict[str, int] = {}
    for item in session.items:
        sizes[suite_of(item.nodeid)] = sizes.get(suite_of(item.nodeid), 0) + 1
    session.config.stash[SUITE_SIZES_KEY] = sizes


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """The suite's heading before its first test (see :mod:`harness.plugin.progress`)."""
    progress = item.config.stash.get(PROGRESS_KEY, None)
    if progress is not None:
        heading = progress.starting(item.nodeid, item.config.stash[SUITE_SIZES_KEY].get(suite_of(item.nodeid), 0))
        if heading:
            _progress(item, heading)


@pytest.hookimpl(wrapper=True)
def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> Iterator[Any]:
    """No dots while the suites run against a target: each test has its progress line instead."""
    result = yield
    if config.stash.get(PROGRESS_KEY, None) is None or config.get_verbosity() > 0 or not result:
        return result
    category, _letter, word = result
    return category, "", word


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def harness_run(request: pytest.FixtureRequest) -> HarnessRun:
    """The current run (run store, thresholds, profile); the suites need ``--target``."""
    run = request.config.stash.get(RUN_KEY, None)
    if run is None:
        raise PluginError(f"the harness suites need a target: run them with --target "
                          f"{{{','.join(_target_kinds.kind_names())}}} (see --help; or use `aurora-harness certify`)")
    return run


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest, harness_run: HarnessRun) -> Iterator[Target]:
    """The target under test, brought up once for the session; its description goes to target.json."""
    try:
        t = _target_kinds.build_target(harness_run.target_kind, _target_options(request.config, harness_run.engine))
    except TargetError as e:  # checked in pytest_configure already; kept for a fixture used on its own
        raise pytest.UsageError(str(e)) from None
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(t)
        except Exception as e:  # noqa: BLE001 - whatever stopped it, the run cannot go on
            # One message and the end of the session, not the same traceback under every test (whose
            # frames' arguments would show the target's generated passwords).
            # On one line (a start failure's message often ends with a log's tail): it is the run's outcome.
            harness_run.target_error = " | ".join(line.strip() for line in f"{type(e).__name__}: {e}".splitlines()
                                                  if line.strip())
            pytest.exit(f"aurora-harness: the target did not come up: {harness_run.target_error}",
                        returncode=TARGET_DID_NOT_COME_UP)
        harness_run.secrets = sorted({*harness_run.secrets, *t.secret_texts()}, key=len, reverse=True)
        stack.callback(_keep_proxy_log, harness_run, t)  # last in, first out: before the target goes down
        harness_run.store.write_target(t.describe())
        harness_run.server_version = _server_version(t)
        request.config.stash[TARGET_KEY] = t
        yield t


def _keep_proxy_log(run: HarnessRun, t: Target) -> None:
    if t.proxy_log:
        run.store.copy_log(t.proxy_log, "proxy.log")


def _server_version(t: Target) -> str | None:
    """The writer's version text, asked through the engine's driver in the engine's words."""
    from harness.clients.address import Address
    from harness.clients.client import query_value
    from harness.clients.dialects import dialect_for

    try:
        return str(query_value(Address.of(t, "writer"), dialect_for(t.engine).server_version_sql,
                               connect_timeout=10))
    except Exception:  # noqa: BLE001 - a version we cannot read is left out, not fatal
        return None


@pytest.fixture(scope="session")
def profile(harness_run: HarnessRun) -> str:
    """``quick`` or ``full``: suites scale their load with it."""
    return harness_run.profile


@pytest.fixture
def recorder(request: pytest.FixtureRequest, harness_run: HarnessRun) -> Iterator[Recorder]:
    """This test's history, written to ``history/<test id>.jsonl`` in the run directory."""
    path = harness_run.store.history_path(request.node.nodeid)
    rec = Recorder(path)
    request.node.stash[RECORDER_KEY] = rec
    harness_run.record_for(request.node.nodeid, _guarantees_of(request.node)).history = \
        harness_run.store.relative(path)
    try:
        yield rec
    finally:
        rec.close()


@pytest.fixture
def check_context(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Extra facts for the checkers (``CheckContext`` fields): e.g. ``check_context["baseline"] = history``."""
    overrides: dict[str, Any] = {}
    request.node.stash[CONTEXT_KEY] = overrides
    return overrides


@pytest.fixture
def clients(target: Target, recorder: Recorder) -> Iterator[Any]:
    """Recorded clients of the target, whatever its engine: ``clients("writer")`` / ``clients("reader")``,
    ``clients.direct(instance_id)``, ``clients.who`` (see :class:`harness.clients.fleet.Clients`);
    every client it made is closed after the test."""
    from harness.clients.fleet import Clients  # imported here: the plugin loads in every pytest run

    class SuiteClients(Clients):
        def __call__(self, endpoint: str = "writer", **options: Any) -> Any:
            if endpoint == "reader" and not (options.get("target") or self.target).reader_endpoints:
                pytest.skip("the target has no reader endpoint (give --reader-dsn)")
            return super().__call__(endpoint, **options)

    made = SuiteClients(target, recorder)
    try:
        yield made
    finally:
        made.close_all()


@pytest.fixture
def faults(target: Target, recorder: Recorder) -> Iterator[Faults]:
    """Faults against the target, recorded as fault windows; whatever is still active is healed after the test."""
    f = Faults(target, recorder)
    try:
        yield f
    finally:
        f.heal_all()


# -- judging each test -----------------------------------------------------------------------------
def _writer_now(t: Target | None) -> str | None:
    """The writer instance as the target reports it now (None when it cannot say)."""
    if t is None or not t.supports(Capability.DIRECT):
        return None
    with contextlib.suppress(Exception):
        return next(i["id"] for i in t.direct_instances() if i.get("role") == "writer")
    return None


def _context(item: pytest.Item, run: HarnessRun, metrics: list[Any], initial_writer: str | None) -> CheckContext:
    from harness.checkers import CheckContext

    t = item.config.stash.get(TARGET_KEY, None)
    base: dict[str, Any] = {"catalogue": run.catalogue, "metrics": tuple(metrics), "engine": run.engine,
                            "target": run.target_kind, "initial_writer": initial_writer}
    if t is not None:
        base["pool_cap"] = pool_caps(t)
        base["reader_weights"] = reader_weights(t)
    overrides = item.stash.get(CONTEXT_KEY, {})
    if "metrics" in overrides:
        overrides = {**overrides, "metrics": tuple(metrics) + tuple(overrides["metrics"])}
    base.update(overrides)
    return CheckContext(**base)


def _progress(item: pytest.Item, line: str) -> None:
    reporter = item.config.pluginmanager.get_plugin("terminalreporter")
    capture = item.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        reporter.ensure_newline()
        reporter.write_line(line)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    run = item.config.stash.get(RUN_KEY, None)
    ids = _guarantees_of(item)
    if run is None:
        return (yield)
    if not ids:
        try:
            return (yield)
        except Unsupported as e:  # a plain check the target cannot run: unknown, said as a skip
            pytest.skip(f"unknown: {e}")
    from harness.checkers import Validity
    from harness.plugin.metrics import MetricsSampler

    record = run.record_for(item.nodeid, ids)
    t = item.config.stash.get(TARGET_KEY, None)
    initial_writer = _writer_now(t)  # before the test: a failover in it changes who is writer
    sampler = None
    if t is not None and t.supports(Capability.METRICS):
        sampler = MetricsSampler(t.metrics).start()
    error: BaseException | None = None
    try:
        yield
    except Unsupported as e:
        verdicts = run.unknown_verdicts(ids, f"unsupported by target {run.target_kind!r}: {e}")
        _finish(item, run, record, verdicts)
        if sampler:
            sampler.stop()
        pytest.skip(f"unknown: {e}")
    except pytest.skip.Exception as e:
        _finish(item, run, record, run.unknown_verdicts(ids, f"skipped: {e.msg}"))
        if sampler:
            sampler.stop()
        raise
    except BaseException as e:  # the test failed or errored; still judge what it recorded
        if isinstance(e, KeyboardInterrupt):
            raise
        failed = control_failure(e)
        if failed is not None:  # the fault was not done as asked: nothing to judge the proxy on
            _finish(item, run, record, run.unknown_verdicts(ids, f"the fault could not be carried out: {failed}"))
            if sampler:
                sampler.stop()
            pytest.skip(f"unknown: the fault could not be carried out: {failed}")
        error = e
    metrics = sampler.stop() if sampler else []
    recorder = item.stash.get(RECORDER_KEY, None)
    history = recorder.history() if recorder is not None else History()
    if metrics:
        _keep_metrics(run, record, item.nodeid, metrics, history)
    verdicts = run.judge(ids, history, _context(item, run, metrics, initial_writer))
    if error is not None:
        verdicts = [v if v.valid is not Validity.TRUE else
                    run.unknown_verdicts([v.guarantee_id],
                                         f"the test stopped early ({type(error).__name__}: {error}); "
                                         f"its partial history showed no violation")[0]
                    for v in verdicts]
    _finish(item, run, record, verdicts)
    if error is not None:
        raise error
    broken = [v for v in verdicts if v.valid is Validity.FALSE]
    if broken:
        lines = []
        for v in broken:
            lines.append(f"{v.guarantee_id} is FALSE: {v.reason} (figure {v.figure} vs threshold {v.threshold} "
                         f"{v.unit})")
            lines += ["  evidence: " + json.dumps(e, sort_keys=True) for e in v.evidence[:10]]
        seed = item.config.getoption("hypothesis_seed", default=None)
        lines.append(f"run directory: {run.store.path}; history: {record.history}"
                     + (f"; seed {seed} (replay with --seed {seed})" if seed is not None else ""))
        pytest.fail("\n".join(lines), pytrace=False)
    return None


def _keep_metrics(run: HarnessRun, record: Any, test_id: str, samples: list[Any], history: History) -> None:
    """Write the test's metric samples into the run directory for the report's plots.  They share the
    history's monotonic clock, so they share its anchor (a fresh one when the test recorded none)."""
    import time

    from harness.history import ClockAnchor
    from harness.metrics import write_samples

    anchor = history.anchor or ClockAnchor(wall_ns=time.time_ns(), monotonic_ns=time.monotonic_ns())
    path = run.store.metrics_path(test_id)
    try:
        write_samples(path, samples, anchor)
    except OSError:
        return  # a report without one plot is no reason to fail the test
    record.metrics = run.store.relative(path)


def _finish(item: pytest.Item, run: HarnessRun, record: Any, verdicts: list[Any]) -> None:
    record.verdicts = [v.to_dict() for v in verdicts]
    for v in verdicts:
        figure = "-" if v.figure is None else f"{v.figure:g}"
        _progress(item, f"[verdict] {v.guarantee_id:<28} {v.valid.value.upper():<7} {figure} "
                        f"(threshold {v.threshold:g} {v.unit}) {v.reason[:120]}"
                  if v.threshold is not None else f"[verdict] {v.guarantee_id} {v.valid.value.upper()} {v.reason}")
    run.save()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[pytest.TestReport]:
    """Keep each test's outcome and duration (every test of a run, with or without guarantees)."""
    report = yield
    run = item.config.stash.get(RUN_KEY, None)
    if run is None:
        return report
    t = item.config.stash.get(TARGET_KEY, None)
    if t is not None:  # a rotation may have given the target a password the run did not know at start
        run.secrets = sorted({*run.secrets, *t.secret_texts()}, key=len, reverse=True)
    _scrub_report(report, run.secrets)
    record = run.record_for(item.nodeid, _guarantees_of(item))
    record.duration_s = round(record.duration_s + report.duration, 3)
    if report.failed:
        record.outcome = "failed" if report.when == "call" else "error"
        record.message = _message(report)
    elif report.skipped and record.outcome == "passed":
        record.outcome = "skipped"
        record.message = _message(report)
    progress = item.config.stash.get(PROGRESS_KEY, None)
    if progress is not None and (report.when == "call" or (report.when == "setup" and not report.passed)):
        _progress(item, progress.finished(item.nodeid, report.outcome, record.duration_s))
    if report.when == "teardown":
        run.save()
    return report


def _scrub_report(report: pytest.TestReport, secrets: list[str]) -> None:
    """Mask the target's passwords in what pytest will print of a test: long tracebacks show every
    frame's arguments, and a driver's connect arguments hold the password."""
    if not secrets:
        return
    from harness.targets.external import scrub

    if report.longrepr is not None and not isinstance(report.longrepr, tuple):
        text = str(report.longrepr)
        cleaned = scrub(text, secrets)
        if cleaned != text:
            report.longrepr = cleaned
    report.sections = [(name, scrub(content, secrets)) for name, content in report.sections]


def _message(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple):  # a skip: (file, line, reason)
        return str(report.longrepr[2])
    text = getattr(report, "longreprtext", "") or str(report.longrepr or "")
    return text[-4000:]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = session.config.stash.get(RUN_KEY, None)
    if run is None:
        return
    if run.target_error:
        run.status = f"the target did not come up ({run.target_error})"
    elif exitstatus in (0, 1):
        run.status = "complete"
    else:
        run.status = "interrupted" if exitstatus == 2 else f"pytest exit status {int(exitstatus)}"
    run.save()
    # Render the reports here too, so that a plain `pytest suites --target ...` run has them
    # (`aurora-harness certify` renders them again, with its --allow-unknown setting).
    from reports.model import ReportError
    from reports.render import write_reports

    try:
        write_reports(run.store.path)
    except (ReportError, OSError) as e:
        _warn(session.config, f"aurora-harness: could not render the reports: {e}")


def _warn(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)
