"""build_report: run folder -> report.md, report.html, summary.json and figures/*.svg.

Reads only the run folder (cell results and run.json), so a report can be regenerated at any time
without the models or the data; the same folder always gives the same files.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasktune.evaluation.compare import summarise
from tasktune.evaluation.comparison import Comparison
from tasktune.evaluation.recommend import Recommendation, labelled_examples_for, recommend
from tasktune.report.figures import all_figures
from tasktune.report.html import render_html
from tasktune.report.load import RunFolder, load_run
from tasktune.report.markdown import render_markdown
from tasktune.report.model import ReportData
from tasktune.task.protocols import DEFAULT_K

SUMMARY_SCHEMA = 1


@dataclass(frozen=True)
class ReportPaths:
    out_dir: Path
    markdown: Path
    html: Path
    summary: Path
    figures: tuple[Path, ...]
    comparison: Comparison
    recommendation: Recommendation


def label_counts(run: RunFolder, protocols: set[str]) -> dict[str, int | None]:
    """Labelled examples a cell of each protocol used, from run.json where it says (None = unknown)."""
    manifest = run.manifest or {}
    num_labels = len(run.task.get("labels") or []) or None
    k = manifest.get("k", DEFAULT_K)
    train_size = manifest.get("train_size")
    # What each result recorded itself (labelled_examples) wins over run.json: a folder may hold runs of
    # several protocols, K values or training subsets, and run.json describes only the latest.
    recorded: dict[str, int] = {}
    for r in run.results:
        protocol = r.info.protocol
        if protocol == "full" and r.info.train_limit is not None:
            protocol = f"full-n{r.info.train_limit}"
        if r.info.labelled_examples is not None:
            recorded[protocol] = max(recorded.get(protocol, 0), r.info.labelled_examples)
    out: dict[str, int | None] = {}
    for protocol in protocols:
        if protocol in recorded:
            out[protocol] = recorded[protocol]
        elif protocol != "zero" and num_labels is None:
            out[protocol] = None
        else:
            out[protocol] = labelled_examples_for(protocol, num_labels or 0, k=k, train_size=train_size)
    return out


def analyse(run: RunFolder, failures: Sequence[Any] = ()) -> ReportData:
    # The task's metric ranks and tests the cells (run.json keeps the task as it was run).
    metric = (run.task or {}).get("metric") or "accuracy"
    comparison = summarise(run.results, failures=failures, metric=metric)
    counts = label_counts(run, {c.protocol for c in comparison.cells})
    recommendation = recommend(comparison, run.constraints, counts)
    created = sorted(r.info.created for r in run.results)
    labels = tuple(lab["name"] if isinstance(lab, dict) else str(lab) for lab in run.task.get("labels") or [])
    if not labels and comparison.cells:
        labels = comparison.cells[0].labels
    return ReportData(
        task_name=run.task_name,
        # The cells' own protocols: a folder can hold runs of several (run.json names only the latest).
        protocol=", ".join(sorted({c.protocol for c in comparison.cells}))
        or (run.manifest or {}).get("protocol"),
        eval_split=(run.manifest or {}).get("eval_split"),
        labels=labels,
        constraints=run.constraints,
        comparison=comparison,
        recommendation=recommendation,
        results_created=(created[0], created[-1]) if created else None,
        result_files=len(run.results),
        skipped=run.skipped,
    )


def build_report(run_dir: Path, out_dir: Path | None = None, *, failures: Sequence[Any] = ()) -> ReportPaths:
    """Write the report of a run folder (default into <run_dir>/report) and return where it went.

    `failures` (optional): cells of this run that produced no result, as (cell, error) pairs or the
    runner's CellFailure objects; the report lists them. Failures are not stored in the run folder, so
    a report regenerated later from the folder alone no longer names them."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "report"
    data = analyse(load_run(run_dir), failures)
    main, confusions = all_figures(data.comparison, data.recommendation.choice)
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fig in main + confusions:
        written.append(_write(fig_dir / f"{fig.id}.svg", fig.svg))
    # Figures of cells that are no longer in the run would be stale links: remove our old SVGs.
    for old in fig_dir.glob("*.svg"):
        if old not in written:
            old.unlink()
    md = _write(out_dir / "report.md", render_markdown(data, main, confusions))
    html = _write(out_dir / "report.html", render_html(data, main, confusions))
    summary = _write(out_dir / "summary.json", json.dumps(_summary(data), indent=1, allow_nan=False) + "\n")
    return ReportPaths(out_dir, md, html, summary, tuple(written), data.comparison, data.recommendation)


def _summary(data: ReportData) -> dict[str, Any]:
    return _json_safe(
        {
            "schema_version": SUMMARY_SCHEMA,
            "task": data.task_name,
            "protocol": data.protocol,
            "eval_split": data.eval_split,
            "labels": list(data.labels),
            "constraints": data.constraints,
            "fractions": "accuracy, CI, std, macro-F1 and differences are fractions in [0, 1]",
            "comparison": data.comparison.to_dict(),
            "recommendation": data.recommendation.to_dict(),
            "skipped_files": [list(s) for s in data.skipped],
        }
    )


def _json_safe(value: Any) -> Any:
    """JSON has no inf/NaN and no tuples: None and lists instead."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _write(path: Path, text: str) -> Path:
    """Write via a temp file and rename, so a reader never sees half a report."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
