"""Compare the cells of a run (route × backbone × protocol, seeds aggregated) from stored results alone.

All accuracy-like figures here (accuracy, its CI and std, macro-F1, differences) are **fractions** in
[0, 1]; the table, report and recommendation text turn them into percent points for display.

The types it returns (CellSummary, Comparison, ...) are in `comparison.py`; the paired tests it runs
(McNemar, the macro-F1 bootstrap, Holm) in `significance.py`.

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
* The best cell is the highest among the cells scored on the comparison's test rows (those most cells
  share, ties to the newest): a result left from an older test file is listed as not compared, and
  can never be "best" over cells it cannot be paired with.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tasktune.evaluation.comparison import (
    ALPHA,
    METRIC_NAMES,
    CellCost,
    CellSummary,
    Comparison,
    CurvePoint,
    LearningCurve,
    Metric,
    Pairing,
    VersusBest,
    cell_key,
)
from tasktune.evaluation.metrics import BOOTSTRAP_SAMPLES, bootstrap_ci, compute_metrics, confusion_matrix
from tasktune.evaluation.results import RunResult, cell_group
from tasktune.evaluation.significance import (
    bootstrap_indices,
    clustered_mcnemar,
    holm_adjust,
    mcnemar_exact,
    paired_bootstrap_f1,
    resampled_macro_f1,
)


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
        if not set.intersection(*({rec.row for rec in r.records} for r in by_seed.values())):
            # Scored on disjoint test rows (another test file per seed): no row to average over.
            empty.append(key)
            notes.append(f"{key}: its seeds {sorted(by_seed)} share no test row; left out.")
            continue
        summary, cell_data, signature, cell_notes = _summarise_cell(group, by_seed, bootstrap_samples, metric)
        summaries.append(summary)
        data[key], signatures[key] = cell_data, signature
        notes.extend(cell_notes)
    empty = [k for k in empty if k not in data]

    summaries.sort(key=lambda c: (-c.score(metric), c.key))
    best = None
    if summaries:
        # The best is the top cell among those scored on the comparison's test rows, never a leftover
        # result from an older test file that outscores cells it cannot be paired with.
        reference = _reference_rows(summaries, signatures)
        best = next(c for c in summaries if signatures[c.key] == reference)
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
        idx = bootstrap_indices(len(rows), bootstrap_samples, strata=labels)
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


def _reference_rows(summaries: Sequence[CellSummary], signatures: dict[str, tuple]) -> tuple:
    """The test rows the comparison is on: those that most cells were scored on; on a tie, those of the
    newest result (the data as it is now)."""
    counts = Counter(signatures[c.key] for c in summaries)
    newest: dict[tuple, str] = {}
    for c in summaries:
        sig = signatures[c.key]
        newest[sig] = max(newest.get(sig, ""), c.created)
    return max(counts, key=lambda sig: (counts[sig], newest[sig]))


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
    of one row are not independent, so with several seeds the test is clustered by row
    (:func:`clustered_mcnemar`, one observation per row); pooling them counted every seed as new
    evidence and turned "not significant" into "significant" by adding seeds. Where they share no seed (a
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
    tests: dict[str, tuple[float, float, Pairing, tuple[int, ...], Any, str]] = {}
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
        test = "mcnemar"
        if len(shared) > 1:  # several seeds per row: one observation per row
            best_c, other_c = data[best.key].correct, data[c.key].correct
            p = clustered_mcnemar([best_c[s] for s in shared], [other_c[s] for s in shared])
            test = "mcnemar_clustered"
        if metric == "macro_f1":
            diff, p = _f1_test(data[best.key], data[c.key], shared, bootstrap_samples)
        tests[c.key] = (diff, p, pairing, shared, res, test if metric == "accuracy" else "paired_bootstrap")
    adjusted = dict(zip(tests, holm_adjust([t[1] for t in tests.values()]), strict=True))
    out = []
    for c in summaries:
        if c.key == best.key:
            out.append(c)
        elif c.key not in tests:
            out.append(replace(c, comparable=False))
        else:
            diff, p, pairing, shared, res, test = tests[c.key]
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
                test=test,
            )
            out.append(replace(c, versus_best=versus))
    return out, notes
