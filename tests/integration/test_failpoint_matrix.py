"""The failpoint matrix: every failpoint of the reference proxy, on every engine, makes exactly its
guarantees false.

For each failpoint (``reference_proxy.failpoints.FAILPOINTS``) the guarantees it must break are the
catalogue's entries that name it in ``demonstrated_by``.  The reference target is certified with the
failpoint on, running only the suite tests whose ``@pytest.mark.guarantee`` names one of them
(:func:`harness.plugin.selection.judging`, in the quick profile unless some of them are judged only in
the full one).  Among the guarantees those tests judge, the false ones must be exactly the failpoint's
own (each false, not unknown); the others may be true or unknown, never false - except those the
failpoint names as possible consequences (``Failpoint.may_also_break``, each with its reason), which
timing decides.

Everything is derived: a failpoint added to the proxy and named by a guarantee is a new row, a suite
test marked with a guarantee joins its selection.  The catalogue's side is checked without servers in
``tests/unit/test_failpoint_catalogue.py`` (every name exists, every failpoint is named).

The certifications run in one lane per engine, the two lanes at once, each on a stand-in cluster of
its own that it starts once and lends to every certification of its engine (``--standin``): starting
four servers would otherwise be most of a short case's time, and most of a long case's time is
spent waiting (for a failover to settle, a borrow to time out), which the other lane uses.  A case
that fails its cluster over leaves it in another valid shape (a new writer, the old one a reader),
which the lane's next certification takes as it finds it.  Each test waits for its own case's
certification and judges it.

Each case prints its row (failpoint, engine, false guarantees, seconds); the last case to finish
hands the whole matrix, with the sum of the cases' seconds and the time it took, to the run's closing
summary (``conftest.py``: a parallel run's workers have no terminal of their own), and the module writes
it as JSON beside the runs (``failpoint-matrix.json`` under its worker's base temporary directory).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
from test_certify import certify

from harness.cli.certify import suites_dir
from harness.guarantees import CATALOGUE, ENGINE_ORDER
from harness.plugin.coverage import CheckingTest, collect_checking_tests
from harness.plugin.selection import Selection, judging, pytest_name
from harness.standins.registry import cluster_class, cluster_from_state
from harness.statedir import STANDIN_RECORD, StateDir
from harness.targets.reference import CERTIFICATION_READER_MAX_CONNECTIONS, CERTIFICATION_READERS
from reference_proxy.failpoints import FAILPOINTS

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.matrix, pytest.mark.shares_cluster]

SEED = "42"


def broken_by(failpoint: str, engine: str) -> frozenset[str]:
    """The guarantees that ``failpoint`` must make false on ``engine``: those naming it that apply there."""
    return frozenset(g.id for g in CATALOGUE.values() if failpoint in g.demonstrated_by and g.applies_to(engine))


CASES = [pytest.param(name, engine, id=f"{name}-{engine}", marks=getattr(pytest.mark, engine))
         for name in sorted(FAILPOINTS) for engine in ENGINE_ORDER if broken_by(name, engine)]


CERTIFY_TIMEOUT_S = 840.0
"""The longest one certification may take (a full-profile case on a loaded machine takes a few minutes)."""


@dataclasses.dataclass(frozen=True)
class Certified:
    """One case's certification: what was selected, how the command ended, where its run is."""

    selection: Selection
    done: subprocess.CompletedProcess
    run_dir: Path
    seconds: float


class Lanes:
    """The selected cases' certifications, one thread per engine certifying its cases in turn on a
    stand-in of its own; :meth:`result` waits for one case."""

    def __init__(self, cases: list[tuple[str, str]], suite_tests: list[CheckingTest], tmp) -> None:
        self._suite_tests = suite_tests
        self._futures = {case: concurrent.futures.Future() for case in cases}
        self.started = time.monotonic()
        self._stopping = threading.Event()
        engines = [engine for engine in ENGINE_ORDER if any(c[1] == engine for c in cases)]
        # Every directory is made here, before any thread runs: pytest makes its base directory lazily,
        # and two lanes asking for their first directory at once both try to create it.
        self._run_dirs = {case: tmp.mktemp(f"{case[0]}-{case[1]}") / "run" for case in cases}
        states = {engine: StateDir(tmp.mktemp(f"standin-{engine}")) for engine in engines}
        self._threads = [threading.Thread(target=self._lane,
                                          args=(engine, [c for c in cases if c[1] == engine], states[engine]),
                                          name=f"matrix-{engine}", daemon=True)
                         for engine in engines]
        for thread in self._threads:
            thread.start()

    @property
    def count(self) -> int:
        return len(self._futures)

    def result(self, failpoint: str, engine: str) -> Certified:
        return self._futures[(failpoint, engine)].result(timeout=len(self._futures) * CERTIFY_TIMEOUT_S)

    def close(self) -> None:
        """Start no further certification; wait for the running ones, and their lanes' stand-ins to stop."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=CERTIFY_TIMEOUT_S + 120)

    def _lane(self, engine: str, cases: list[tuple[str, str]], state: StateDir) -> None:
        """Certify the engine's cases in turn. Whatever ends the lane early reaches every case still
        waiting, so no test waits on a future nobody will complete."""
        futures = [self._futures[c] for c in cases]
        try:
            self._run_lane(engine, cases, futures, state)
        except BaseException as e:  # noqa: BLE001 - re-raised by each waiting case's test
            for future in futures:
                if not future.done():
                    future.set_exception(e)

    def _run_lane(self, engine: str, cases: list[tuple[str, str]], futures: list, state: StateDir) -> None:
        cluster = cluster_class(engine)(readers=CERTIFICATION_READERS,
                                        reader_max_connections=CERTIFICATION_READER_MAX_CONNECTIONS[engine])
        try:
            cluster.start()
            state.write(STANDIN_RECORD, cluster.to_state())
            for (failpoint, _), future in zip(cases, futures, strict=True):
                if self._stopping.is_set():
                    future.cancel()
                    continue
                try:
                    future.set_result(self._certify(failpoint, engine, state))
                except Exception as e:  # noqa: BLE001 - the case's test re-raises it
                    future.set_exception(e)
        except Exception as e:  # noqa: BLE001 - the stand-in did not start: every case of the lane says why
            for future in futures:
                if not future.done():
                    future.set_exception(e)
        finally:
            record = state.read(STANDIN_RECORD)  # as the last certification left it (a failover changes roles)
            (cluster_from_state(record) if record is not None else cluster).stop()

    def _certify(self, failpoint: str, engine: str, state: StateDir) -> Certified:
        selection = judging(broken_by(failpoint, engine), self._suite_tests)
        run_dir = self._run_dirs[(failpoint, engine)]
        started = time.monotonic()
        done = certify("--target", "reference", "--engine", engine, "--standin", str(state.path),
                       *selection.certify_arguments(), "--proxy-setting", f"testing.failpoint={failpoint}",
                       "--run-dir", str(run_dir), "--seed", SEED, timeout=CERTIFY_TIMEOUT_S)
        return Certified(selection, done, run_dir, time.monotonic() - started)


@pytest.fixture(scope="module")
def certifications(request, tmp_path_factory):
    """The certifications of every case this session selected, started at once in their lanes."""
    cases = [(item.callspec.params["failpoint"], item.callspec.params["engine"]) for item in request.session.items
             if item.module is request.module and hasattr(item, "callspec")]
    lanes = Lanes(cases, collect_checking_tests(suites_dir()), tmp_path_factory)
    try:
        yield lanes
    finally:
        lanes.close()


@pytest.fixture(scope="module")
def matrix(certifications, tmp_path_factory):
    """The rows of the matrix as the cases finish; written as JSON when the module ends."""
    rows: list[dict] = []
    yield rows
    if rows:
        out = tmp_path_factory.getbasetemp() / "failpoint-matrix.json"
        out.write_text(json.dumps({"rows": rows, "total_s": round(sum(r["seconds"] for r in rows), 1),
                                   "wall_s": round(time.monotonic() - certifications.started, 1)}, indent=2))


def render(rows: list[dict], wall: float) -> list[str]:
    """The matrix as text: one line per failpoint x engine, then the total and the time it took."""
    width = max(len(r["failpoint"]) for r in rows)
    lines = [f"{'failpoint':<{width}}  {'engine':<8}  {'profile':<7}  {'seconds':>7}  false guarantees"]
    for r in rows:
        lines.append(f"{r['failpoint']:<{width}}  {r['engine']:<8}  {r['profile']:<7}  {r['seconds']:>7.1f}  "
                     f"{', '.join(r['false']) or '-'}")
    lines.append(f"{len(rows)} cases, {sum(r['seconds'] for r in rows):.1f} s in total, in {wall:.1f} s "
                 f"(one lane per engine, at once)")
    return lines


@pytest.mark.parametrize(("failpoint", "engine"), CASES)
@pytest.mark.timeout(3600)  # a case waits for its lane to reach it, behind the lane's earlier cases
def test_a_failpoint_makes_exactly_its_guarantees_false(failpoint, engine, certifications, matrix, request):
    expected = broken_by(failpoint, engine)
    case = certifications.result(failpoint, engine)
    selection, done, run_dir, seconds = case.selection, case.done, case.run_dir, case.seconds
    output = f"{done.stdout[-4000:]}\n{done.stderr[-3000:]}"
    results = json.loads((run_dir / "results.json").read_text())
    valid = {gid: v["valid"] for gid, v in results["guarantees"].items()}
    false = sorted(gid for gid, v in valid.items() if v == "false")
    row = {"failpoint": failpoint, "engine": engine, "profile": selection.profile, "seconds": round(seconds, 1),
           "false": false, "judged": sorted(valid), "selected": [t.test for t in selection.tests]}
    matrix.append(row)
    print(json.dumps(row))
    if len(matrix) == certifications.count:  # the last case hands the whole matrix on
        request.node.user_properties.append(
            ("summary", "\n".join(render(matrix, time.monotonic() - certifications.started))))

    assert done.returncode == 1, f"expected NOT CERTIFIED (exit 1), got {done.returncode}:\n{output}"
    assert (run_dir / "proxy.log").read_text().count(f"UNSAFE TEST MODE: failpoint {failpoint} is on") == 1
    ran = {t["id"].rsplit("::", 1)[-1].split("[")[0] for t in results["tests"]}
    assert ran == {pytest_name(t).split("[")[0] for t in selection.tests}, f"-k {selection.expression} ran {ran}"
    missing = sorted(expected - set(valid))
    assert not missing, f"the selected tests ({selection.expression}) did not judge {missing}:\n{output}"
    not_false = {gid: (valid[gid], results["guarantees"][gid].get("reason")) for gid in expected
                 if valid[gid] != "false"}
    assert not not_false, f"{failpoint} should make these false on {engine}: {not_false}\n{output}"
    consequences = FAILPOINTS[failpoint].may_also_break  # false or not, as timing has it
    unexpected = {gid: results["guarantees"][gid].get("reason") for gid in false
                  if gid not in expected and gid not in consequences}
    assert not unexpected, (f"{failpoint} made guarantees false that do not name it in demonstrated_by: "
                            f"{unexpected}")
