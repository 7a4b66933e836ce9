"""The comparison table printed after a run (one row per route × backbone, seeds aggregated)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from rich.table import Table

from tasktune.evaluation.results import RunResult


def results_table(results: Sequence[RunResult], title: str) -> Table:
    groups: dict[tuple[str, str, str], list[RunResult]] = defaultdict(list)
    for r in results:
        backbone = r.info.backbone["name"] if r.info.backbone else "-"
        groups[(r.info.route, backbone, r.info.protocol)].append(r)
    table = Table(title=title, title_justify="left")
    for col in (
        "route",
        "backbone",
        "protocol",
        "seeds",
        "accuracy %",
        "95% CI",
        "macro-F1 %",
        "ECE",
        "fit s",
        "ex/s",
    ):
        table.add_column(col, justify="left" if col in ("route", "backbone", "protocol") else "right")
    for (route, backbone, protocol), rs in sorted(groups.items()):
        acc = np.array([r.metrics["accuracy"] for r in rs]) * 100
        f1 = np.array([r.metrics["macro_f1"] for r in rs]) * 100
        lo, hi = np.mean([r.metrics["accuracy_ci95"] for r in rs], axis=0) * 100
        acc_s = f"{acc.mean():.1f}" + (f" ± {acc.std(ddof=1):.1f}" if len(rs) > 1 else "")
        table.add_row(
            route,
            backbone,
            protocol,
            str(len(rs)),
            acc_s,
            f"{lo:.1f}–{hi:.1f}",
            f"{f1.mean():.1f}",
            f"{np.mean([r.metrics['ece'] for r in rs]):.3f}",
            f"{np.mean([r.timings.fit_seconds for r in rs]):.2f}",
            f"{np.mean([r.timings.examples_per_second for r in rs]):,.0f}",
        )
    return table
