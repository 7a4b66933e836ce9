"""The run report: comparison table, figures and recommendation, regenerated from a run folder alone."""

from tasktune.report.build import ReportPaths, build_report

__all__ = ["ReportPaths", "build_report"]
