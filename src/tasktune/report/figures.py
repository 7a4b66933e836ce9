"""The report's figures, drawn with matplotlib's object API (no pyplot: no global figure state, no GUI
backend) and saved as SVG with text as paths, so the HTML needs no font and no network.

SVG output is made byte-stable (fixed hash salt for internal ids, no date in the metadata), so that a
report regenerated from the same results is identical.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib as mpl
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from tasktune.evaluation.comparison import METRIC_NAMES, CellSummary, Comparison, CurvePoint
from tasktune.evaluation.formatting import format_p

# Fonts tried glyph by glyph after DejaVu Sans (matplotlib's per-glyph fallback), for labels in other
# scripts; only the installed ones are named, as naming a missing family makes matplotlib warn.
_FALLBACK_FONTS = (
    "Noto Sans CJK JP",
    "Noto Sans CJK SC",
    "Noto Sans",
    "Noto Sans Arabic",
    "Noto Sans Hebrew",
    "Noto Sans Devanagari",
    "Noto Sans Thai",
    "Droid Sans Fallback",
    "WenQuanYi Zen Hei",
    "Arial Unicode MS",
)


def _font_families() -> list[str]:
    from matplotlib.font_manager import fontManager

    installed = {f.name for f in fontManager.ttflist}
    return ["DejaVu Sans", *(f for f in _FALLBACK_FONTS if f in installed)]


@functools.cache
def _drawable() -> frozenset[int]:
    """The code points the figures' fonts have glyphs for (read once: every report asks)."""
    from matplotlib.font_manager import FontProperties, findfont
    from matplotlib.ft2font import FT2Font

    covered: set[int] = set()
    for family in _font_families():
        covered |= set(FT2Font(findfont(FontProperties(family=family))).get_charmap())
    return frozenset(covered)


def undrawable(texts: Sequence[str]) -> list[str]:
    """The texts with a character no font the figures use can draw (it would show as an empty box)."""
    covered = _drawable()
    return [t for t in texts if any(ord(ch) not in covered and not ch.isspace() for ch in t)]


_RC = {
    "svg.hashsalt": "tasktune-report",  # deterministic clip-path / marker ids
    "svg.fonttype": "path",  # glyphs as paths: renders the same everywhere, no font files needed
    "font.family": "sans-serif",
    "font.sans-serif": _font_families(),
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
_TAB10 = mpl.colormaps["tab10"].colors
_TAB20 = mpl.colormaps["tab20"].colors


@dataclass(frozen=True)
class ReportFigure:
    id: str  # the element id in the HTML and the file name stem under figures/
    title: str
    caption: str
    svg: str  # standalone SVG document


def cell_colors(comparison: Comparison) -> dict[str, tuple[float, float, float]]:
    """One colour per cell, the same in every figure (in table order)."""
    palette = _TAB10 if len(comparison.cells) <= 10 else _TAB20
    return {c.key: palette[i % len(palette)] for i, c in enumerate(comparison.cells)}


def plain(text: str) -> str:
    """User text as literal matplotlib text: a '$' would otherwise start mathtext (and can fail).
    Only '$' is escaped: with no unescaped '$' the text is never mathtext, so backslashes stay literal
    (escaping them as well drew each backslash twice)."""
    return text.replace("$", r"\$")


def short_label(c: CellSummary, width: int = 40) -> str:
    text = f"{c.route} · {c.backbone}" if c.backbone else c.route
    return plain(text if len(text) <= width else text[: width - 1] + "…")


def _to_svg(fig: Figure, *, tight: bool = True) -> str:
    buf = io.StringIO()
    with mpl.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight" if tight else None)
    return buf.getvalue()


def _new_figure(width: float, height: float) -> Figure:
    with mpl.rc_context(_RC):
        return Figure(figsize=(width, height), layout="constrained")


def _error_bar(value: float, lo: float, hi: float) -> list[list[float]]:
    """matplotlib's [[below], [above]]; a bootstrap interval can (rarely) sit wholly on one side of its
    estimate, and matplotlib refuses a negative length, which sank the whole report."""
    return [[max(0.0, value - lo)], [max(0.0, hi - value)]]


def _pareto_front(points: Sequence[tuple[float, float, str]]) -> list[str]:
    """Keys of the points no other point dominates (lower or equal x and higher or equal score, one of
    them strictly): two cells with the same cost and score are both on the front."""
    front, best_acc, last = [], -1.0, None
    for x, acc, key in sorted(points, key=lambda p: (p[0], -p[1], p[2])):
        if acc > best_acc or (x, acc) == last:
            front.append(key)
            best_acc, last = max(best_acc, acc), (x, acc)
    return front


def _score_range(ax: Axes, comparison: Comparison, points: Sequence[tuple[float, float, str]]) -> None:
    """Zoom the y axis on the plotted cells; the majority baseline is a line when it falls inside, and
    a note when far below (drawing it would squash the differences that matter into a few pixels)."""
    if not points:
        return
    m = comparison.metric
    los = [comparison.cell(key).score_ci(m)[0] * 100 for _, _, key in points]
    his = [comparison.cell(key).score_ci(m)[1] * 100 for _, _, key in points]
    low, high = min(los), max(his)
    margin = max((high - low) * 0.08, 0.5)
    low, high = max(low - margin, 0.0), min(high + margin, 100.0)
    baseline = next((c for c in comparison.cells if c.is_baseline), None)
    if baseline is not None:
        acc = baseline.score(m) * 100
        if acc >= low - 2 * margin:
            low = min(low, acc - margin)
            ax.axhline(acc, color="0.5", linestyle=":", linewidth=1)
            text, y = f"majority baseline {acc:.1f}%", acc
        else:
            text, y = f"majority baseline {acc:.1f}% (below the axis)", low
        ax.annotate(
            text, (0.01, y), xycoords=("axes fraction", "data"), textcoords="offset points", xytext=(0, 3),
            color="0.4", fontsize=8,
        )  # fmt: skip
    ax.set_ylim(low, high)


def _plain_ticks(ax: Axes) -> None:
    """'5', '20', '100' on a log latency axis rather than 5×10^0."""
    formatter = FuncFormatter(lambda v, _pos: f"{v:g}")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(formatter)
    ax.xaxis.set_minor_formatter(NullFormatter())


def pareto_figure(
    comparison: Comparison, recommended: str | None, *, x: str, fig_id: str, title: str
) -> ReportFigure:
    """The task's metric against a cost (x='params' or 'latency'); the Pareto front joined by a step line."""
    m = comparison.metric
    with mpl.rc_context(_RC):
        fig = _new_figure(6.4, 4.2)
        ax = fig.add_subplot()
        colors = cell_colors(comparison)
        points, missing = [], []
        for c in comparison.cells:
            if c.is_baseline:
                continue
            value = c.cost.trainable_parameters if x == "params" else c.cost.latency_p50_ms
            if value is None:
                missing.append(c.display)
                continue
            points.append((float(value), c.score(m) * 100, c.key))
        front = _pareto_front(points)
        for value, acc, key in points:
            c = comparison.cell(key)
            lo, hi = (v * 100 for v in c.score_ci(m))
            on_front = key in front
            ax.errorbar(
                value,
                acc,
                yerr=_error_bar(acc, lo, hi),
                fmt="none",
                ecolor=colors[key],
                alpha=0.6,
                capsize=3,
            )
            ax.scatter(
                value,
                acc,
                s=90 if on_front else 50,
                color=colors[key],
                edgecolors="black" if on_front else "none",
                linewidths=1.4,
                zorder=3,
                clip_on=False,
                label=short_label(c) + (" (front)" if on_front else ""),
            )
            if key == recommended:
                ax.annotate(
                    "recommended",
                    (value, acc),
                    textcoords="offset points",
                    xytext=(8, 8),
                    fontsize=8,
                    fontweight="bold",
                    arrowprops={"arrowstyle": "-", "color": "0.3"},
                )
        if len(front) > 1:
            fx = [p[0] for p in points if p[2] in front]
            fy = [p[1] for p in points if p[2] in front]
            order = sorted(range(len(fx)), key=lambda i: fx[i])
            ax.step(
                [fx[i] for i in order],
                [fy[i] for i in order],
                where="post",
                color="0.3",
                linestyle="--",
                linewidth=1,
                label="Pareto front",
            )
        _score_range(ax, comparison, points)
        if x == "params":
            # symlog keeps prompting's 0 trainable parameters on the axis next to 10^4 and 10^8.
            ax.set_xscale("symlog", linthresh=1, linscale=0.4)
            ax.set_xlim(left=-0.3)
            ax.set_xlabel("trainable parameters (log scale; 0 at left)")
        else:
            if points:
                ax.set_xscale("log")
                _plain_ticks(ax)
            ax.set_xlabel("single-example latency p50, ms (log scale)")
        ax.set_ylabel(f"test {METRIC_NAMES[m]}, % (95% CI)")
        if not points:
            ax.text(0.5, 0.5, "not measured for any cell", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])  # empty axes: ticks 0-1 would read as measurements
            ax.set_yticks([])
        elif points:
            ax.legend(fontsize=7, loc="best", frameon=False)
        ax.set_title(title, loc="left", fontsize=10)
        better = "more accurate" if m == "accuracy" else f"higher in {METRIC_NAMES[m]}"
        caption = (
            f"Circled points lie on the Pareto front (no other cell is as cheap and {better}, or cheaper "
            "and as good)."
        )
        if missing:
            caption += f" Not shown (not measured): {', '.join(missing)}."
        return ReportFigure(fig_id, title, caption, _to_svg(fig))


def accuracy_bars(comparison: Comparison, recommended: str | None) -> ReportFigure:
    """One bar per cell in the task's metric (the one the cells are ranked and tested on)."""
    m = comparison.metric
    name = METRIC_NAMES[m]
    cells = list(comparison.cells)
    colors = cell_colors(comparison)
    with mpl.rc_context(_RC):
        fig = _new_figure(7.5, 0.9 + 0.42 * len(cells))
        ax = fig.add_subplot()
        ys = list(range(len(cells)))[::-1]  # best at the top
        for y, c in zip(ys, cells, strict=True):
            acc = c.score(m) * 100
            lo, hi = (v * 100 for v in c.score_ci(m))
            ax.barh(y, acc, color=colors[c.key], alpha=0.85, height=0.65)
            ax.errorbar(acc, y, xerr=_error_bar(acc, lo, hi), fmt="none", ecolor="black", capsize=3, lw=1)
            per_seed = c.score_per_seed(m)
            if len(per_seed) > 1:
                ax.scatter([a * 100 for a in per_seed], [y] * len(per_seed), s=9, color="black", zorder=3)
            note = "best" if c.key == comparison.best else ""
            if c.versus_best is not None:
                note = format_p(c.versus_best.p_holm) + (" ▼" if c.versus_best.significantly_below else "")
            elif not c.comparable:
                note = "not compared"
            if c.key == recommended:
                note += "  ★ recommended"
            right = max([hi, *(a * 100 for a in per_seed)])  # past the whisker and every seed's dot
            ax.annotate(
                f"{acc:.1f}%  {note}", (right, y), textcoords="offset points", xytext=(5, -3), fontsize=8
            )
        ax.set_yticks(ys, [short_label(c) + f" ({plain(c.protocol)})" for c in cells])
        ax.set_xlim(0, 118)
        ax.set_xlabel(f"test {name}, %: bar = mean over seeds, whiskers = 95% CI, dots = seeds")
        ax.grid(axis="y", visible=False)
        title = f"{name[0].upper()}{name[1:]} per cell"
        ax.set_title(title, loc="left", fontsize=10)
        test = (
            "exact McNemar (clustered by example where seeds are shared)"
            if m == "accuracy"
            else "paired bootstrap of the macro-F1 difference"
        )
        caption = f"p: Holm-adjusted {test} against the best cell; ▼ significantly below it."
        return ReportFigure("accuracy-bars", title, caption, _to_svg(fig))


def confusion_figure(c: CellSummary, fig_id: str) -> ReportFigure:
    n = len(c.labels)
    size = min(1.6 + 0.55 * n, 9.0)
    with mpl.rc_context(_RC):
        fig = _new_figure(size + 0.6, size)
        ax = fig.add_subplot()
        ax.grid(False)
        counts = [list(row) for row in c.confusion]
        # Colour by the share of each true class, so a small class's errors are as visible as a big one's.
        shares = [[v / max(sum(row), 1) for v in row] for row in counts]
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for i in range(n):
            for j in range(n):
                ax.text(
                    j, i, f"{counts[i][j]:,}", ha="center", va="center", fontsize=8,
                    color="white" if shares[i][j] > 0.6 else "black",
                )  # fmt: skip
        names = [plain(label if len(label) <= 14 else label[:13] + "…") for label in c.labels]
        ax.set_xticks(range(n), names, rotation=45 if n > 3 else 0, ha="right" if n > 3 else "center")
        ax.set_yticks(range(n), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        # Two short lines: the figure is not cropped to its content, so a long title would be cut off.
        title = f"{short_label(c, 44)}\n{plain(c.protocol)}, seed {c.confusion_seed}"
        fig.suptitle(title, x=0.02, ha="left", fontsize=9)
        caption = (
            f"Seed {c.confusion_seed} (the cell's most accurate seed); colour = share of the true class."
        )
        # Not cropped to content: every confusion matrix of a report gets the same size in the grid.
        return ReportFigure(fig_id, f"Confusion matrix: {c.display}", caption, _to_svg(fig, tight=False))


def _dev_score(point: CurvePoint, metric: str) -> float | None:
    return point.dev_macro_f1 if metric == "macro_f1" else point.dev_accuracy


def learning_curves(comparison: Comparison) -> ReportFigure | None:
    cells = [c for c in comparison.cells if c.learning_curves]
    if not cells:
        return None
    colors = cell_colors(comparison)
    m = comparison.metric
    logged = any(_dev_score(p, m) is not None for c in cells for lc in c.learning_curves for p in lc.points)
    if not logged:  # results from before dev macro-F1 was logged: show what they have
        m = "accuracy"
    name = METRIC_NAMES[m]
    with mpl.rc_context(_RC):
        fig = _new_figure(10.5, 3.8)
        dev_ax, loss_ax = fig.subplots(1, 2)
        positive_loss = True
        for c in cells:
            for i, curve in enumerate(c.learning_curves):
                label = short_label(c) if i == 0 else None
                dev = [(p.step, v * 100) for p in curve.points if (v := _dev_score(p, m)) is not None]
                loss = [(p.step, p.train_loss) for p in curve.points if p.train_loss is not None]
                positive_loss &= all(v > 0 for _, v in loss)
                if dev:
                    dev_ax.plot(
                        *zip(*dev, strict=True),
                        color=colors[c.key],
                        marker=".",
                        lw=1.2,
                        alpha=0.8,
                        label=label,
                    )
                if loss:
                    loss_ax.plot(
                        *zip(*loss, strict=True), color=colors[c.key], lw=1.2, alpha=0.8, label=label
                    )
        dev_ax.set_xlabel("step")
        dev_ax.set_ylabel(f"dev {name}, %")
        dev_ax.set_title(f"Dev {name} (one line per seed)", loc="left", fontsize=10)
        loss_ax.set_xlabel("step")
        loss_ax.set_ylabel("training loss" + (" (log scale)" if positive_loss else ""))
        if positive_loss:
            loss_ax.set_yscale("log")
        loss_ax.set_title("Training loss", loc="left", fontsize=10)
        # One legend under both panels: inside either it would cover the curves.
        handles, labels = loss_ax.get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
        title = "Learning curves of the trained routes"
        caption = f"Dev {name} and training loss as logged during training, every seed of every trained cell."
        return ReportFigure("learning-curves", title, caption, _to_svg(fig))


def all_figures(
    comparison: Comparison, recommended: str | None
) -> tuple[list[ReportFigure], list[ReportFigure]]:
    """(main figures, one confusion matrix per cell)."""
    name = METRIC_NAMES[comparison.metric]
    name = name[0].upper() + name[1:]
    main = [
        pareto_figure(
            comparison,
            recommended,
            x="params",
            fig_id="pareto-params",
            title=f"{name} vs trainable parameters",
        ),
        pareto_figure(
            comparison, recommended, x="latency", fig_id="pareto-latency", title=f"{name} vs latency (p50)"
        ),
        accuracy_bars(comparison, recommended),
    ]
    curves = learning_curves(comparison)
    if curves is not None:
        main.append(curves)
    ids = confusion_ids(comparison)
    return main, [confusion_figure(c, ids[c.key]) for c in comparison.cells]


def confusion_ids(comparison: Comparison) -> dict[str, str]:
    """Stable, unique element ids from the cell keys ('confusion-prompting-smollm2-135m-instruct-few')."""
    ids: dict[str, str] = {}
    for c in comparison.cells:
        base = "confusion-" + (re.sub(r"[^a-z0-9]+", "-", c.key.lower()).strip("-") or "cell")
        candidate, n = base, 2
        while candidate in ids.values():
            candidate, n = f"{base}-{n}", n + 1
        ids[c.key] = candidate
    return ids
