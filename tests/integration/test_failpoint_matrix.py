"""The failpoint matrix: every failpoint of the reference proxy, on every engine, makes exactly its
guarantees false.

For each failpoint (``reference_proxy.failpoints.FAILPOINTS``) the guarantees it must break are the
catalogue's entries that name it in ``demonstrated_by``.  The reference target is certified with the
failpoint on, running only the suite tests whose ``@pytest.mark.guarantee`` names one of them
(:func:`harness.plugin.selection.judging`, in the quick profile unless some of them are judged only in
the full one).  Among the guarantees those tests judge, the false ones must be exactly the failpoint's
own (each false, not unknown); the others may be true or unknown, never false.

Everything is derived: a failpoint added to the proxy and named by a guarantee is a new row, a suite
test marked with a guarantee joins its selection.  The catalogue's side is checked without servers in
``tests/unit/test_failpoint_catalogue.py`` (every name exists, every failpoint is named).

The cases of one engine share one stand-in cluster, started once and borrowed by each certification
(``--standin``): starting a cluster of four servers would otherwise be most of a short case's time.
A case that fails the cluster over leaves it in another valid shape (a new writer, the old one a
reader), which the next certification takes as it finds it.

Each case prints its row (failpoint, engine, false guarantees, seconds); the module prints the whole
matrix with the total when it ends and writes it as JSON beside the runs (``failpoint-matrix.json``
under pytest's base temporary directory).
"""

from __future__ import annotations

import contextlib
import json
import time

import pytest
from test_certify import certify

from harness.cli.certify import suites_dir
from harness.guarantees import CATALOGUE, ENGINE_ORDER
from harness.plugin.coverage import collect_checking_tests
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


@pytest.fixture(scope="module")
def suite_tests():
    return collect_checking_tests(suites_dir())


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    """One running stand-in per engine, started when a case first needs it: engine -> its state directory."""
    started: dict[str, StateDir] = {}

    def standin(engine: str) -> StateDir:
        if engine not in started:
            cluster = cluster_class(engine)(readers=CERTIFICATION_READERS,
                                            reader_max_connections=CERTIFICATION_READER_MAX_CONNECTIONS[engine])
            state = StateDir(tmp_path_factory.mktemp(f"standin-{engine}"))
            try:
                cluster.start()
                state.write(STANDIN_RECORD, cluster.to_state())
            except BaseException:
                cluster.stop()
                raise
            started[engine] = state
        return started[engine]

    yield standin
    for state in started.values():
        record = state.read(STANDIN_RECORD)
        if record is not None:  # as the last certification left it (a failover changes the roles)
            cluster_from_state(record).stop()


@pytest.fixture(scope="module")
def matrix(request, tmp_path_factory):
    """The rows of the matrix as the cases finish; printed and written when the module ends."""
    rows: list[dict] = []
    yield rows
    if not rows:
        return
    out = tmp_path_factory.getbasetemp() / "failpoint-matrix.json"
    out.write_text(json.dumps({"rows": rows, "total_s": round(sum(r["seconds"] for r in rows), 1)}, indent=2))
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None:  # shown whether or not output is captured (this runs in a test's teardown)
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            reporter.write_line("")
            for line in render(rows):
                reporter.write_line(line)
            reporter.write_line(f"(written to {out})")


def render(rows: list[dict]) -> list[str]:
    """The matrix as text: one line per failpoint x engine, then the total."""
    width = max(len(r["failpoint"]) for r in rows)
    lines = [f"{'failpoint':<{width}}  {'engine':<8}  {'profile':<7}  {'seconds':>7}  false guarantees"]
    for r in rows:
        lines.append(f"{r['failpoint']:<{width}}  {r['engine']:<8}  {r['profile']:<7}  {r['seconds']:>7.1f}  "
                     f"{', '.join(r['false']) or '-'}")
    lines.append(f"{len(rows)} cases, {sum(r['seconds'] for r in rows):.1f} s in total")
    return lines


@pytest.mark.parametrize(("failpoint", "engine"), CASES)
@pytest.mark.timeout(900)
def test_a_failpoint_makes_exactly_its_guarantees_false(failpoint, engine, suite_tests, standins, matrix, tmp_path):
    expected = broken_by(failpoint, engine)
    selection: Selection = judging(expected, suite_tests)
    run_dir = tmp_path / "run"
    started = time.monotonic()
    done = certify("--target", "reference", "--engine", engine, "--standin", str(standins(engine).path),
                   *selection.certify_arguments(),
                   "--proxy-setting", f"testing.failpoint={failpoint}", "--run-dir", str(run_dir), "--seed", SEED,
                   timeout=840)
    seconds = time.monotonic() - started
    output = f"{done.stdout[-4000:]}\n{done.stderr[-3000:]}"
    results = json.loads((run_dir / "results.json").read_text())
    valid = {gid: v["valid"] for gid, v in results["guarantees"].items()}
    false = sorted(gid for gid, v in valid.items() if v == "false")
    row = {"failpoint": failpoint, "engine": engine, "profile": selection.profile, "seconds": round(seconds, 1),
           "false": false, "judged": sorted(valid), "selected": [t.test for t in selection.tests]}
    matrix.append(row)
    print(json.dumps(row))

    assert done.returncode == 1, f"expected NOT CERTIFIED (exit 1), got {done.returncode}:\n{output}"
    assert (run_dir / "proxy.log").read_text().count(f"UNSAFE TEST MODE: failpoint {failpoint} is on") == 1
    ran = {t["id"].rsplit("::", 1)[-1].split("[")[0] for t in results["tests"]}
    assert ran == {pytest_name(t).split("[")[0] for t in selection.tests}, f"-k {selection.expression} ran {ran}"
    missing = sorted(expected - set(valid))
    assert not missing, f"the selected tests ({selection.expression}) did not judge {missing}:\n{output}"
    not_false = {gid: (valid[gid], results["guarantees"][gid].get("reason")) for gid in expected
                 if valid[gid] != "false"}
    assert not not_false, f"{failpoint} should make these false on {engine}: {not_false}\n{output}"
    unexpected = {gid: results["guarantees"][gid].get("reason") for gid in false if gid not in expected}
    assert not unexpected, (f"{failpoint} made guarantees false that do not name it in demonstrated_by: "
                            f"{unexpected}")
