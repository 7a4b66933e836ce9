"""The results table as formatted strings, shared by the terminal, Markdown and HTML renderings so
that all three show the same figures."""

from __future__ import annotations

from dataclasses import dataclass

from tasktune.evaluation.comparison import CellSummary, Comparison
from tasktune.evaluation.formatting import format_bytes, format_count, format_ms, format_rate, pct

COLUMNS: tuple[str, ...] = (
    "route",
    "backbone",
    "protocol",
    "seeds",
    "accuracy %",
    "95% CI",
    "macro-F1 %",
    "ECE",
    "p vs best",
    "trainable",
    "artifact",
    "fit s",
    "ex/s",
    "p50 ms",
    "p95 ms",
    "peak MB",
    "device / dtype",
)
TEXT_COLUMNS = frozenset({"route", "backbone", "protocol", "device / dtype"})


def columns(metric: str = "accuracy") -> tuple[str, ...]:
    """The columns in order: the CI is the CI of the metric the cells are ranked by, so it stands right
    after that metric's column (after accuracy, or after macro-F1 for a macro-F1 task)."""
    if metric != "macro_f1":
        return COLUMNS
    out = [c for c in COLUMNS if c != "95% CI"]
    out.insert(out.index("macro-F1 %") + 1, "95% CI")
    return tuple(out)


BELOW_MARK = "▼"  # significantly below the best after Holm adjustment


@dataclass(frozen=True)
class TableRow:
    key: str
    values: tuple[str, ...]
    best: bool
    recommended: bool
    significantly_below: bool
    comparable: bool


def p_vs_best(c: CellSummary, best_key: str | None) -> str:
    if c.key == best_key:
        return "best"
    if not c.comparable:
        return "not compared"
    vb = c.versus_best
    if vb is None:
        return "–"
    p = "<0.001" if vb.p_holm < 0.001 else f"{vb.p_holm:.2g}" if vb.p_holm < 0.1 else f"{vb.p_holm:.2f}"
    return f"{p} {BELOW_MARK}" if vb.significantly_below else p


def accuracy_text(c: CellSummary) -> str:
    return pct(c.accuracy_mean) + (f" ± {pct(c.accuracy_std)}" if c.accuracy_std is not None else "")


def f1_text(c: CellSummary) -> str:
    return pct(c.macro_f1_mean) + (f" ± {pct(c.macro_f1_std)}" if c.macro_f1_std is not None else "")


def table_rows(comparison: Comparison, recommended: str | None = None) -> list[TableRow]:
    rows = []
    for c in comparison.cells:
        lo, hi = c.score_ci(comparison.metric)  # the CI of the metric the cells are ranked by
        cost = c.cost
        by_column = dict(
            zip(
                COLUMNS,
                (
                    c.route,
                    c.backbone or "–",
                    c.protocol,
                    str(len(c.seeds)),
                    accuracy_text(c),
                    f"{pct(lo)}–{pct(hi)}",
                    f1_text(c),
                    f"{c.ece_mean:.3f}",
                    p_vs_best(c, comparison.best),
                    format_count(cost.trainable_parameters),
                    format_bytes(cost.artifact_bytes),
                    f"{cost.fit_seconds:,.1f}",
                    format_rate(cost.examples_per_second),
                    format_ms(cost.latency_p50_ms),
                    format_ms(cost.latency_p95_ms),
                    f"{cost.peak_memory_mb:,.0f}",
                    f"{cost.device} / {cost.dtype}",
                ),
                strict=True,
            )
        )
        values = tuple(by_column[col] for col in columns(comparison.metric))
        rows.append(
            TableRow(
                key=c.key,
                values=values,
                best=c.key == comparison.best,
                recommended=c.key == recommended,
                significantly_below=bool(c.versus_best and c.versus_best.significantly_below),
                comparable=c.comparable,
            )
        )
    return rows


TABLE_LEGEND = (
    "accuracy: mean ± std over seeds; 95% CI: bootstrap over test examples of the seed-averaged accuracy; "
    "p vs best: exact McNemar against the best cell on the same test rows (clustered by example where "
    "the cells share seeds), Holm-adjusted; "
    f"{BELOW_MARK} significantly below the best (adjusted p < 0.05); fit s: mean training time per seed; "
    "ex/s: batched inference throughput; p50/p95: single-example latency; peak MB: most over seeds."
)


def table_legend(metric: str = "accuracy") -> str:
    """The legend for a comparison ranked by the task's metric (macro-F1 changes the test behind p)."""
    if metric != "macro_f1":
        return TABLE_LEGEND
    return "Cells are ranked by macro-F1, the task's metric. " + TABLE_LEGEND.replace(
        "95% CI: bootstrap over test examples of the seed-averaged accuracy",
        "95% CI: of the seed-averaged macro-F1, bootstrap over test examples within each class",
    ).replace(
        "p vs best: exact McNemar against the best cell on the same test rows (clustered by example where "
        "the cells share seeds)",
        "p vs best: paired bootstrap of the macro-F1 difference with the best cell on the same test rows",
    )
