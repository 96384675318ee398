"""The certification's progress lines, on a fake clock: counts, elapsed time, the estimate, headings."""

from __future__ import annotations

from harness.plugin.progress import Progress, clock_text, suite_of


def test_lines_count_the_tests_and_estimate_what_is_left() -> None:
    now = [100.0]
    progress = Progress(4, clock=lambda: now[0])
    assert progress.starting("conformance/test_routing.py::test_a", 2) == "-- conformance/test_routing.py (2 tests)"
    assert progress.starting("conformance/test_routing.py::test_b", 2) is None, "one heading per suite"
    now[0] = 130.0
    assert progress.finished("conformance/test_routing.py::test_a", "passed", 30.04) == \
        "[1/4 0:30 elapsed, ~1:30 left] test_a PASSED (30.0 s)"
    now[0] = 140.0
    assert progress.finished("conformance/test_routing.py::test_b", "failed", 10) == \
        "[2/4 0:40 elapsed, ~0:40 left] test_b FAILED (10.0 s)"
    assert progress.starting("chaos/test_storm.py::test_c[1000]", 1) == "-- chaos/test_storm.py (1 test)"
    progress.finished("chaos/test_storm.py::test_c[1000]", "skipped", 0)
    assert progress.finished("x.py::t", "passed", 0).startswith("[4/4 0:40 elapsed, last test] t PASSED")


def test_clock_text_and_suite_names() -> None:
    assert [clock_text(s) for s in (0, 59.6, 61, 3599, 3600, 7384)] == [
        "0:00", "1:00", "1:01", "59:59", "1:00:00", "2:03:04"]
    assert suite_of("chaos/test_failover.py::test_x[postgres]") == "chaos/test_failover.py"
