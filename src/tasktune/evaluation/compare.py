"""Compare the cells of a run (route × backbone × protocol, seeds aggregated) from stored results alone.

All accuracy-like figures here (accuracy, its CI and std, macro-F1, differences) are **fractions** in
[0, 1]; the table, report and recommendation text turn them into percent points for display.

Statistics, and why:

* The 95 % CI of a cell's accuracy is a percentile bootstrap over *test examples* of the
  seed-averaged accuracy: each row's correctness is averaged over the cell's seeds first, then rows
  are resampled. It answers "how much would this number move on another test set of this size".
  The spread over seeds (training randomness) is reported separately as the std.
* Every cell is compared with the best cell (highest mean of the task's metric) on the same test
  rows (see `_pair_with_best` for seeds): for accuracy by the exact McNemar test on per-example
  correctness; for macro-F1, which is not a mean over examples, by a paired bootstrap of the F1
  difference (rows resampled, both cells scored on the same resample). The p-values of all these
  comparisons are Holm-adjusted together: with eight routes, one of seven unadjusted tests at 0.05
  would come out "significant" by chance a third of the time.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np

from tasktune.evaluation.metrics import BOOTSTRAP_SAMPLES, bootstrap_ci, compute_metrics, confusion_matrix
from tasktune.evaluation.results import RunResult, cell_group
from tasktune.evaluation.significance import holm_adjust, mcnemar_exact

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
    p_value: float  # exact McNemar (accuracy) or paired bootstrap (macro-F1), unadjusted
    p_holm: float  # Holm-adjusted over all comparisons with the best
    significantly_below: bool  # p_holm < alpha and the best is ahead
    test: str = "mcnemar"  # or "paired_bootstrap" (macro-F1)


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
    empty: tuple[str, ...] = ()  # cells whose results hold no test records

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


@dataclass
class _CellData:
    """Per-example correctness of one cell, rows aligned across its seeds (not part of the output)."""

    rows: tuple[int, ...]
    labels: np.ndarray  # (N,)
    correct: dict[int, np.ndarray] = field(default_factory=dict)  # seed -> (N,) bool
    preds: dict[int, np.ndarray] = field(default_factory=dict)  # seed -> (N,) predicted label
    mean_probs: np.ndarray | None = None  # (N, C) averaged over seeds
    num_labels: int = 2

    def majority_correct(self) -> np.ndarray:
        # A row counts as right when most seeds get it right. An exact tie (possible with an even
        # number of seeds) is broken by the seed-averaged probabilities, so neither side is favoured.
        votes = np.stack(list(self.correct.values())).mean(axis=0)
        ensemble = self.mean_probs.argmax(axis=1) == self.labels
        return np.where(votes == 0.5, ensemble, votes > 0.5)

    def majority_preds(self) -> np.ndarray:
        """One prediction per row for the macro-F1 test without shared seeds: the seed-averaged one."""
        return self.mean_probs.argmax(axis=1)


def resampled_macro_f1(labels: np.ndarray, preds: np.ndarray, idx: np.ndarray, num_labels: int) -> np.ndarray:
    """Macro-F1 (as compute_metrics defines it: every label counts, 0 where undefined) of ``preds``
    on each row resample ``idx`` (S, N): (S,). In chunks of resamples, so memory stays bounded on
    large test sets."""
    chunk = max(1, 2_000_000 // max(1, idx.shape[1]))
    if idx.shape[0] > chunk:
        return np.concatenate(
            [
                resampled_macro_f1(labels, preds, idx[i : i + chunk], num_labels)
                for i in range(0, len(idx), chunk)
            ]
        )
    S = idx.shape[0]
    codes = labels[idx] * num_labels + preds[idx]  # (S, N)
    offsets = (np.arange(S) * num_labels * num_labels)[:, None]
    cm = np.bincount((codes + offsets).ravel(), minlength=S * num_labels * num_labels)
    cm = cm.reshape(S, num_labels, num_labels).astype(np.float64)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    denom = cm.sum(axis=1) + cm.sum(axis=2)  # predicted + actual = 2tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return f1.mean(axis=1)


def _bootstrap_idx(n: int, samples: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(samples, n))


def summarise(
    results: Sequence[RunResult],
    *,
    alpha: float = ALPHA,
    failures: Sequence[Any] = (),
    bootstrap_samples: int = BOOTSTRAP_SAMPLES,
    metric: Metric = "accuracy",
) -> Comparison:
    """One CellSummary per (route, backbone, protocol), the best cell, and every other cell's paired,
    Holm-adjusted test against it. Deterministic: the same results give the same Comparison.

    `failures`: cells that produced no result, as (cell, error) pairs or objects with `.cell` and
    `.error` (the runner's CellFailure); they are listed, not compared."""
    if metric not in METRIC_NAMES:
        raise ValueError(f"unknown metric {metric!r}; expected one of {sorted(METRIC_NAMES)}")
    notes: list[str] = []
    groups: dict[tuple[str, str | None, str], dict[int, RunResult]] = defaultdict(dict)
    empty: list[str] = []
    ordered = sorted(results, key=lambda r: (_group_of(r), r.info.seed, r.info.created, r.info.run_id))
    for r in ordered:
        group = _group_of(r)
        key = cell_key(*group)
        if not r.records:
            if key not in empty:
                empty.append(key)
            notes.append(f"{key} seed {r.info.seed}: the result holds no test records; left out.")
            continue
        if r.info.seed in groups[group]:
            notes.append(f"{key} seed {r.info.seed}: two results for one seed; kept the first.")
            continue
        groups[group][r.info.seed] = r

    summaries: list[CellSummary] = []
    data: dict[str, _CellData] = {}
    signatures: dict[str, tuple] = {}
    for group, by_seed in groups.items():
        if not by_seed:
            continue
        key = cell_key(*group)
        summary, cell_data, signature, cell_notes = _summarise_cell(group, by_seed, bootstrap_samples, metric)
        summaries.append(summary)
        data[key], signatures[key] = cell_data, signature
        notes.extend(cell_notes)
    empty = [k for k in empty if k not in data]

    summaries.sort(key=lambda c: (-c.score(metric), c.key))
    best = summaries[0] if summaries else None
    if best is not None:
        summaries, more_notes = _compare_with_best(
            summaries, best, data, signatures, alpha, metric, bootstrap_samples
        )
        notes.extend(more_notes)
    return Comparison(
        cells=tuple(summaries),
        best=best.key if best else None,
        alpha=alpha,
        metric=metric,
        tasks=tuple(sorted({r.info.task for r in results})),
        notes=tuple(notes),
        failed=tuple(_failure(f) for f in failures),
        empty=tuple(empty),
    )


def _failure(f: Any) -> tuple[str, str]:
    if hasattr(f, "cell") and hasattr(f, "error"):
        return (str(f.cell), str(f.error))
    cell, error = f
    return (str(cell), str(error))


def _group_of(r: RunResult) -> tuple[str, str | None, str]:
    return cell_group(r)


def _summarise_cell(
    group: tuple[str, str | None, str],
    by_seed: dict[int, RunResult],
    bootstrap_samples: int,
    metric: str = "accuracy",
) -> tuple[CellSummary, _CellData, tuple, list[str]]:
    route, backbone, protocol = group
    key = cell_key(*group)
    notes: list[str] = []
    seeds = tuple(sorted(by_seed))
    results = [by_seed[s] for s in seeds]
    # Align rows across seeds; seeds should share one test split, but don't trust it blindly.
    row_sets = [{rec.row for rec in r.records} for r in results]
    rows = tuple(sorted(set.intersection(*row_sets)))
    if any(len(s) != len(rows) for s in row_sets):
        notes.append(f"{key}: seeds were scored on different test rows; using the {len(rows)} they share.")
    members = [r.info.route_config.get("members_on_test") for r in results]
    if all(members):  # an ensemble: what combining its members bought, on the same test rows
        each = 100 * np.mean([m["member_accuracy"] for m in members])
        gain = 100 * np.mean([m["gain_over_member_mean"] for m in members])
        best = 100 * np.mean([m["gain_over_best_member"] for m in members])
        notes.append(
            f"{key}: its members average {each:.1f} % accuracy on test; the ensemble gains "
            f"{gain:+.1f} points over them and {best:+.1f} over the best member of each seed "
            f"(mean of {len(seeds)} seeds)."
        )
    first = {rec.row: rec for rec in results[0].records}
    labels = np.array([first[row].label for row in rows], dtype=np.int64)
    cell = _CellData(rows=rows, labels=labels, num_labels=len(results[0].labels))
    probs_sum = None
    per_seed_metrics = []
    for seed, r in zip(seeds, results, strict=True):
        by_row = {rec.row: rec for rec in r.records}
        preds = np.array([by_row[row].pred for row in rows], dtype=np.int64)
        cell.correct[seed] = preds == labels
        cell.preds[seed] = preds
        probs = np.array([by_row[row].probs for row in rows], dtype=np.float64)
        probs_sum = probs if probs_sum is None else probs_sum + probs
        per_seed_metrics.append(_seed_metrics(r, labels, probs))
    cell.mean_probs = probs_sum / len(seeds)

    accs = np.array([cell.correct[s].mean() for s in seeds])
    # Seed-averaged correctness per row, then resample rows: the CI is over test examples.
    per_row = np.stack([cell.correct[s] for s in seeds]).astype(np.float64).mean(axis=0)
    lo, hi = bootstrap_ci(per_row, samples=bootstrap_samples, seed=0)
    f1_per_seed = [m["macro_f1"] for m in per_seed_metrics]
    f1_ci = None
    if metric == "macro_f1":  # the seed mean's CI on row resamples, as accuracy's (only when ranked on it)
        idx = _bootstrap_idx(len(rows), bootstrap_samples)
        f1s = np.mean(
            [resampled_macro_f1(labels, cell.preds[s], idx, cell.num_labels) for s in seeds], axis=0
        )
        f1_ci = (float(np.quantile(f1s, 0.025)), float(np.quantile(f1s, 0.975)))
    best_seed_idx = int(np.argmax(accs))  # argmax takes the first on ties
    best_seed = seeds[best_seed_idx]
    num_labels = len(results[0].labels)
    by_row = {rec.row: rec for rec in by_seed[best_seed].records}
    best_preds = np.array([by_row[row].pred for row in rows], dtype=np.int64)
    confusion = confusion_matrix(labels, best_preds, num_labels)
    split = results[0].info.split
    signature = (
        split,
        results[0].info.data_hashes.get(split),
        rows,
        tuple(results[0].labels),
        tuple(labels.tolist()),
    )
    summary = CellSummary(
        key=key,
        route=route,
        backbone=backbone,
        protocol=protocol,
        seeds=seeds,
        split=split,
        n_test=len(rows),
        labels=tuple(results[0].labels),
        accuracy_mean=float(accs.mean()),
        accuracy_std=float(accs.std(ddof=1)) if len(seeds) > 1 else None,
        accuracy_per_seed=tuple(float(a) for a in accs),
        accuracy_ci95=(lo, hi),
        macro_f1_mean=float(np.mean(f1_per_seed)),
        macro_f1_std=float(np.std(f1_per_seed, ddof=1)) if len(seeds) > 1 else None,
        macro_f1_ci95=f1_ci,
        macro_f1_per_seed=tuple(float(f) for f in f1_per_seed),
        ece_mean=float(np.mean([m["ece"] for m in per_seed_metrics])),
        nll_mean=_mean_or_none([m.get("nll") for m in per_seed_metrics]),
        cost=_cost(results),
        confusion=tuple(tuple(int(x) for x in row) for row in confusion),
        confusion_seed=best_seed,
        learning_curves=tuple(
            c for c in (_learning_curve(s, by_seed[s].info.route_config) for s in seeds) if c.points
        ),
        created=max(r.info.created for r in results),
    )
    return summary, cell, signature, notes


def _seed_metrics(r: RunResult, labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """The stored metrics when they are there (they were computed on the full records), else recompute."""
    m = r.metrics
    if all(isinstance(m.get(k), int | float) for k in ("macro_f1", "ece")):
        return {"macro_f1": float(m["macro_f1"]), "ece": float(m["ece"]), "nll": m.get("nll")}
    fresh = compute_metrics(labels, probs)
    return {"macro_f1": fresh.macro_f1, "ece": fresh.ece, "nll": fresh.nll}


def _finite(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    kept = [v for v in (_finite(x) for x in values) if v is not None]
    return float(np.mean(kept)) if kept else None


def _cost(results: Sequence[RunResult]) -> CellCost:
    t = [r.timings for r in results]
    devices = sorted({r.info.device for r in results})
    dtypes = sorted({r.info.dtype for r in results})
    return CellCost(
        trainable_parameters=max(x.trainable_parameters for x in t),
        artifact_bytes=max(x.artifact_bytes for x in t),
        fit_seconds=float(np.mean([x.fit_seconds for x in t])),
        examples_per_second=_mean_or_none([x.examples_per_second for x in t]),
        latency_p50_ms=_mean_or_none([x.latency_p50_ms for x in t]),
        latency_p95_ms=_mean_or_none([x.latency_p95_ms for x in t]),
        peak_memory_mb=float(max(x.peak_memory_mb for x in t)),
        device=", ".join(devices),
        dtype=", ".join(dtypes),
    )


def _learning_curve(seed: int, route_config: dict[str, Any]) -> LearningCurve:
    points = []
    for p in route_config.get("learning_curve") or []:
        if not isinstance(p, dict) or not isinstance(p.get("step"), int | float):
            continue  # a malformed point is skipped rather than sinking the whole report
        dev = p.get("dev")
        dev_acc = dev.get("accuracy") if isinstance(dev, dict) else None
        dev_f1 = dev.get("macro_f1") if isinstance(dev, dict) else None
        points.append(
            CurvePoint(
                step=int(p["step"]),
                train_loss=_finite(p.get("train_loss"))
                if isinstance(p.get("train_loss"), int | float)
                else None,
                dev_accuracy=_finite(dev_acc) if isinstance(dev_acc, int | float) else None,
                lr=_finite(p.get("lr")) if isinstance(p.get("lr"), int | float) else None,
                dev_macro_f1=_finite(dev_f1) if isinstance(dev_f1, int | float) else None,
            )
        )
    return LearningCurve(seed=seed, points=tuple(points))


def _pair_with_best(
    best: _CellData, other: _CellData, same_protocol: bool = True
) -> tuple[np.ndarray, np.ndarray, Pairing, tuple[int, ...]]:
    """Per-observation correctness of (best, other), paired on the same test rows.

    Where the two cells share seeds (the same data draw and training seed, e.g. LM-BFF's five), pair
    on (seed, row) over the shared seeds: each seed is then a matched replicate. The (seed, row) pairs
    of one row are not independent, so with many seeds the test leans a little liberal; the Holm
    adjustment and the per-seed std in the table keep that in view. Where they share no seed (a
    zero-shot cell against a few-shot one), there is nothing to match a seed with, so each row's
    majority-over-seeds correctness is used: one paired observation per row, the conservative choice.
    Seeds of different protocols are different draws (the full-data seed 13 is not few-shot seed 13),
    so only cells of one protocol are paired by seed.
    """
    shared = tuple(sorted(set(best.correct) & set(other.correct))) if same_protocol else ()
    if shared:
        a = np.concatenate([best.correct[s] for s in shared])
        b = np.concatenate([other.correct[s] for s in shared])
        return a, b, "seed_row", shared
    return best.majority_correct(), other.majority_correct(), "majority_row", ()


def paired_bootstrap_f1(
    labels: np.ndarray,
    a: Sequence[np.ndarray],
    b: Sequence[np.ndarray],
    num_labels: int,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 1,
) -> tuple[float, float]:
    """(difference, two-sided p) of mean macro-F1, ``a`` minus ``b`` (each a list of prediction arrays,
    e.g. one per seed), by a paired bootstrap over rows: both scored on the same resamples, and p is
    twice the smaller tail of the resampled differences around 0."""

    def mean_f1(preds: Sequence[np.ndarray], idx: np.ndarray) -> np.ndarray:
        return np.mean([resampled_macro_f1(labels, x, idx, num_labels) for x in preds], axis=0)

    whole = np.arange(len(labels))[None]
    observed = float(mean_f1(a, whole)[0] - mean_f1(b, whole)[0])
    idx = _bootstrap_idx(len(labels), samples, seed=seed)
    diff = mean_f1(a, idx) - mean_f1(b, idx)
    return observed, min(1.0, 2 * min(float((diff <= 0).mean()), float((diff >= 0).mean())))


def paired_gain(
    labels: np.ndarray, a: np.ndarray, b: np.ndarray, metric: str, num_labels: int
) -> tuple[float, float, str]:
    """(gain of ``a`` over ``b`` in ``metric``, two-sided p, the test's name) for two prediction arrays
    on the same rows: exact McNemar on correctness for accuracy, a paired bootstrap for macro-F1. Used
    where one choice is kept unless another beats it on evidence (prompt search, label texts)."""
    from tasktune.evaluation.significance import mcnemar_exact

    if metric == "macro_f1":
        gain, p = paired_bootstrap_f1(labels, [a], [b], num_labels, samples=2000, seed=0)
        return gain, p, "paired bootstrap of macro-F1"
    right_a, right_b = a == labels, b == labels
    return float(right_a.mean() - right_b.mean()), mcnemar_exact(right_a, right_b).p_value, "McNemar"


def _f1_test(best: _CellData, other: _CellData, shared: tuple[int, ...], samples: int) -> tuple[float, float]:
    """Best minus other in macro-F1, averaged over the shared seeds, or on the seed-averaged
    predictions when they share none."""
    a = [best.preds[s] for s in shared] or [best.majority_preds()]
    b = [other.preds[s] for s in shared] or [other.majority_preds()]
    return paired_bootstrap_f1(best.labels, a, b, best.num_labels, samples)


def _compare_with_best(
    summaries: list[CellSummary],
    best: CellSummary,
    data: dict[str, _CellData],
    signatures: dict[str, tuple],
    alpha: float,
    metric: str = "accuracy",
    bootstrap_samples: int = BOOTSTRAP_SAMPLES,
) -> tuple[list[CellSummary], list[str]]:
    notes: list[str] = []
    tests: dict[str, tuple[np.ndarray, np.ndarray, Pairing, tuple[int, ...], Any]] = {}
    for c in summaries:
        if c.key == best.key:
            continue
        if signatures[c.key] != signatures[best.key]:
            notes.append(
                f"{c.display} was scored on different test rows ({c.split}, n={c.n_test}) than the best "
                f"cell ({best.split}, n={best.n_test}); it is not compared."
            )
            continue
        a, b, pairing, shared = _pair_with_best(data[best.key], data[c.key], c.protocol == best.protocol)
        res = mcnemar_exact(a, b)
        diff, p = float(a.mean() - b.mean()), res.p_value
        if metric == "macro_f1":
            diff, p = _f1_test(data[best.key], data[c.key], shared, bootstrap_samples)
        tests[c.key] = (diff, p, pairing, shared, res)
    adjusted = dict(zip(tests, holm_adjust([t[1] for t in tests.values()]), strict=True))
    out = []
    for c in summaries:
        if c.key == best.key:
            out.append(c)
        elif c.key not in tests:
            out.append(replace(c, comparable=False))
        else:
            diff, p, pairing, shared, res = tests[c.key]
            p_holm = adjusted[c.key]
            ahead = res.a_only > res.b_only if metric == "accuracy" else diff > 0
            versus = VersusBest(
                best=best.key,
                pairing=pairing,
                paired_seeds=shared,
                n=res.n,
                best_only=res.a_only,
                this_only=res.b_only,
                difference=diff,
                p_value=p,
                p_holm=p_holm,
                significantly_below=p_holm < alpha and ahead,
                test="mcnemar" if metric == "accuracy" else "paired_bootstrap",
            )
            out.append(replace(c, versus_best=versus))
    return out, notes


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
