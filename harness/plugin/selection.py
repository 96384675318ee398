"""The narrowest certification that judges a given set of guarantees: a profile and a ``-k`` expression.

Showing that a misbehaviour makes its guarantees false needs a run of only the suite tests that judge
them; anything more costs time and risks other verdicts.  Which tests those are is read from the
suites' own ``@pytest.mark.guarantee`` and ``@pytest.mark.profile`` marks (collected by
:func:`~harness.plugin.coverage.collect_checking_tests`), never from a list kept by hand, so a test
added to a suite is selected as soon as it names a guarantee.

The quick profile is preferred: a guarantee that some test judges in every profile is judged there.
Only when a guarantee is judged by profile-limited tests alone does the selection move to that
profile (``full``), adding just those tests.

A ``-k`` expression matches substrings, so ``test_single_user_rotation`` would also select
``test_single_user_rotation_under_a_connection_storm``; each such longer name among the known tests
is excluded by name, which keeps the selection exact for every test the marks know of.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Sequence

from harness.plugin.coverage import CheckingTest

__all__ = ["DEFAULT_PROFILE", "Selection", "UnjudgedGuarantees", "judging", "pytest_name"]

DEFAULT_PROFILE = "quick"


class UnjudgedGuarantees(ValueError):
    """Some of the guarantees asked for are named by no suite test (in no profile)."""


@dataclasses.dataclass(frozen=True)
class Selection:
    """What to certify with: ``profile``, and ``expression`` for ``-k``, which runs exactly ``tests``.

    ``judged`` is every guarantee those tests name: the asked-for ones and the others they judge
    on the way."""

    profile: str
    tests: tuple[CheckingTest, ...]
    expression: str
    judged: frozenset[str]

    def certify_arguments(self) -> list[str]:
        """The ``aurora-harness certify`` options that make this selection."""
        return ["--profile", self.profile, "-k", self.expression]


def pytest_name(test: CheckingTest) -> str:
    """The name pytest knows a test by within its module (``test_x`` or ``test_x[case]``)."""
    return test.test.rsplit("::", 1)[-1]


def _runs_in(test: CheckingTest, profile: str) -> bool:
    return not test.profiles or profile in test.profiles


def judging(guarantees: Collection[str], tests: Sequence[CheckingTest], *,
            profile: str = DEFAULT_PROFILE) -> Selection:
    """The tests among ``tests`` that judge any of ``guarantees``, run in ``profile`` when they all can be.

    A guarantee judged in ``profile`` by no test, but by a test limited to another profile, moves the
    selection to that profile (one only: two such profiles at once raise ValueError).  A guarantee no
    test names raises :class:`UnjudgedGuarantees`."""
    wanted = set(guarantees)
    if not wanted:
        raise ValueError("no guarantee to select tests for")
    naming = [t for t in tests if wanted & set(t.guarantees)]
    unnamed = sorted(wanted - {g for t in naming for g in t.guarantees})
    if unnamed:
        raise UnjudgedGuarantees(f"no suite test names {', '.join(unnamed)}")
    chosen = [t for t in naming if _runs_in(t, profile)]
    left = wanted - {g for t in chosen for g in t.guarantees}
    if left:
        others = sorted({p for t in naming if left & set(t.guarantees) for p in t.profiles})
        if len(others) != 1:
            raise ValueError(f"{', '.join(sorted(left))} are judged only in profiles {', '.join(others)}; "
                             f"choose one")
        profile = others[0]
        chosen += [t for t in naming if t not in chosen and left & set(t.guarantees) and _runs_in(t, profile)]
    return Selection(profile, tuple(chosen), expression(chosen, tests),
                     frozenset(g for t in chosen for g in t.guarantees))


def expression(chosen: Iterable[CheckingTest], known: Iterable[CheckingTest]) -> str:
    """A ``-k`` expression matching the chosen tests' names and none of the other known tests'."""
    names = list(dict.fromkeys(pytest_name(t) for t in chosen))
    if not names:
        raise ValueError("no test chosen")
    others = sorted({pytest_name(t) for t in known} - set(names))
    terms = []
    for name in names:
        longer = [o for o in others if name in o]
        terms.append(" and ".join([name, *(f"not {o}" for o in longer)]))
    return " or ".join(f"({term})" if " " in term else term for term in terms)
