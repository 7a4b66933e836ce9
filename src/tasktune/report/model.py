"""What one report shows: the run's task and settings, the comparison and the recommendation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tasktune.evaluation.comparison import Comparison
from tasktune.evaluation.recommend import Recommendation


@dataclass(frozen=True)
class ReportData:
    task_name: str
    protocol: str | None
    eval_split: str | None
    labels: tuple[str, ...]
    constraints: dict[str, Any]
    comparison: Comparison
    recommendation: Recommendation
    results_created: tuple[str, str] | None  # oldest and newest result timestamps (from the results)
    result_files: int
    skipped: tuple[tuple[str, str], ...] = ()

    @property
    def title(self) -> str:
        return f"tasktune report: {self.task_name}"

    def meta_items(self) -> list[tuple[str, str]]:
        items = [("task", self.task_name)]
        if self.protocol:
            items.append(("protocol", self.protocol))
        best = self.comparison.best_cell
        if self.eval_split or best:
            split = self.eval_split or (best.split if best else "?")
            items.append(("evaluated on", f"{split}" + (f" ({best.n_test:,} examples)" if best else "")))
        if self.labels:
            items.append(("labels", ", ".join(self.labels)))
        given = {k: v for k, v in self.constraints.items() if v is not None}
        items.append(("constraints", ", ".join(f"{k}={v}" for k, v in given.items()) or "none"))
        items.append(("cells", f"{len(self.comparison.cells)} from {self.result_files} result files"))
        if self.results_created:
            first, last = self.results_created
            items.append(("results from", first if first == last else f"{first} to {last}"))
        return items

    @property
    def notes(self) -> list[str]:
        notes = list(self.comparison.notes)
        notes += [f"cell {name} failed: {error}" for name, error in self.comparison.failed]
        notes += [f"could not read {name}: {why}" for name, why in self.skipped]
        from tasktune.report.figures import undrawable  # matplotlib: only when a report is built

        labels = list(dict.fromkeys(label for c in self.comparison.cells for label in c.labels))
        missing = undrawable(labels)
        if missing:
            notes.append(
                f"labels {missing} hold characters no installed font draws: the figures show them as "
                "boxes (the tables show them as written); installing e.g. Noto Sans CJK fixes that"
            )
        return notes
