"""``tasktune report RUN_DIR``: the comparison table, the recommendation, and the report files.

`print_comparison` is also what `tasktune run` prints after its cells finish.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tasktune.cli.console import console as default_console
from tasktune.evaluation.comparison import METRIC_NAMES, Comparison
from tasktune.evaluation.recommend import Recommendation
from tasktune.report import build_report
from tasktune.report.table import TEXT_COLUMNS, columns, table_legend, table_rows

# Shorter headers for the terminal, where a header wider than its figures costs a whole column's width.
_SHORT_HEADERS = {
    "accuracy %": "acc %",
    "macro-F1 %": "F1 %",
    "trainable": "params",
    "p vs best": "p vs best",
}


def _terminal_columns(comparison: Comparison) -> list[str]:
    """The report's columns less what a 140-column terminal cannot afford: p95 (p50 stays), and the
    protocol and device/dtype columns when every cell shares one value (then they go in the caption)."""
    drop = {"p95 ms"}
    if len({c.protocol for c in comparison.cells}) <= 1:
        drop.add("protocol")
    if len({(c.cost.device, c.cost.dtype) for c in comparison.cells}) <= 1:
        drop.add("device / dtype")
    return [c for c in columns(comparison.metric) if c not in drop]


def comparison_table(
    comparison: Comparison, recommendation: Recommendation | None = None, title: str = ""
) -> Table:
    all_columns = columns(comparison.metric)
    shown = _terminal_columns(comparison)
    shared = []
    if "protocol" not in shown and comparison.cells:
        shared.append(f"protocol {comparison.cells[0].protocol}")
    if "device / dtype" not in shown and comparison.cells:
        cost = comparison.cells[0].cost
        shared.append(f"{cost.device} / {cost.dtype}")
    caption = (", ".join(shared) + ". " if shared else "") + table_legend(comparison.metric)
    table = Table(
        # As Text, never markup: a run folder, backbone or label may hold "[...]" (a path "[exp1]"
        # vanished from the output, one holding "[/b]" raised MarkupError after the report was written).
        title=Text(title) if title else None,
        title_justify="left",
        caption=Text(caption),
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 0),
    )
    for col in shown:
        text = col in TEXT_COLUMNS
        header = _SHORT_HEADERS.get(col, col)
        table.add_column(header, justify="left" if text else "right", no_wrap=not text, overflow="fold")
    index = [all_columns.index(c) for c in shown]
    for row in table_rows(comparison, recommendation.choice if recommendation else None):
        style = None
        if row.recommended:
            style = "bold green"
        elif row.best:
            style = "bold"
        elif row.significantly_below or not row.comparable:
            style = "dim"
        table.add_row(*(Text(row.values[i]) for i in index), style=style)
    return table


def print_comparison(
    comparison: Comparison,
    recommendation: Recommendation,
    *,
    title: str = "",
    console: Console | None = None,
) -> None:
    """The rich table (recommended row green, rows below the best dimmed) and the recommendation."""
    out = console or default_console
    if comparison.cells:
        out.print(comparison_table(comparison, recommendation, title))
    for note in comparison.notes:
        out.print(Text.assemble(("note: ", "yellow"), note))
    heading = "recommendation" if recommendation.warning is None else "recommendation (with a warning)"
    body = Text(recommendation.reasons)
    if recommendation.warning:
        body = Text.assemble(("warning: ", "bold yellow"), recommendation.warning, "\n\n", body)
    out.print(
        Panel(
            body,
            title=heading,
            title_align="left",
            border_style="green" if not recommendation.warning else "yellow",
        )
    )


def report(
    run_dir: Path = typer.Argument(..., help="Run folder written by `tasktune run`."),
    out: Path | None = typer.Option(None, "--out", help="Report folder (default RUN_DIR/report)."),
) -> None:
    """Compare the stored results of a run, recommend a route and write report.md / report.html."""
    paths = build_report(run_dir, out)
    print_comparison(
        paths.comparison,
        paths.recommendation,
        title=f"{run_dir}: test {METRIC_NAMES[paths.comparison.metric]}",
    )
    default_console.print(
        f"report: {paths.html}  ({paths.markdown.name}, {paths.summary.name})", highlight=False, markup=False
    )
