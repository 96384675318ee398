"""Which suite tests check which guarantee on which engine, read from the suites without running them.

A suite test names the guarantees its history is judged against with
``@pytest.mark.guarantee("ID", ...)`` (on the function, its class or module, or one parametrized
case), and may be limited to a certification profile with ``@pytest.mark.profile("full")``.
:func:`collect_checking_tests` lets pytest itself collect the suites (``--collect-only``, in this
process), so every way of attaching a mark counts exactly as it does in a certification run, and
reads the marks with :func:`guarantees_of`, the very function the plugin judges tests by.

:func:`coverage` joins that with the catalogue: for each guarantee and engine, the tests that check
it, or the catalogue's reason it does not apply, or *not checked* (it applies, yet no test names it:
a gap in the suites, never a pass).

Only what is declared counts: a test that skips itself on one engine from inside its body
(``pytest.skip`` when ``target.engine`` is not the one it speaks) is still listed for that engine,
because nothing short of running it can tell.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from harness.guarantees import ENGINE_ORDER, Guarantee
from harness.plugin import PluginError

__all__ = ["CheckingTest", "Coverage", "EngineCoverage", "Status", "collect_checking_tests", "coverage",
           "guarantees_of"]


def guarantees_of(item: pytest.Item) -> list[str]:
    """The guarantee ids an item's ``guarantee`` marks name, in order, each once."""
    ids: list[str] = []
    for mark in item.iter_markers("guarantee"):
        ids.extend(str(a) for a in mark.args)
    return list(dict.fromkeys(ids))


@dataclasses.dataclass(frozen=True)
class CheckingTest:
    """One suite test (a parametrized function collapses to one when every case checks the same).

    ``test`` is its pytest id relative to the suites folder; ``profiles`` the certification profiles
    it is limited to (empty: every profile)."""

    test: str
    guarantees: tuple[str, ...]
    profiles: tuple[str, ...] = ()


class Status(str, enum.Enum):
    CHECKED = "checked"
    NOT_CHECKED = "not checked"
    NOT_APPLICABLE = "does not apply"


@dataclasses.dataclass(frozen=True)
class EngineCoverage:
    """One cell of the table: how one guarantee is checked on one engine."""

    status: Status
    tests: tuple[CheckingTest, ...] = ()
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"status": self.status.value}
        if self.status is Status.CHECKED:
            d["tests"] = [{"test": t.test, "profiles": list(t.profiles)} for t in self.tests]
        if self.reason is not None:
            d["reason"] = self.reason
        return d


@dataclasses.dataclass(frozen=True)
class Coverage:
    """One row: a guarantee and its cell for each engine (in :data:`ENGINE_ORDER`)."""

    guarantee: Guarantee
    engines: Mapping[str, EngineCoverage]

    def to_dict(self) -> dict[str, Any]:
        g = self.guarantee
        return {"id": g.id, "family": g.family.value, "sentence": g.render(),
                "demonstrated_by": list(g.demonstrated_by),
                "engines": {engine: cell.to_dict() for engine, cell in self.engines.items()}}


def coverage(catalogue: Mapping[str, Guarantee], tests: Iterable[CheckingTest]) -> list[Coverage]:
    """Every guarantee of ``catalogue`` (in its order) with, per engine, what checks it."""
    tests = list(tests)
    rows = []
    for g in catalogue.values():
        checking = tuple(t for t in tests if g.id in t.guarantees)
        cells = {}
        for engine in ENGINE_ORDER:
            if engine not in g.engines:
                cells[engine] = EngineCoverage(Status.NOT_APPLICABLE, reason=g.not_applicable[engine])
            elif checking:
                cells[engine] = EngineCoverage(Status.CHECKED, checking)
            else:
                cells[engine] = EngineCoverage(Status.NOT_CHECKED)
        rows.append(Coverage(g, cells))
    return rows


class _MarkReader:
    """A pytest plugin object that keeps the collected items' guarantee and profile marks."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = []

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            profiles = tuple(str(a) for mark in item.iter_markers("profile") for a in mark.args)
            function = item.nodeid.split("[", 1)[0]
            self.items.append((item.nodeid, function, tuple(guarantees_of(item)), profiles))


def collect_checking_tests(suites: Path, paths: Sequence[str] = (), *, select: str | None = None) -> list[CheckingTest]:
    """The tests under ``suites`` (or its sub-paths ``paths``) that name at least one guarantee.

    ``select`` is a pytest ``-k`` expression that narrows them, as a certification's ``-k`` would.
    Collection only: nothing runs and no target is needed.  A suite that cannot be imported, or a
    mark naming an unknown guarantee, raises :class:`~harness.plugin.PluginError` with pytest's
    words.
    """
    reader = _MarkReader()
    targets = [os.fspath(suites / p) for p in paths] or [os.fspath(suites)]
    # An empty ini file: the project's own pytest settings (test paths, options) are not the suites'.
    # The plugin is loaded by module name, its entry point blocked, as certify does (never twice).
    args = [*targets, "--collect-only", "-q", "-c", os.devnull, "--rootdir", os.fspath(suites),
            "-p", "no:cacheprovider", "-p", "no:locust", "-p", "no:aurora_harness", "-p", "harness.pytest_plugin"]
    if select is not None:
        args += ["-k", select]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        status = pytest.main(args, plugins=[reader])
    if status != pytest.ExitCode.OK and not (select is not None and status == pytest.ExitCode.NO_TESTS_COLLECTED):
        tail = "\n".join(out.getvalue().strip().splitlines()[-15:])
        raise PluginError(f"cannot collect the suites in {os.fspath(suites)} (pytest exit status "
                          f"{int(status)}):\n{tail}")
    return _merge_cases(reader.items)


def _merge_cases(items: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]) -> list[CheckingTest]:
    """One :class:`CheckingTest` per function whose cases all check the same guarantees in the same
    profiles, else one per case; tests checking nothing are left out."""
    by_function: dict[str, list[tuple[str, tuple[str, ...], tuple[str, ...]]]] = {}
    for nodeid, function, guarantees, profiles in items:
        by_function.setdefault(function, []).append((nodeid, guarantees, profiles))
    tests = []
    for function, cases in by_function.items():
        if len({(g, p) for _, g, p in cases}) == 1:
            cases = [(function, cases[0][1], cases[0][2])]
        tests += [CheckingTest(nodeid, guarantees, profiles) for nodeid, guarantees, profiles in cases if guarantees]
    return tests
