"""``aurora-harness report`` and ``aurora-harness compare``: look at finished runs again.

Both read only run directories (see :mod:`harness.runstore`), so they work on a run copied from CI
long after it ended.  ``report`` renders junit.xml, report.json and report.html anew (after an
upgrade of the harness, or with ``--no-plots`` for a quick look) and prints the verdict table;
``compare`` says what changed from one run to another.

Exit status: ``report`` 0 when the files were written; ``compare`` 0, or 1 when a verdict got worse
from the first run to the second; both 2 when a run directory cannot be read (one line, no traceback).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from harness.cli.common import UnreadableInput


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print report.json instead of the table.")
@click.option("--no-plots", is_flag=True, help="Leave the plots out of report.html (faster; no matplotlib).")
def report(run_dir: Path, as_json: bool, no_plots: bool) -> None:
    """Rebuild the reports of RUN_DIR from its files and print its verdicts."""
    from harness.cli.certify import headline_text
    from reports.json_report import report_dict
    from reports.model import ReportError
    from reports.render import write_reports
    from reports.table import for_terminal

    try:
        rendered = write_reports(run_dir, plots=not no_plots)
    except ReportError as e:
        raise UnreadableInput(f"report: {e}") from None
    except OSError as e:
        raise UnreadableInput(f"report: cannot write the reports into {os.fspath(run_dir)!r}: {e.strerror}") from None
    if as_json:
        click.echo(json.dumps(report_dict(rendered, strict=True), indent=2))
        return
    click.echo(for_terminal(rendered))
    click.echo("")
    click.echo(f"written: {run_dir / 'report.html'}, {run_dir / 'report.json'}, {run_dir / 'junit.xml'}")
    click.echo(headline_text(rendered.certification))


@click.command()
@click.argument("run_a", type=click.Path(file_okay=False, path_type=Path))
@click.argument("run_b", type=click.Path(file_okay=False, path_type=Path))
@click.option("--tolerance", "tolerance_pct", type=click.FloatRange(min=0), default=10.0, show_default=True,
              metavar="PCT", help="A figure that moved by less than this percentage is not listed.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the comparison as an HTML page to this file.")
def compare(run_a: Path, run_b: Path, tolerance_pct: float, html_file: Path | None) -> None:
    """Say what changed from RUN_A to RUN_B: flipped verdicts, moved figures, request latency.

    Exit status: 0, or 1 when a verdict got worse; 2 when a run cannot be read."""
    from reports.compare import compare_reports, render_compare_html, render_text
    from reports.model import ReportError, load_report

    try:
        a, b = load_report(run_a), load_report(run_b)
    except ReportError as e:
        raise UnreadableInput(f"compare: {e}") from None
    comparison = compare_reports(a, b, tolerance_pct=tolerance_pct)
    click.echo(render_text(comparison))
    if html_file is not None:
        try:
            html_file.write_text(render_compare_html(comparison), encoding="utf-8")
        except OSError as e:
            raise UnreadableInput(f"compare: cannot write {os.fspath(html_file)!r}: {e.strerror}") from None
        click.echo(f"written: {html_file}")
    raise SystemExit(comparison.exit_status())
