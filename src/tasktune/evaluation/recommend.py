"""Recommend one cell of a comparison: the cheapest that meets the task's constraints and is not
significantly worse than the best.

A pure function of the Comparison and the constraints (no files, no clock, no randomness), so the
recommendation printed after a run and the one in a report regenerated later are the same.

Rule, in order:
1. the majority baseline is never recommended (it is the floor every route must clear);
2. candidates meet every constraint: latency p50 <= max_latency_ms, trainable parameters <=
   max_trainable_params, artifact bytes <= max_artifact_bytes, labelled examples used <= label_budget
   (zero-shot uses none; other protocols are checked only where the count is known); a constraint on
   a figure that was never measured (latency of old results) is not met: it cannot be shown to be;
3. among them, those not significantly below the best cell (Holm-adjusted McNemar for accuracy, a
   paired bootstrap for macro-F1, see compare.py);
4. the cheapest of those by (trainable parameters, artifact bytes, latency p50), then the metric.

"Best", "above the baseline" and every figure in the paragraph are in the task's metric
(``Comparison.metric``: accuracy or macro-F1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from tasktune.evaluation.comparison import METRIC_NAMES, CellSummary, Comparison
from tasktune.evaluation.formatting import format_bytes, format_count, format_ms, format_p, format_ratio, pct

Status = Literal["ok", "constraints_unmet", "baseline_only", "no_results"]
CONSTRAINT_FIELDS = ("max_latency_ms", "max_trainable_params", "max_artifact_bytes", "label_budget")
LabelCount = int | Mapping[str, int | None] | None


@dataclass(frozen=True)
class Exclusion:
    cell: str
    display: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Recommendation:
    choice: str | None  # key of the recommended cell; None when nothing can be recommended
    status: Status
    reasons: str  # one paragraph, with the figures behind the choice
    warning: str | None = None
    candidates: tuple[str, ...] = ()  # meet the constraints and are not significantly below the best
    excluded: tuple[Exclusion, ...] = ()  # ruled out by a constraint, with the constraint and figure
    below_best: tuple[str, ...] = ()  # significantly below the best (Holm-adjusted)
    not_compared: tuple[str, ...] = ()  # scored on other test rows than the best

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def labelled_examples_for(
    protocol: str, num_labels: int, *, k: int = 16, train_size: int | None = None
) -> int | None:
    """Labelled examples one cell of a protocol uses: zero-shot none, few-shot K per class to train plus
    K per class for dev, full data the whole train split (None where that size is not known)."""
    if protocol == "zero":
        return 0
    if protocol == "few":
        return 2 * k * num_labels
    return train_size


def recommend(
    comparison: Comparison,
    constraints: Any = None,
    protocol_label_count: LabelCount = None,
) -> Recommendation:
    """`constraints`: a task's Constraints, a mapping with the same fields, or None.
    `protocol_label_count`: labelled examples a non-zero-shot cell uses, one number or per protocol."""
    limits = _limits(constraints)
    m = comparison.metric
    cells = list(comparison.cells)
    failed_text = _failed_text(comparison)
    if not cells:
        reasons = "No cell produced test results, so there is nothing to recommend." + failed_text
        return Recommendation(None, "no_results", reasons, warning="no results")
    baseline = next((c for c in cells if c.is_baseline), None)
    routes = [c for c in cells if not c.is_baseline]
    # A route that does no better than always answering the most frequent label is not an adaptation
    # worth having, however cheap: it never counts as "not significantly below the best".
    eligible = [c for c in routes if baseline is None or c.score(m) > baseline.score(m)]
    if not eligible:
        if routes:
            floor = f" ({pct(baseline.score(m))} % {METRIC_NAMES[m]})" if baseline else ""
            reasons = (
                f"No route scores above the majority baseline{floor}; nothing is recommended. "
                "Check the labels and the data, or try another route or backbone." + failed_text
            )
            return Recommendation(None, "baseline_only", reasons, warning="no route beats the baseline")
        reasons = (
            "Only the majority baseline has results"
            + (f" ({pct(baseline.score(m))} % {METRIC_NAMES[m]})" if baseline else "")
            + "; it is never recommended. Run a route that learns from the task."
            + failed_text
        )
        return Recommendation(None, "baseline_only", reasons, warning="only the baseline ran")

    best = comparison.best_cell
    assert best is not None  # cells is not empty
    violations = {c.key: _violations(c, limits, protocol_label_count) for c in eligible}
    excluded = tuple(
        Exclusion(c.key, c.display, tuple(_reason(n, f, limits) for n, f in violations[c.key]))
        for c in eligible
        if violations[c.key]
    )
    meeting = [c for c in eligible if not violations[c.key]]
    below = tuple(c.key for c in cells if c.versus_best and c.versus_best.significantly_below)
    not_compared = tuple(c.key for c in cells if not c.comparable)
    common = {"excluded": excluded, "below_best": below, "not_compared": not_compared}

    if not meeting:
        choice = eligible[0]  # cells are sorted most accurate first
        ruled = "; ".join(f"{e.display}: {', '.join(e.reasons)}" for e in excluded)
        warning = "no cell meets the constraints; recommending the most accurate one anyway"
        reasons = (
            f"No cell meets the task's constraints ({ruled}). Recommending the most accurate cell anyway, "
            f"{choice.display} at {_acc(choice, m)}, with a warning: relax a constraint or try a smaller "
            f"route or backbone." + _baseline_text(baseline, m) + failed_text
        )
        return Recommendation(choice.key, "constraints_unmet", reasons, warning=warning, **common)

    candidates = [c for c in meeting if c.key == best.key or _not_below(c)]
    fallback = not candidates
    # Where every feasible cell is worse than the (infeasible) best, take the most accurate feasible one
    # that was compared with it; one scored on other test rows only where no feasible cell was compared.
    compared = [c for c in meeting if c.comparable]
    choice = (compared or meeting)[0] if fallback else min(candidates, key=lambda c: _cost_key(c, m))
    parts = [f"Recommended: {choice.display}, {_acc(choice, m)}."]
    parts.append(_versus_best_text(choice, best, candidates, fallback, m, meeting))
    parts.append(_constraints_text(limits, excluded, violations, eligible))
    parts.append(_below_text(comparison, tuple(k for k in below if k != choice.key)))
    if not_compared:
        n = len(not_compared)
        parts.append(f"{n} cell{'s were' if n > 1 else ' was'} scored on other test rows and not compared.")
    parts.append(_label_budget_note(limits, eligible, protocol_label_count))
    reasons = " ".join(p for p in parts if p) + _baseline_text(baseline, m) + failed_text
    warning = None
    if fallback:
        warning = (
            "every compared cell that meets the constraints is significantly below the best cell"
            if choice.comparable
            else "no cell that meets the constraints was scored on the best cell's test rows"
        )
    return Recommendation(
        choice.key, "ok", reasons, warning=warning, candidates=tuple(c.key for c in candidates), **common
    )


# --- constraints -----------------------------------------------------------------------------------


def _limits(constraints: Any) -> dict[str, float | None]:
    if constraints is None:
        return dict.fromkeys(CONSTRAINT_FIELDS)
    if isinstance(constraints, Mapping):
        unknown = set(constraints) - set(CONSTRAINT_FIELDS)
        if unknown:
            raise ValueError(f"unknown constraint(s) {sorted(unknown)}; expected {list(CONSTRAINT_FIELDS)}")
        return {k: constraints.get(k) for k in CONSTRAINT_FIELDS}
    return {k: getattr(constraints, k, None) for k in CONSTRAINT_FIELDS}


def _labels_used(cell: CellSummary, count: LabelCount) -> int | None:
    if cell.protocol == "zero":
        return 0
    if isinstance(count, Mapping):
        return count.get(cell.protocol)
    return count


def _violations(
    cell: CellSummary, limits: dict[str, float | None], count: LabelCount
) -> list[tuple[str, str]]:
    """(constraint, the cell's figure) for every constraint the cell fails."""
    out = []
    cost = cell.cost
    if limits["max_latency_ms"] is not None:
        p50 = cost.latency_p50_ms
        if p50 is None:
            out.append(("max_latency_ms", "latency not measured"))
        elif p50 > limits["max_latency_ms"]:
            out.append(("max_latency_ms", f"latency p50 {format_ms(p50)} ms"))
    if (
        limits["max_trainable_params"] is not None
        and cost.trainable_parameters > limits["max_trainable_params"]
    ):
        out.append(
            ("max_trainable_params", f"{format_count(cost.trainable_parameters)} trainable parameters")
        )
    if limits["max_artifact_bytes"] is not None and cost.artifact_bytes > limits["max_artifact_bytes"]:
        out.append(("max_artifact_bytes", f"artifact {format_bytes(cost.artifact_bytes)}"))
    used = _labels_used(cell, count)
    if limits["label_budget"] is not None and used is not None and used > limits["label_budget"]:
        out.append(("label_budget", f"{used:,} labelled examples"))
    return out


def _limit(value: float | None) -> str:
    """A limit as the user wrote it: 100000000 -> '100,000,000', 50.0 -> '50'."""
    if value is None:
        return "none"
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def _reason(name: str, figure: str, limits: dict[str, float | None]) -> str:
    limit = _limit(limits[name])
    return f"{figure} ({name}={limit})" if "not measured" in figure else f"{figure} > {name}={limit}"


def _cost_key(c: CellSummary, metric: str = "accuracy") -> tuple:
    latency = c.cost.latency_p50_ms if c.cost.latency_p50_ms is not None else math.inf
    return (c.cost.trainable_parameters, c.cost.artifact_bytes, latency, -c.score(metric), c.key)


def _not_below(c: CellSummary) -> bool:
    return c.comparable and c.versus_best is not None and not c.versus_best.significantly_below


# --- the paragraph ---------------------------------------------------------------------------------


def _acc(c: CellSummary, metric: str = "accuracy") -> str:
    lo, hi = c.score_ci(metric)
    sd = c.score_std(metric)
    std = f" ± {pct(sd)}" if sd is not None else ""
    seeds = f" over {len(c.seeds)} seeds" if len(c.seeds) > 1 else ""
    return f"{pct(c.score(metric))}{std} % {METRIC_NAMES[metric]}{seeds} (95 % CI {pct(lo)}–{pct(hi)})"


def _test_text(c: CellSummary) -> str:
    vb = c.versus_best
    if vb is None:
        return ""
    if vb.test == "paired_bootstrap":
        rows = "shared seeds" if vb.pairing == "seed_row" else "seed-averaged predictions"
        return (
            f"paired bootstrap of macro-F1 {format_p(vb.p_value)}, Holm-adjusted {format_p(vb.p_holm)}, "
            f"over test rows ({rows})"
        )
    if vb.test == "mcnemar_clustered":
        rows = vb.n // len(vb.paired_seeds)
        return (
            f"McNemar clustered by example {format_p(vb.p_value)}, Holm-adjusted {format_p(vb.p_holm)}, "
            f"on {rows:,} examples × {len(vb.paired_seeds)} shared seeds"
        )
    unit = "(seed, example) pairs" if vb.pairing == "seed_row" else "examples, majority over seeds"
    return f"McNemar {format_p(vb.p_value)}, Holm-adjusted {format_p(vb.p_holm)}, on {vb.n:,} {unit}"


def _cost_text(choice: CellSummary, best: CellSummary) -> str:
    a, b = choice.cost, best.cost
    if a.trainable_parameters == 0:
        params = "with no trainable parameters"
        if b.trainable_parameters:
            params += f" (vs {format_count(b.trainable_parameters)})"
    elif b.trainable_parameters > a.trainable_parameters:
        params = (
            f"at {format_ratio(a.trainable_parameters, b.trainable_parameters)} of the trainable parameters "
            f"({format_count(a.trainable_parameters)} vs {format_count(b.trainable_parameters)})"
        )
    else:
        params = f"with {format_count(a.trainable_parameters)} trainable parameters"
    size = f"{format_bytes(a.artifact_bytes)} per task" if a.artifact_bytes else "nothing to store per task"
    if b.artifact_bytes and b.artifact_bytes != a.artifact_bytes:
        size += f" (vs {format_bytes(b.artifact_bytes)})"
    return f"{params} and {size}"


def _versus_best_text(
    choice: CellSummary,
    best: CellSummary,
    candidates: list[CellSummary],
    fallback: bool,
    m: str = "accuracy",
    meeting: list[CellSummary] | None = None,
) -> str:
    if choice.key == best.key:
        others = [c for c in candidates if c.key != best.key]
        text = (
            "It is the most accurate cell" if m == "accuracy" else f"It is the best cell by {METRIC_NAMES[m]}"
        )
        if others:
            return text + " and the cheapest of the cells not significantly below it."
        rivals = [c for c in (meeting or []) if c.key != best.key]
        if not rivals:  # one route ran (or one beat the baseline, or met the constraints)
            return text + "; no other route both meets the constraints and beats the majority baseline."
        if all(c.comparable for c in rivals):
            return text + "; every other cell that meets the constraints is significantly below it."
        return text + (
            "; every other cell that meets the constraints is significantly below it or was scored on "
            "other test rows."
        )
    gap = (best.score(m) - choice.score(m)) * 100
    if fallback and not choice.comparable:
        return (
            f"The best cell, {best.display}, at {pct(best.score(m))} %, is ruled out by a constraint, and no "
            f"cell that meets the constraints was scored on its test rows: this one (scored on "
            f"{choice.split}, n={choice.n_test}) is the most accurate of them, not compared with it. Rerun "
            f"the cells on the same test data to compare them."
        )
    if fallback:
        return (
            f"It is {gap:.1f} points below the best cell, {best.display}, at {pct(best.score(m))} % "
            f"({_test_text(choice)}), which is ruled out by a constraint; every cell that meets the "
            f"constraints and was compared with it is significantly below it, and this is the most "
            f"accurate of them."
        )
    return (
        f"It is within {gap:.1f} points of the best cell, {best.display}, at {pct(best.score(m))} % "
        f"({_test_text(choice)}), {_cost_text(choice, best)}; chosen as the cheapest (trainable parameters, "
        f"then artifact bytes, then latency) of {_cells_that(len(candidates))} the constraints and "
        f"{'are' if len(candidates) > 1 else 'is'} not significantly below the best."
    )


def _cells_that(n: int) -> str:
    return f"{n} cells that meet" if n > 1 else "1 cell that meets"


def _constraints_text(
    limits: dict[str, float | None],
    excluded: tuple[Exclusion, ...],
    violations: dict[str, list[tuple[str, str]]],
    eligible: list[CellSummary],
) -> str:
    set_ = {k: v for k, v in limits.items() if v is not None}
    if not set_:
        return "The task sets no constraints."
    if not excluded:
        given = ", ".join(f"{k}={_limit(v)}" for k, v in set_.items())
        return f"Every cell meets the constraints ({given})."
    texts = []
    for name, value in set_.items():
        hit = [(c.display, figure) for c in eligible for n, figure in violations[c.key] if n == name]
        if hit:
            n = len(hit)
            detail = "; ".join(f"{d}: {figure}" for d, figure in hit)
            texts.append(
                f"{n} cell{'s are' if n > 1 else ' is'} ruled out by {name}={_limit(value)} ({detail})"
            )
    return "; ".join(texts) + "."


def _below_text(comparison: Comparison, below: tuple[str, ...]) -> str:
    if not below:
        return ""
    items = []
    for key in below:
        c = comparison.cell(key)
        vb = c.versus_best
        gap = (comparison.best_cell.score(comparison.metric) - c.score(comparison.metric)) * 100
        items.append(f"{c.display} (-{gap:.1f} points, {format_p(vb.p_holm)})")
    n = len(below)
    return (
        f"{n} cell{'s are' if n > 1 else ' is'} significantly below the best (Holm-adjusted p < "
        f"{comparison.alpha:g}) and not considered: {'; '.join(items)}."
    )


def _label_budget_note(limits: dict, eligible: list[CellSummary], count: LabelCount) -> str:
    if limits["label_budget"] is None:
        return ""
    unknown = sorted({c.protocol for c in eligible if _labels_used(c, count) is None})
    if not unknown:
        return ""
    return (
        f"The label budget was not checked for protocol {', '.join(unknown)}: "
        "its labelled-example count is unknown."
    )


def _baseline_text(baseline: CellSummary | None, metric: str = "accuracy") -> str:
    if baseline is None:
        return ""
    return f" The majority baseline scores {pct(baseline.score(metric))} % {METRIC_NAMES[metric]}."


def _failed_text(comparison: Comparison) -> str:
    parts = []
    if comparison.failed:
        n = len(comparison.failed)
        names = ", ".join(name for name, _ in comparison.failed)
        parts.append(
            f" {n} cell{'s' if n > 1 else ''} failed and {'are' if n > 1 else 'is'} not compared: {names}."
        )
    if comparison.empty:
        parts.append(f" No test records to compare in: {', '.join(comparison.empty)} (see the notes).")
    return "".join(parts)
