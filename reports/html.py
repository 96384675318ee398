"""``report.html``: one self-contained page of a run, rendered with Jinja2 from the run directory.

Self-contained because run directories are copied around and opened offline (a CI artifact, an
attachment): no scripts, no web fonts, no CDN; the stylesheet is in the page and the plots are
inline SVG.  Everything on the page comes from the run directory's files (through
:class:`~reports.model.Report`), so ``aurora-harness report`` rebuilds the same page later.
"""

from __future__ import annotations

from typing import Any

from reports.evidence import evidence_rows
from reports.model import Report

EVIDENCE_ROWS = 50
"""Evidence rows shown per guarantee; the rest are counted (results.json keeps them all)."""

HEADLINE_CLASS = {"CERTIFIED": "certified", "NOT CERTIFIED": "not-certified", "INCOMPLETE": "incomplete",
                  "NOT CARRIED OUT": "not-carried-out"}

DRIVERS = ("psycopg", "PyMySQL", "mysql-connector-python", "aiomysql")


def render_html(report: Report, *, plots: bool = True) -> str:
    """The page of ``report``; ``plots=False`` leaves the plots out (faster, no matplotlib needed)."""
    figures = []
    if plots:
        from reports.plots import plots_of_run  # imported here: matplotlib is heavy and optional at import

        figures = plots_of_run(report)
    return template("report.html.j2").render(page_context(report, figures, plots_requested=plots))


def template(name: str) -> Any:
    """A page template of ``reports/templates`` (package data), every value HTML-escaped unless
    marked safe (only the plots' SVG is)."""
    import jinja2  # imported here: only rendering a page needs it

    env = jinja2.Environment(loader=jinja2.PackageLoader("reports", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template(name)


def versions(report: Report) -> list[tuple[str, str]]:
    """(what, version) pairs for the page's header: harness, proxy, database, drivers, then the rest."""
    v = dict(report.run.get("versions") or {})
    harness = v.pop("aurora-proxy-harness", None)
    if report.run.get("target") == "reference":
        proxy = f"reference-proxy {harness}" if harness else "reference-proxy"
    else:
        proxy = v.pop("proxy", None) or "not reported by the target"
    out = [("harness", harness or "-"), ("proxy", proxy), ("database", v.pop("server", None) or "-")]
    drivers = [f"{d} {v.pop(d)}" for d in DRIVERS if v.get(d)]
    out.append(("drivers", ", ".join(drivers) or "-"))
    out += sorted((k, str(val)) for k, val in v.items() if val)
    return out


def page_context(report: Report, figures: list[Any], *, plots_requested: bool = True) -> dict[str, Any]:
    """Everything the template shows, as plain values (the template has no logic beyond loops)."""
    run = report.run
    outcome = report.certification
    guarantees = []
    for row in report.rows:
        history = report.history(row.decided_by)
        evidence = evidence_rows(row.evidence[:EVIDENCE_ROWS], history)
        guarantees.append({"id": row.id, "sentence": row.sentence or "", "valid": row.valid,
                           "figure_vs_threshold": row.figure_vs_threshold, "reason": row.reason,
                           "decided_by": row.decided_by or "", "judgements": report.judgements(row.id),
                           "evidence": evidence, "evidence_total": len(row.evidence),
                           "anchored": history is not None and history.anchor is not None})
    return {
        "headline": outcome.headline,
        "headline_class": HEADLINE_CLASS.get(outcome.headline, "incomplete"),
        "summary": outcome.summary(),
        "problems": outcome.problems(),
        "run": {k: ("-" if run.get(k) is None else run.get(k))
                for k in ("target", "engine", "profile", "seed", "started_at", "finished_at", "duration_s")},
        "status": report.results.get("status") or "-",
        "target_error": report.results.get("target_error"),
        "versions": versions(report),
        "command": report.command,
        "counts": report.counts(),
        "guarantees": guarantees,
        "failed_tests": report.failed_tests(),
        "checks": report.tests_without_guarantees(),
        "not_in_profile": list(report.results.get("not_in_profile") or []),
        "figures": figures,
        "plots_requested": plots_requested,
        "files": report.files(),
    }
