"""report.html: one self-contained page (inline CSS and SVG; no script, no external resource).

Every user-derived string (task name, labels, route and backbone names, notes) goes through
`html.escape`. The SVGs are matplotlib's own output with text drawn as paths; their internal ids are
prefixed per figure, because several inline SVGs share one id space in the page.
"""

from __future__ import annotations

import re
from html import escape

from tasktune import __version__
from tasktune.report.figures import ReportFigure
from tasktune.report.model import ReportData
from tasktune.report.table import TEXT_COLUMNS, columns, table_legend, table_rows

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto;
       max-width: 1340px; padding: 0 16px; color: #1d1d1f; background: #fff; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.meta { color: #555; font-size: 0.92em; } .meta span { margin-right: 1.4em; }
#recommendation { background: #eef6ee; border-left: 5px solid #2e7d32; padding: 12px 16px; }
#recommendation.warn { background: #fff4e5; border-left-color: #e65100; }
#recommendation .choice { font-size: 1.15em; font-weight: 600; }
#recommendation .reasons { font-size: 1.02em; margin: 0; }
.warning { color: #b34700; font-weight: 600; }
.figs { display: flex; flex-wrap: wrap; gap: 18px; }
figure { margin: 0; } figure svg { max-width: 100%; height: auto; display: block; }
figcaption { font-size: 0.85em; color: #555; max-width: 640px; }
.confusions { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
.confusions figure { width: 420px; } .confusions svg { width: 100%; }
table { border-collapse: collapse; font-size: 0.8em; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 6px; border-bottom: 1px solid #e3e3e3; white-space: nowrap; }
th { background: #f4f4f6; text-align: right; white-space: normal; vertical-align: bottom; }
td.num { text-align: right; } th.text, td.text { text-align: left; }
tr.best td { font-weight: 600; } tr.recommended { background: #eef6ee; }
tr.below td { color: #777; } tr.uncompared td { color: #999; font-style: italic; }
.legend, .notes { font-size: 0.85em; color: #555; max-width: 1100px; }
.tablewrap { overflow-x: auto; }
"""


def inline_svg(fig: ReportFigure) -> str:
    """The standalone SVG as an inline element with id=fig.id and its internal ids made unique."""
    svg = fig.svg
    svg = svg[svg.index("<svg") :]  # drop the XML declaration and DOCTYPE
    prefix = fig.id
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', svg)
    svg = re.sub(r'href="#([^"]+)"', rf'href="#{prefix}-\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", svg)
    label = escape(fig.title, quote=True)
    return svg.replace("<svg", f'<svg id="{fig.id}" role="img" aria-label="{label}"', 1)


def _figure(fig: ReportFigure) -> str:
    return f"<figure>{inline_svg(fig)}<figcaption>{escape(fig.caption)}</figcaption></figure>"


def _table(data: ReportData) -> str:
    cols = columns(data.comparison.metric)
    head = "".join(
        f'<th class="{"text" if col in TEXT_COLUMNS else "num"}" scope="col">{escape(col)}</th>'
        for col in cols
    )
    body = []
    for row in table_rows(data.comparison, data.recommendation.choice):
        classes = [
            name
            for name, on in (
                ("best", row.best),
                ("recommended", row.recommended),
                ("below", row.significantly_below),
                ("uncompared", not row.comparable),
            )
            if on
        ]
        cells = "".join(
            f'<td class="{"text" if col in TEXT_COLUMNS else "num"}">{escape(v)}</td>'
            for col, v in zip(cols, row.values, strict=True)
        )
        body.append(f'<tr class="{" ".join(classes)}" data-cell="{escape(row.key, quote=True)}">{cells}</tr>')
    return (
        f'<div class="tablewrap"><table id="results-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
        f'<p class="legend">{escape(table_legend(data.comparison.metric))}</p>'
    )


def _recommendation(data: ReportData) -> str:
    rec = data.recommendation
    # The paragraph names the choice in its first sentence; a heading only where there is none.
    head = "" if rec.choice else '<p class="choice">No recommendation</p>'
    warn = f'<p class="warning">Warning: {escape(rec.warning)}</p>' if rec.warning else ""
    css = ' class="warn"' if rec.warning else ""
    choice = f' data-choice="{escape(rec.choice, quote=True)}"' if rec.choice else ""
    return (
        f'<section id="recommendation"{css}{choice}>{head}{warn}<p class="reasons">{escape(rec.reasons)}</p>'
        "</section>"
    )


def _notes(data: ReportData) -> str:
    items = list(data.notes)
    if not items:
        return ""
    lis = "".join(f"<li>{escape(n)}</li>" for n in items)
    return f'<h2>Notes</h2><ul class="notes" id="notes">{lis}</ul>'


def render_html(data: ReportData, main: list[ReportFigure], confusions: list[ReportFigure]) -> str:
    by_id = {f.id: f for f in main}
    pareto = "".join(_figure(by_id[i]) for i in ("pareto-params", "pareto-latency") if i in by_id)
    curves = by_id.get("learning-curves")
    curves_html = (
        f"<h2>Learning curves</h2>{_figure(curves)}"
        if curves
        else "<h2>Learning curves</h2><p>No trained route logged a learning curve.</p>"
    )
    meta = "".join(f"<span>{escape(k)}: <b>{escape(v)}</b></span>" for k, v in data.meta_items())
    confusion_html = "".join(_figure(f) for f in confusions)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="tasktune {escape(__version__)}">
<title>{escape(data.title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{escape(data.title)}</h1>
<p class="meta">{meta}</p>
<h2>Recommendation</h2>
{_recommendation(data)}
<h2>Quality against cost</h2>
<div class="figs">{pareto}</div>
<h2>Results</h2>
{_table(data)}
<div class="figs">{_figure(by_id["accuracy-bars"])}</div>
{_notes(data)}
<h2>Confusion matrices</h2>
<div class="confusions" id="confusion-matrices">{confusion_html}</div>
{curves_html}
<p class="meta">Generated by tasktune {escape(__version__)} from the result files of the run folder alone;
regenerate with <code>tasktune report RUN_DIR</code>.</p>
</body>
</html>
"""
