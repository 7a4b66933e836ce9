"""What a comparison of a run's cells is made of: per-cell summaries (metrics, cost, learning curves,
the paired test against the best cell) and the comparison itself, with their JSON round trip.

`evaluation/compare.py` computes these from stored results; the table, report, recommendation and
`tasktune report` read them (a saved `comparison.json` comes back through `Comparison.from_dict`).
All accuracy-like figures are **fractions** in [0, 1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

ALPHA = 0.05
Pairing = Literal["seed_row", "majority_row"]
Metric = Literal["accuracy", "macro_f1"]
METRIC_NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1"}


@dataclass(frozen=True)
class CurvePoint:
    step: int
    train_loss: float | None
    dev_accuracy: float | None
    lr: float | None
    dev_macro_f1: float | None = None  # logged since the task metric drives selection; older runs lack it


@dataclass(frozen=True)
class LearningCurve:
    seed: int
    points: tuple[CurvePoint, ...]


@dataclass(frozen=True)
class CellCost:
    """What a cell costs to train, keep and run; aggregated over seeds as noted per field."""

    trainable_parameters: int  # max over seeds (they should all be equal)
    artifact_bytes: int  # max over seeds
    fit_seconds: float  # mean over seeds
    examples_per_second: float | None  # batched throughput, mean over seeds; None if never finite
    latency_p50_ms: float | None  # single-example latency, mean over the seeds that measured it
    latency_p95_ms: float | None
    peak_memory_mb: float  # max over seeds: the memory a user has to provision
    device: str
    dtype: str


@dataclass(frozen=True)
class VersusBest:
    """Paired test of one cell against the best cell on the same test rows."""

    best: str  # key of the best cell
    pairing: Pairing
    paired_seeds: tuple[int, ...]  # seeds paired on; empty for majority-over-seeds pairing
    n: int  # paired observations
    best_only: int  # best right, this cell wrong
    this_only: int  # this cell right, best wrong
    difference: float  # best minus this cell in the compared metric, over the paired observations
    p_value: (
        float  # exact McNemar, clustered by row over several seeds (accuracy), or paired bootstrap (macro-F1)
    )
    p_holm: float  # Holm-adjusted over all comparisons with the best
    significantly_below: bool  # p_holm < alpha and the best is ahead
    test: str = "mcnemar"  # "mcnemar_clustered" (several shared seeds) or "paired_bootstrap" (macro-F1)


@dataclass(frozen=True)
class CellSummary:
    key: str
    route: str
    backbone: str | None
    protocol: str
    seeds: tuple[int, ...]
    split: str
    n_test: int
    labels: tuple[str, ...]
    accuracy_mean: float
    accuracy_std: float | None  # sample std (ddof=1) over seeds; None with one seed
    accuracy_per_seed: tuple[float, ...]
    accuracy_ci95: tuple[float, float]
    macro_f1_mean: float
    ece_mean: float
    nll_mean: float | None
    cost: CellCost
    confusion: tuple[tuple[int, ...], ...]  # rows true, columns predicted; of `confusion_seed`
    confusion_seed: int  # the seed with the highest accuracy (first seed on ties)
    learning_curves: tuple[LearningCurve, ...]
    created: str  # newest result timestamp among the seeds (taken from the results)
    comparable: bool = True  # evaluated on the same test rows as the best cell
    versus_best: VersusBest | None = None
    macro_f1_std: float | None = None  # over seeds, like accuracy_std
    macro_f1_ci95: tuple[float, float] | None = None  # bootstrap over test rows of the seed mean
    macro_f1_per_seed: tuple[float, ...] = ()  # empty in comparisons saved before it was kept

    def score(self, metric: str = "accuracy") -> float:
        return self.macro_f1_mean if metric == "macro_f1" else self.accuracy_mean

    def score_std(self, metric: str = "accuracy") -> float | None:
        return self.macro_f1_std if metric == "macro_f1" else self.accuracy_std

    def score_per_seed(self, metric: str = "accuracy") -> tuple[float, ...]:
        return self.macro_f1_per_seed if metric == "macro_f1" else self.accuracy_per_seed

    def score_ci(self, metric: str = "accuracy") -> tuple[float, float]:
        if metric == "macro_f1" and self.macro_f1_ci95 is not None:
            return self.macro_f1_ci95
        return self.accuracy_ci95

    @property
    def display(self) -> str:
        backbone = f" on {self.backbone}" if self.backbone else ""
        return f"{self.route}{backbone} ({self.protocol})"

    @property
    def is_baseline(self) -> bool:
        return self.route == "majority"


@dataclass(frozen=True)
class Comparison:
    cells: tuple[CellSummary, ...]  # best first by `metric`, ties by key
    best: str | None
    alpha: float = ALPHA
    metric: Metric = "accuracy"  # the task's metric: what cells are ranked and tested on
    tasks: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # what was not compared or not read, and why
    failed: tuple[tuple[str, str], ...] = ()  # (cell, error) of cells that produced no result
    empty: tuple[str, ...] = ()  # cells with no test rows to compare: no records, or seeds sharing none

    def cell(self, key: str) -> CellSummary:
        for c in self.cells:
            if c.key == key:
                return c
        raise KeyError(key)

    @property
    def best_cell(self) -> CellSummary | None:
        return self.cell(self.best) if self.best is not None else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Comparison:
        return _comparison_from_dict(data)


def cell_key(route: str, backbone: str | None, protocol: str) -> str:
    return f"{route}|{backbone or '-'}|{protocol}"


def _comparison_from_dict(data: dict[str, Any]) -> Comparison:
    cells = []
    for c in data["cells"]:
        c = dict(c)
        cost = CellCost(**c.pop("cost"))
        curves = tuple(
            LearningCurve(seed=lc["seed"], points=tuple(CurvePoint(**p) for p in lc["points"]))
            for lc in c.pop("learning_curves")
        )
        vb = c.pop("versus_best")
        versus = None
        if vb is not None:
            versus = VersusBest(**{**vb, "paired_seeds": tuple(vb["paired_seeds"])})
        cells.append(
            CellSummary(
                **{
                    **c,
                    "seeds": tuple(c["seeds"]),
                    "labels": tuple(c["labels"]),
                    "accuracy_per_seed": tuple(c["accuracy_per_seed"]),
                    "macro_f1_per_seed": tuple(c.get("macro_f1_per_seed") or ()),
                    "accuracy_ci95": tuple(c["accuracy_ci95"]),
                    "macro_f1_ci95": tuple(c["macro_f1_ci95"]) if c.get("macro_f1_ci95") else None,
                    "confusion": tuple(tuple(r) for r in c["confusion"]),
                },
                cost=cost,
                learning_curves=curves,
                versus_best=versus,
            )
        )
    return Comparison(
        cells=tuple(cells),
        best=data["best"],
        alpha=data["alpha"],
        metric=data.get("metric", "accuracy"),
        tasks=tuple(data["tasks"]),
        notes=tuple(data["notes"]),
        failed=tuple(tuple(f) for f in data["failed"]),
        empty=tuple(data["empty"]),
    )
