"""report.md: the same content as the HTML for reading in a terminal or a repository browser; the
figures are linked as SVG files beside it. No timestamp other than the results' own."""

from __future__ import annotations

from tasktune.report.figures import ReportFigure
from tasktune.report.model import ReportData
from tasktune.report.table import TEXT_COLUMNS, columns, table_legend, table_rows


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell or paragraph: no pipe, no stray HTML, one line."""
    return (
        text.replace("\\", "\\\\")
        .replace("|", "\\|")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("\n", " ")
    )


def render_markdown(data: ReportData, main: list[ReportFigure], confusions: list[ReportFigure]) -> str:
    rec = data.recommendation
    lines = [f"# {_md(data.title)}", ""]
    lines += [f"- **{_md(k)}**: {_md(v)}" for k, v in data.meta_items()]
    lines += ["", "## Recommendation", ""]
    if rec.warning:
        lines += [f"> **Warning:** {_md(rec.warning)}", ""]
    lines += [_md(rec.reasons), ""]
    lines += ["## Results", ""]
    cols = columns(data.comparison.metric)
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join(":---" if c in TEXT_COLUMNS else "---:" for c in cols) + "|")
    for row in table_rows(data.comparison, rec.choice):
        values = [_md(v) for v in row.values]
        if row.recommended:
            values[0] = f"**{values[0]}** ★"
        lines.append("| " + " | ".join(values) + " |")
    lines += ["", _md(table_legend(data.comparison.metric)) + " ★ recommended.", ""]
    if data.notes:
        lines += ["## Notes", ""] + [f"- {_md(n)}" for n in data.notes] + [""]
    lines += ["## Figures", ""]
    for fig in main:
        lines += [
            f"### {_md(fig.title)}",
            "",
            f"![{_md(fig.title)}](figures/{fig.id}.svg)",
            "",
            _md(fig.caption),
            "",
        ]
    lines += ["### Confusion matrices", ""]
    lines += [f"- [{_md(fig.title)}](figures/{fig.id}.svg)" for fig in confusions]
    lines.append("")
    return "\n".join(lines)
