"""Reports of a certification run, rendered only from the files of its run directory.

``model`` loads a run directory into a :class:`~reports.model.Report`; ``junit``, ``json_report``,
``table`` and ``html`` render it.  Nothing here talks to a target: a report can be rebuilt from a
copied run directory long after the run.
"""

from reports.model import Report, ReportError, load_report

__all__ = ["Report", "ReportError", "load_report"]
