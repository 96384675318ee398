"""The catalogue's ``demonstrated_by`` against the proxy's failpoints, and the narrow selections the
failpoint matrix certifies with.

The harness never imports the proxy, so nothing at run time checks that the names the catalogue gives
are failpoints the proxy has: this test sees both.  A failpoint no guarantee names would be a
misbehaviour the matrix never runs; a guarantee naming none is listed by ``aurora-harness
guarantees`` as demonstrated by none.
"""

from __future__ import annotations

import pytest

from harness.cli.certify import suites_dir
from harness.guarantees import CATALOGUE
from harness.plugin.coverage import CheckingTest, collect_checking_tests
from harness.plugin.selection import UnjudgedGuarantees, expression, judging, pytest_name
from reference_proxy.failpoints import FAILPOINTS


def test_every_name_in_demonstrated_by_is_a_failpoint_of_the_reference_proxy():
    unknown = {g.id: name for g in CATALOGUE.values() for name in g.demonstrated_by if name not in FAILPOINTS}
    assert not unknown, f"not failpoints of reference_proxy.failpoints: {unknown}"


def test_every_failpoint_is_named_by_at_least_one_guarantee():
    named = {name for g in CATALOGUE.values() for name in g.demonstrated_by}
    assert not sorted(set(FAILPOINTS) - named), "failpoints no guarantee names in demonstrated_by"


def test_each_failpoint_says_in_one_sentence_what_the_proxy_then_does_wrong():
    for name, failpoint in FAILPOINTS.items():
        assert failpoint.name == name and name.isidentifier()
        assert failpoint.misbehaviour and not failpoint.misbehaviour.endswith(".")  # logged inside a sentence


# -- selections --------------------------------------------------------------------------------------
KNOWN = [
    CheckingTest("conformance/test_a.py::test_a", ("A", "B")),
    CheckingTest("conformance/test_a.py::test_a_again", ("C",)),
    CheckingTest("chaos/test_r.py::test_rotate", ("R", "S")),
    CheckingTest("chaos/test_r.py::test_rotate_in_a_storm", ("R",), ("full",)),
    CheckingTest("chaos/test_r.py::test_rotate_two_users", ("R", "T"), ("full",)),
    CheckingTest("chaos/test_n.py::test_net[blackhole]", ("N",), ("full",)),
]


def test_a_selection_runs_the_tests_naming_the_guarantees_in_the_quick_profile_and_nothing_longer():
    chosen = judging({"A"}, KNOWN)
    assert chosen.profile == "quick" and [t.test for t in chosen.tests] == ["conformance/test_a.py::test_a"]
    assert chosen.judged == {"A", "B"}
    assert chosen.expression == "(test_a and not test_a_again)"
    assert chosen.certify_arguments() == ["--profile", "quick", "-k", "(test_a and not test_a_again)"]
    # R is judged in quick by test_rotate: the full-only tests naming it are left out.
    rotate = judging({"R", "C"}, KNOWN)
    assert rotate.profile == "quick"
    assert [pytest_name(t) for t in rotate.tests] == ["test_a_again", "test_rotate"]
    assert rotate.expression == "test_a_again or (test_rotate and not test_rotate_in_a_storm and not test_rotate_two_users)"


def test_a_guarantee_judged_only_in_the_full_profile_moves_the_selection_there_with_just_its_tests():
    both = judging({"S", "T"}, KNOWN)
    assert both.profile == "full"
    assert [pytest_name(t) for t in both.tests] == ["test_rotate", "test_rotate_two_users"]
    assert both.judged == {"R", "S", "T"}
    assert judging({"N"}, KNOWN).expression == "test_net[blackhole]"


def test_a_guarantee_no_test_names_cannot_be_selected():
    with pytest.raises(UnjudgedGuarantees, match="no suite test names Z"):
        judging({"A", "Z"}, KNOWN)
    with pytest.raises(ValueError, match="no guarantee"):
        judging(set(), KNOWN)
    with pytest.raises(ValueError, match="no test chosen"):
        expression([], KNOWN)


@pytest.mark.parametrize("guarantees", [{"ROTATION-NEW-LOGINS"}, {"NETFAULT-SILENT-DETECTED"},
                                        {"PIN-TRIGGERS", "SESSION-OWN-STATE"}])
def test_pytest_given_the_derived_expression_collects_exactly_the_chosen_suite_tests(guarantees):
    """A name that is the start of a longer one (a rotation test and its storm variant), a parametrized
    case, several modules: pytest, given the -k, collects just the chosen tests.  (The failpoint matrix
    checks every failpoint's selection the same way, from the tests its certification ran.)"""
    suite_tests = collect_checking_tests(suites_dir())
    chosen = judging(guarantees, suite_tests)
    assert guarantees <= chosen.judged
    collected = collect_checking_tests(suites_dir(), select=chosen.expression)
    # A parametrized function collapses to its name when every collected case checks the same.
    functions = {pytest_name(t).split("[")[0] for t in chosen.tests}
    assert {pytest_name(t).split("[")[0] for t in collected} == functions
    assert {g for t in collected for g in t.guarantees} == chosen.judged


def test_a_failpoints_possible_consequences_are_guarantees_it_is_not_required_to_break():
    for failpoint in FAILPOINTS.values():
        for gid, why in failpoint.may_also_break.items():
            assert gid in CATALOGUE, (failpoint.name, gid)
            assert failpoint.name not in CATALOGUE[gid].demonstrated_by, (failpoint.name, gid)
            assert len(why) > 40, "each consequence says why it happens"
