"""``aurora-harness guarantees``: the catalogue as a guarantee × engine table, and which suite checks what.

Each cell says how one guarantee is checked on one engine: the suite tests that name it in
``@pytest.mark.guarantee`` (read from the suites by collecting them, see
:mod:`harness.plugin.coverage`), or the catalogue's one-sentence reason it does not apply there, or
NOT CHECKED when it applies and no suite test names it.  Nothing is typed by hand, so the table is as
true as the marks and the catalogue.  The "demonstrated by" column names the reference proxy's
failpoints that make each guarantee false (the catalogue's ``demonstrated_by``), or NONE: a
guarantee no failpoint breaks has not been shown to check anything.

``--json`` prints the same as JSON; ``--markdown`` prints the README's section, and
``--write-readme FILE`` rewrites that section in place, between :data:`START` and :data:`END`.  A
unit test fails when the README's section differs from what this command generates.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from harness.cli.certify import suites_dir
from harness.cli.common import CliFailure
from harness.guarantees import CATALOGUE, ENGINE_ORDER
from harness.plugin import PluginError
from harness.plugin.coverage import (
    CheckingTest,
    Coverage,
    EngineCoverage,
    Status,
    collect_checking_tests,
    coverage,
)

START = "<!-- guarantees:start -->"
END = "<!-- guarantees:end -->"
PROFILE_NOTE = "a test marked (full) runs only in the full certification profile."
DEMONSTRATED_BY = "demonstrated by"
"""The column naming the failpoints that make a guarantee false."""
GENERATED_NOTE = ("Generated from the catalogue and the suites' marks by "
                  "`aurora-harness guarantees --write-readme README.md`; do not edit by hand.")


def current_coverage() -> list[Coverage]:
    """The catalogue joined with the marks of the installed suites."""
    return coverage(CATALOGUE, collect_checking_tests(suites_dir()))


def _test_label(test: CheckingTest) -> str:
    return test.test + "".join(f" ({p})" for p in test.profiles)


def _cell_lines(cell: EngineCoverage) -> list[str]:
    if cell.status is Status.CHECKED:
        return [_test_label(t) for t in cell.tests]
    if cell.status is Status.NOT_APPLICABLE:
        return [f"does not apply: {cell.reason}"]
    return ["NOT CHECKED"]


def render_text(rows: list[Coverage]) -> str:
    """A plain-text table; a cell with several tests takes a line per test."""
    header = ["guarantee", "family", DEMONSTRATED_BY, *ENGINE_ORDER]
    table = [[[r.guarantee.id], [r.guarantee.family.value], list(r.guarantee.demonstrated_by) or ["NONE"],
              *(_cell_lines(r.engines[e]) for e in ENGINE_ORDER)]
             for r in rows]
    widths = [max(len(header[i]), *(len(line) for row in table for line in row[i])) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    for row in table:
        for n in range(max(len(cell) for cell in row)):
            out.append(line([cell[n] if n < len(cell) else "" for cell in row]))
    out += ["", _summary(rows), PROFILE_NOTE.capitalize(), *_not_promised(rows)]
    return "\n".join(out)


def _not_promised(rows: list[Coverage], code: str = "") -> list[str]:
    """One line per guarantee a target's proxy documents it does not keep (``not_promised``)."""
    return [f"Not promised by {target} on {engine}, where a failure is reported unknown: "
            f"{code}{r.guarantee.id}{code}: {why}"
            for r in rows for (target, engine), why in r.guarantee.not_promised.items()]


def _summary(rows: list[Coverage]) -> str:
    counts = {s: sum(1 for r in rows for c in r.engines.values() if c.status is s) for s in Status}
    undemonstrated = sum(1 for r in rows if not r.guarantee.demonstrated_by)
    return (f"{len(rows)} guarantees x {len(ENGINE_ORDER)} engines: {counts[Status.CHECKED]} checked, "
            f"{counts[Status.NOT_CHECKED]} not checked, {counts[Status.NOT_APPLICABLE]} do not apply; "
            f"{len(rows) - undemonstrated} demonstrated by a failpoint, {undemonstrated} by none.")


def render_markdown(rows: list[Coverage]) -> str:
    """The README's generated section (without its markers)."""
    def cell(c: EngineCoverage) -> str:
        if c.status is Status.CHECKED:
            return "<br>".join(f"`{t.test}`" + "".join(f" ({p})" for p in t.profiles) for t in c.tests)
        if c.status is Status.NOT_APPLICABLE:
            return f"does not apply: {c.reason}"
        return "**not checked**"

    lines = [GENERATED_NOTE, "",
             f"| guarantee | family | {DEMONSTRATED_BY} | " + " | ".join(ENGINE_ORDER) + " |",
             "|---|---|---|" + "---|" * len(ENGINE_ORDER)]
    for r in rows:
        shown_by = "<br>".join(f"`{name}`" for name in r.guarantee.demonstrated_by) or "**none**"
        cells = [f"`{r.guarantee.id}`", r.guarantee.family.value, shown_by, *(cell(r.engines[e]) for e in ENGINE_ORDER)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += ["", f"{_summary(rows)} Test paths are relative to `suites/`; {PROFILE_NOTE}"]
    lines += [f"\n{note}" for note in _not_promised(rows, "`")]
    return "\n".join(lines)


def readme_section(text: str) -> str:
    """What is between the markers of ``text`` (without them); a ValueError if they are not there once."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"expected one {START} followed by one {END}")
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n")


def with_readme_section(text: str, body: str) -> str:
    """``text`` with the section between the markers replaced by ``body``."""
    readme_section(text)  # the markers are there, once each, in order
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    return f"{before}{START}\n{body}\n{END}{after}"


@click.command("guarantees")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
@click.option("--markdown", is_flag=True, help="Print the README's section (a Markdown table).")
@click.option("--write-readme", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help=f"Rewrite the section of FILE between {START} and {END}.")
def guarantees(as_json: bool, markdown: bool, write_readme: Path | None) -> None:
    """The guarantee catalogue x engines: which suite test checks each guarantee, or why it does not apply."""
    if as_json and markdown:
        raise CliFailure("--json and --markdown are two ways of printing the table; choose one")
    try:
        rows = current_coverage()
    except PluginError as e:
        raise CliFailure(str(e)) from None
    if write_readme is not None:
        text = write_readme.read_text()
        try:
            updated = with_readme_section(text, render_markdown(rows))
        except ValueError as e:
            raise CliFailure(f"{write_readme}: {e}") from None
        if updated != text:
            write_readme.write_text(updated)
        click.echo(f"{write_readme}: guarantee table {'updated' if updated != text else 'already up to date'}",
                   err=True)
        return
    if as_json:
        click.echo(json.dumps({"engines": list(ENGINE_ORDER), "guarantees": [r.to_dict() for r in rows]}, indent=2))
    elif markdown:
        click.echo(render_markdown(rows))
    else:
        click.echo(render_text(rows))
