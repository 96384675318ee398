"""The guarantee × engine table: derived from the catalogue and the suites' marks, and kept in the README."""

from __future__ import annotations

import json
import pathlib
import textwrap

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.cli.guarantees import (
    END,
    START,
    current_coverage,
    readme_section,
    render_markdown,
    render_text,
    with_readme_section,
)
from harness.guarantees import CATALOGUE, ENGINES, Comparison, Family, Guarantee, GuaranteeError
from harness.plugin import PluginError
from harness.plugin.coverage import CheckingTest, Status, collect_checking_tests, coverage

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _guarantee(gid: str, **kw) -> Guarantee:
    return Guarantee(gid, "Holds within {threshold} {unit}.", 1.0, "s", Family.POOLING, Comparison.AT_MOST,
                     "§0: made up for a test.", **kw)


NO_MYSQL = "MySQL has no such thing to promise."
SYNTHETIC = {g.id: g for g in (_guarantee("A-BOTH", demonstrated_by=("drop_it", "lose_it")),
                               _guarantee("B-PG-ONLY", not_applicable={"mysql": NO_MYSQL}),
                               _guarantee("C-UNCHECKED"))}


# -- the catalogue's reasons -------------------------------------------------------------------------
def test_an_engine_is_left_out_only_with_a_sentence_saying_why():
    only_pg = SYNTHETIC["B-PG-ONLY"]
    assert only_pg.engines == {"postgres"} and only_pg.applies_to("postgres") and not only_pg.applies_to("mysql")
    assert only_pg.not_applicable["mysql"] == NO_MYSQL
    assert only_pg.with_threshold(2).not_applicable == {"mysql": NO_MYSQL}
    with pytest.raises(TypeError):
        only_pg.not_applicable["postgres"] = "changed."  # type: ignore[index]
    with pytest.raises(GuaranteeError, match="unknown engine"):
        _guarantee("X", not_applicable={"oracle": "Not ours."})
    with pytest.raises(GuaranteeError, match="must be a sentence"):
        _guarantee("X", not_applicable={"mysql": ""})
    assert all(g.engines == ENGINES - set(g.not_applicable) for g in CATALOGUE.values())


# -- the table from marks ----------------------------------------------------------------------------
def test_each_cell_is_checked_by_tests_or_does_not_apply_with_its_reason_or_is_not_checked():
    tests = [CheckingTest("conformance/test_a.py::test_a", ("A-BOTH", "B-PG-ONLY")),
             CheckingTest("chaos/test_b.py::test_b", ("A-BOTH",), ("full",))]
    rows = {r.guarantee.id: r for r in coverage(SYNTHETIC, tests)}
    assert list(rows) == ["A-BOTH", "B-PG-ONLY", "C-UNCHECKED"]
    assert [t.test for t in rows["A-BOTH"].engines["mysql"].tests] == ["conformance/test_a.py::test_a",
                                                                       "chaos/test_b.py::test_b"]
    assert rows["B-PG-ONLY"].engines["postgres"].status is Status.CHECKED
    assert rows["B-PG-ONLY"].engines["mysql"].status is Status.NOT_APPLICABLE
    assert rows["C-UNCHECKED"].engines["postgres"].status is Status.NOT_CHECKED
    assert rows["B-PG-ONLY"].to_dict()["engines"] == {
        "postgres": {"status": "checked", "tests": [{"test": "conformance/test_a.py::test_a", "profiles": []}]},
        "mysql": {"status": "does not apply", "reason": NO_MYSQL}}
    text = render_text(list(rows.values()))
    assert "chaos/test_b.py::test_b (full)" in text and f"does not apply: {NO_MYSQL}" in text
    assert "NOT CHECKED" in text
    assert ("3 guarantees x 2 engines: 3 checked, 2 not checked, 1 do not apply; "
            "1 demonstrated by a failpoint, 2 by none.") in text
    header, _, first, second = text.splitlines()[:4]
    assert header.split()[:4] == ["guarantee", "family", "demonstrated", "by"]
    assert first.split()[:3] == ["A-BOTH", "pooling", "drop_it"] and second.split() == ["lose_it", "chaos/test_b.py::test_b",
                                                                                        "(full)", "chaos/test_b.py::test_b",
                                                                                        "(full)"]
    assert "B-PG-ONLY    pooling  NONE " in text
    markdown = render_markdown(list(rows.values()))
    assert "| guarantee | family | demonstrated by | postgres | mysql |" in markdown
    assert "| `C-UNCHECKED` | pooling | **none** | **not checked** | **not checked** |" in markdown
    assert "| `A-BOTH` | pooling | `drop_it`<br>`lose_it` | " in markdown
    assert f"| `B-PG-ONLY` | pooling | **none** | `conformance/test_a.py::test_a` | does not apply: {NO_MYSQL} |" in markdown
    assert rows["A-BOTH"].to_dict()["demonstrated_by"] == ["drop_it", "lose_it"]


def test_a_guarantee_names_the_failpoints_that_make_it_false_as_a_tuple_of_names():
    assert _guarantee("X").demonstrated_by == ()
    assert _guarantee("X", demonstrated_by=["a_b"]).demonstrated_by == ("a_b",)
    for bad in ("a_b", ("a b",), (3,), ("",)):
        with pytest.raises(GuaranteeError, match="demonstrated_by must list failpoint names"):
            _guarantee("X", demonstrated_by=bad)


PROBE_SUITE = textwrap.dedent('''
    import pytest

    pytestmark = pytest.mark.guarantee("POOL-BACKEND-CAP")

    def test_module_mark_only():
        pass

    @pytest.mark.profile("full")
    @pytest.mark.guarantee("STORM-SERVED", "POOL-BACKEND-CAP")
    def test_function_mark_in_full():
        pass

    @pytest.mark.parametrize("kind", ["a", "b"])
    def test_every_case_alike(kind):
        pass

    @pytest.mark.parametrize("kind", [pytest.param("silent", marks=pytest.mark.guarantee("NETFAULT-SILENT-DETECTED")),
                                      "loud"])
    def test_one_case_marked(kind):
        pass
''')


def test_marks_are_read_as_pytest_collects_them_without_running_anything(tmp_path):
    (tmp_path / "family").mkdir()
    (tmp_path / "family" / "test_coverage_probe.py").write_text(PROBE_SUITE)
    (tmp_path / "family" / "test_coverage_probe_unmarked.py").write_text("def test_plain():\n    assert False\n")
    found = collect_checking_tests(tmp_path)
    probe = "family/test_coverage_probe.py::"
    assert found == [
        CheckingTest(probe + "test_module_mark_only", ("POOL-BACKEND-CAP",)),
        CheckingTest(probe + "test_function_mark_in_full", ("STORM-SERVED", "POOL-BACKEND-CAP"), ("full",)),
        CheckingTest(probe + "test_every_case_alike", ("POOL-BACKEND-CAP",)),
        CheckingTest(probe + "test_one_case_marked[silent]", ("NETFAULT-SILENT-DETECTED", "POOL-BACKEND-CAP")),
        CheckingTest(probe + "test_one_case_marked[loud]", ("POOL-BACKEND-CAP",)),
    ]


def test_a_suite_that_cannot_be_collected_is_a_clear_error(tmp_path):
    (tmp_path / "test_coverage_probe_typo.py").write_text(
        "import pytest\n\n@pytest.mark.guarantee('NO-SUCH-GUARANTEE')\ndef test_x():\n    pass\n")
    with pytest.raises(PluginError, match="NO-SUCH-GUARANTEE"):
        collect_checking_tests(tmp_path)


# -- the command and the README ----------------------------------------------------------------------
def test_the_command_prints_the_catalogue_as_json_and_as_a_table():
    result = CliRunner().invoke(cli, ["guarantees", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["engines"] == ["postgres", "mysql"]
    assert [g["id"] for g in data["guarantees"]] == list(CATALOGUE)
    isolation = next(g for g in data["guarantees"] if g["id"] == "ISOLATION-NO-SESSION-LEAK")
    assert {"test": "conformance/test_isolation.py::test_session_state_never_leaks", "profiles": []} \
        in isolation["engines"]["postgres"]["tests"]
    text = CliRunner().invoke(cli, ["guarantees"])
    assert text.exit_code == 0 and text.output.startswith("guarantee ") and "ISOLATION-NO-SESSION-LEAK" in text.output
    both = CliRunner().invoke(cli, ["guarantees", "--json", "--markdown"])
    assert both.exit_code == 1 and "choose one" in both.output


def test_the_readme_section_is_replaced_between_its_markers_only(tmp_path):
    text = f"# Title\n\nintro\n\n{START}\nold table\n{END}\n\n## Next\n"
    assert readme_section(text) == "old table"
    assert with_readme_section(text, "new table") == f"# Title\n\nintro\n\n{START}\nnew table\n{END}\n\n## Next\n"
    with pytest.raises(ValueError, match="expected one"):
        readme_section("no markers here")
    readme = tmp_path / "README.md"
    readme.write_text(text)
    result = CliRunner().invoke(cli, ["guarantees", "--write-readme", str(readme)])
    assert result.exit_code == 0, result.output
    assert readme_section(readme.read_text()) == render_markdown(current_coverage())
    assert readme.read_text().endswith(f"{END}\n\n## Next\n")


def test_the_readme_table_is_what_the_catalogue_and_the_suites_say_now():
    in_readme = readme_section((ROOT / "README.md").read_text())
    assert in_readme == render_markdown(current_coverage()), (
        "README.md's guarantee table is out of date: run `aurora-harness guarantees --write-readme README.md`")
