"""The weekly report: its model, the builder, figures and the HTML / Markdown / JSON renderers."""

from uplift.reports.builder import build_weekly_report
from uplift.reports.render import save_report, to_html, to_markdown
from uplift.reports.results import (
    Action,
    Headline,
    LearnCheck,
    ModelChange,
    OutcomeWords,
    WeeklyReport,
    read_report,
)

__all__ = [
    "Action",
    "Headline",
    "LearnCheck",
    "ModelChange",
    "OutcomeWords",
    "WeeklyReport",
    "build_weekly_report",
    "read_report",
    "save_report",
    "to_html",
    "to_markdown",
]
