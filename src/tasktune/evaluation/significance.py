"""Paired significance tests for two classifiers scored on the same test examples.

Two prompts (or two adaptation routes) evaluated on one test set make *paired* observations: each
example is right or wrong for both. Treating the two accuracies as independent samples ignores that
pairing and gives intervals that are far too wide (the shared easy and hard examples cancel out in the
difference). So everything here works on the per-example correctness pairs:

* McNemar's test (McNemar 1947), in its exact binomial form, for "is one really better?", and its
  clustered form (a sign-flip test over rows) when each row was scored by several seeds;
* a paired percentile bootstrap (Efron & Tibshirani 1993) for the size of the accuracy difference;
* for macro-F1, which is not a mean over examples and so has no McNemar, a paired bootstrap of the
  F1 difference (both classifiers scored on the same row resamples);
* the normal-approximation sample size for McNemar's test (Connor 1987; Lachin 1992), to say how
  many examples a non-significant comparison would have needed;
* Holm's step-down adjustment (Holm 1979) when the best route is compared against several others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from tasktune.evaluation.metrics import bootstrap_ci

BOOTSTRAP_SAMPLES = 2000
DEFAULT_POWER = 0.8


def _as_correctness(values: np.ndarray | Sequence, name: str) -> np.ndarray:
    """Coerce one side's per-example correctness to a 1-D bool array, or say what is wrong with it."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of per-example correctness, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: need at least one paired example")
    if arr.dtype == np.bool_:
        return arr
    if not np.issubdtype(arr.dtype, np.number) or not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must hold only booleans or 0/1 values (1 = correct)")
    return arr.astype(bool)


def _paired(correct_a, correct_b) -> tuple[np.ndarray, np.ndarray]:
    a = _as_correctness(correct_a, "correct_a")
    b = _as_correctness(correct_b, "correct_b")
    if a.shape != b.shape:
        raise ValueError(
            f"correct_a and correct_b must be paired on the same examples: lengths {a.size} and {b.size}"
        )
    return a, b


@dataclass(frozen=True)
class McNemarResult:
    """Outcome of the exact McNemar test; only the discordant pairs (a_only, b_only) carry evidence."""

    n: int
    a_only: int  # A right, B wrong  (McNemar's b)
    b_only: int  # A wrong, B right  (McNemar's c)
    both_right: int
    both_wrong: int
    p_value: float

    @property
    def discordant(self) -> int:
        return self.a_only + self.b_only

    def to_dict(self) -> dict:
        return asdict(self)


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemarResult:
    """Exact two-sided McNemar test (McNemar 1947; exact form as in Edwards 1948 / Fleiss).

    Under H0 (equal accuracy) each discordant pair is equally likely to favour A or B, so
    b ~ Binomial(b + c, 1/2). The exact test is used rather than the chi-square approximation because
    prompt comparisons often have only a handful of discordant pairs, where the approximation is poor.
    """
    a, b = _paired(correct_a, correct_b)
    a_only = int(np.sum(a & ~b))
    b_only = int(np.sum(~a & b))
    discordant = a_only + b_only
    if discordant == 0:
        p_value = 1.0  # identical correctness everywhere: no evidence either way
    else:
        # Binomial(n, 1/2) is symmetric, so the two-sided p is twice the smaller tail, capped at 1.
        p_value = min(1.0, 2.0 * float(stats.binom.cdf(min(a_only, b_only), discordant, 0.5)))
    return McNemarResult(
        n=int(a.size),
        a_only=a_only,
        b_only=b_only,
        both_right=int(np.sum(a & b)),
        both_wrong=int(np.sum(~a & ~b)),
        p_value=p_value,
    )


def clustered_mcnemar(
    correct_a: Sequence[np.ndarray], correct_b: Sequence[np.ndarray], samples: int = 20_000, seed: int = 0
) -> float:
    """Two-sided p of "A and B are equally accurate" when every test row was scored several times (one
    correctness array per seed, all on the same rows), as a sign-flip test over rows.

    The seeds of one row are not independent evidence (a hard sentence is hard for every seed), so
    pooling (seed, row) pairs into one McNemar test makes p shrink with every seed added even when the
    seeds agree exactly. Here each row is one observation: d = (seeds where A alone is right) minus
    (seeds where B alone is right); under H0 A and B are exchangeable within a row, so each row's sign
    is a fair coin (the clustered McNemar idea of Durkalski et al. 2003, tested by randomisation rather
    than its chi-square approximation). Exact when every nonzero |d| is equal (then it is the exact
    McNemar test on the rows' signs) or when at most 16 rows differ; otherwise ``samples`` seeded
    random flips, p = (1 + hits) / (samples + 1), which never reports an impossible 0.
    """
    a = np.stack([_as_correctness(x, "correct_a") for x in correct_a])
    b = np.stack([_as_correctness(x, "correct_b") for x in correct_b])
    if a.shape != b.shape:
        raise ValueError(f"the two sides differ in shape: {a.shape} vs {b.shape}")
    d = (a & ~b).sum(axis=0).astype(np.int64) - (~a & b).sum(axis=0)
    d = d[d != 0]
    if d.size == 0:
        return 1.0
    observed = abs(int(d.sum()))
    magnitude = np.abs(d)
    if (magnitude == magnitude[0]).all():
        k = int(min((d > 0).sum(), (d < 0).sum()))
        return min(1.0, 2.0 * float(stats.binom.cdf(k, d.size, 0.5)))
    if d.size <= 16:
        signs = 1 - 2 * ((np.arange(2**d.size)[:, None] >> np.arange(d.size)) & 1)
        return float((np.abs(signs @ magnitude) >= observed).mean())
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, samples, 2000):
        n = min(2000, samples - start)
        flips = 1 - 2 * rng.integers(0, 2, size=(n, d.size), dtype=np.int64)
        hits += int((np.abs(flips @ magnitude) >= observed).sum())
    return (1 + hits) / (samples + 1)


def paired_bootstrap_diff(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    samples: int = BOOTSTRAP_SAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Accuracy difference A - B and its paired percentile-bootstrap CI: (diff, low, high).

    The difference in accuracies is the mean of the per-example differences a_i - b_i, so
    bootstrapping that one vector resamples the same example indices for both classifiers — the
    paired bootstrap (Efron & Tibshirani 1993; Koehn 2004 for its use in comparing systems).
    """
    a, b = _paired(correct_a, correct_b)
    diffs = a.astype(np.float64) - b.astype(np.float64)
    low, high = bootstrap_ci(diffs, samples=samples, level=level, seed=seed)
    return float(diffs.mean()), low, high


def required_sample_size(
    acc_a: float,
    acc_b: float,
    discordant_rate: float,
    alpha: float = 0.05,
    power: float = DEFAULT_POWER,
) -> int | None:
    """Paired examples McNemar's test needs to detect a difference acc_a - acc_b with given power.

    Normal-approximation formula for paired proportions (Connor 1987; Lachin 1992). With the
    difference d = p10 - p01 and the discordant rate psi = p10 + p01 (so p10 = (psi + d)/2 and
    p01 = (psi - d)/2):

        n = [z_{1-alpha/2} * sqrt(psi) + z_{power} * sqrt(psi - d^2)]^2 / d^2

    Fed with observed values this is a planning figure ("a difference this size would need about n
    examples"), not extra evidence: post-hoc power from an observed effect says nothing new about
    whether this test set found a real difference. Returns None when d == 0 or psi == 0, where there
    is no difference to detect.
    """
    for name, value in (("acc_a", acc_a), ("acc_b", acc_b), ("discordant_rate", discordant_rate)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError(f"alpha and power must be in (0, 1), got alpha={alpha}, power={power}")
    d = acc_a - acc_b
    psi = discordant_rate
    if d == 0.0 or psi == 0.0:
        return None
    # |d| <= psi because d = p10 - p01 and psi = p10 + p01 with both non-negative (tolerate rounding).
    if abs(d) > psi + 1e-9:
        raise ValueError(f"discordant_rate {psi} cannot be smaller than the accuracy difference {abs(d)}")
    z_alpha = stats.norm.ppf(1.0 - alpha / 2.0)
    z_power = stats.norm.ppf(power)
    root = z_alpha * math.sqrt(psi) + z_power * math.sqrt(max(psi - d * d, 0.0))
    return math.ceil(root * root / (d * d))


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni step-down adjusted p-values (Holm 1979), in the input order.

    The i-th smallest p (0-based) is multiplied by (m - i), then a running maximum keeps the adjusted
    values monotone in the original ordering and they are capped at 1. Rejecting where adjusted p <
    alpha controls the family-wise error rate, with more power than plain Bonferroni.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError("p_values must be a flat sequence")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("p_values must all lie in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = (m - np.arange(m)) * p[order]
    adjusted_sorted = np.minimum(np.maximum.accumulate(scaled), 1.0)
    adjusted = np.empty(m, dtype=np.float64)
    adjusted[order] = adjusted_sorted
    return [float(x) for x in adjusted]


@dataclass(frozen=True)
class PairedComparison:
    """Everything `tasktune prompt ab` and run comparison report about two classifiers on one test set.

    `significant` and `better` come from McNemar's test at `alpha`; the bootstrap interval describes
    the size of the difference. The two usually agree; near the threshold they can disagree slightly,
    and the verdict reports both rather than hiding either.
    """

    name_a: str
    name_b: str
    n: int
    accuracy_a: float
    accuracy_a_ci: tuple[float, float]
    accuracy_b: float
    accuracy_b_ci: tuple[float, float]
    difference: float  # accuracy_a - accuracy_b
    difference_ci: tuple[float, float]
    ci_level: float
    alpha: float
    power: float
    mcnemar: McNemarResult
    required_n: int | None
    significant: bool
    better: str | None
    verdict: str

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("accuracy_a_ci", "accuracy_b_ci", "difference_ci"):
            data[key] = list(data[key])  # JSON has no tuples
        return data


def _format_p(p: float) -> str:
    if p < 0.001:
        return "p<0.001"
    if p < 0.1:
        return f"p={p:.2g}"
    return f"p={p:.2f}"


def _round_for_text(n: int) -> int:
    """Two significant figures: the sample size is an approximation, so don't print false precision."""
    if n < 100:
        return n
    magnitude = 10 ** (len(str(n)) - 2)
    return round(n / magnitude) * magnitude


def _verdict(
    name_a: str,
    name_b: str,
    diff: float,
    ci: tuple[float, float],
    level: float,
    result: McNemarResult,
    better: str | None,
    required_n: int | None,
    power: float,
) -> str:
    pct = f"{level * 100:g}%"
    p_text = f"McNemar {_format_p(result.p_value)} on {result.n:,} paired examples"
    if better is not None:
        # Report the winner's margin as a positive number: flip the A - B interval when B wins.
        sign = 1.0 if better == name_a else -1.0
        worse = name_b if better == name_a else name_a
        lo, hi = sorted((sign * ci[0] * 100, sign * ci[1] * 100))
        return (
            f"{better} is better than {worse}: {sign * diff * 100:+.1f} points "
            f"({pct} CI {lo:+.1f} to {hi:+.1f}), {p_text}."
        )
    head = (
        f"No significant difference between {name_a} and {name_b} "
        f"({name_a} - {name_b}: {diff * 100:+.1f} points, {pct} CI {ci[0] * 100:+.1f} to "
        f"{ci[1] * 100:+.1f}, {p_text})"
    )
    if result.discordant == 0:
        return f"{head}; both are right and wrong on exactly the same examples."
    if required_n is None:
        return f"{head}; their accuracies are equal, so there is no difference to detect."
    return (
        f"{head}; about {_round_for_text(required_n):,} examples would be needed to detect a "
        f"difference this size with {power * 100:g}% power."
    )


def compare_paired(
    name_a: str,
    correct_a: np.ndarray,
    name_b: str,
    correct_b: np.ndarray,
    alpha: float = 0.05,
    seed: int = 0,
    *,
    power: float = DEFAULT_POWER,
    samples: int = BOOTSTRAP_SAMPLES,
) -> PairedComparison:
    """Compare two classifiers on the same examples and say, in one sentence, what can be concluded.

    Intervals are at level 1 - alpha (95% by default). A classifier is called better only when the
    exact McNemar p-value is below alpha; otherwise the verdict says how many examples a difference
    of the observed size would need, so "no difference" is not mistaken for "the same".
    """
    if name_a == name_b:
        raise ValueError(f"the two classifiers need distinct names, both are {name_a!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    a, b = _paired(correct_a, correct_b)
    level = 1.0 - alpha
    result = mcnemar_exact(a, b)
    diff, low, high = paired_bootstrap_diff(a, b, samples=samples, level=level, seed=seed)
    acc_a, acc_b = float(a.mean()), float(b.mean())
    required_n = required_sample_size(acc_a, acc_b, result.discordant / result.n, alpha=alpha, power=power)
    significant = result.p_value < alpha
    better = None
    if significant:
        better = name_a if result.a_only > result.b_only else name_b
    return PairedComparison(
        name_a=name_a,
        name_b=name_b,
        n=result.n,
        accuracy_a=acc_a,
        accuracy_a_ci=bootstrap_ci(a.astype(np.float64), level=level, seed=seed),
        accuracy_b=acc_b,
        accuracy_b_ci=bootstrap_ci(b.astype(np.float64), level=level, seed=seed),
        difference=diff,
        difference_ci=(low, high),
        ci_level=level,
        alpha=alpha,
        power=power,
        mcnemar=result,
        required_n=required_n,
        significant=significant,
        better=better,
        verdict=_verdict(name_a, name_b, diff, (low, high), level, result, better, required_n, power),
    )


# Macro-F1 is not a mean over examples, so it has no McNemar: its paired test resamples rows.


def resampled_macro_f1(labels: np.ndarray, preds: np.ndarray, idx: np.ndarray, num_labels: int) -> np.ndarray:
    """Macro-F1 (as compute_metrics defines it: over the classes that occur in the resample's labels or
    predictions) of ``preds`` on each row resample ``idx`` (S, N): (S,). In chunks of resamples, so
    memory stays bounded on large test sets."""
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
    present = (denom > 0).sum(axis=1)
    return f1.sum(axis=1) / np.maximum(present, 1)


def bootstrap_indices(n: int, samples: int, seed: int = 0, strata: np.ndarray | None = None) -> np.ndarray:
    """``samples`` resamples (with replacement) of ``n`` row positions: (samples, n), seeded.

    With ``strata`` (the true labels), rows are resampled within each class, so every class keeps its
    count in every resample (a stratified bootstrap). Macro-F1 needs it: a plain resample drops a rare
    class now and then, the average then runs over fewer classes, and the resampled values are biased
    against the estimate (a 95 % interval could end below the very figure it brackets)."""
    rng = np.random.default_rng(seed)
    if strata is None:
        return rng.integers(0, n, size=(samples, n))
    strata = np.asarray(strata)
    parts = [np.flatnonzero(strata == c) for c in np.unique(strata)]
    return np.concatenate([pos[rng.integers(0, len(pos), size=(samples, len(pos)))] for pos in parts], axis=1)


def paired_bootstrap_f1(
    labels: np.ndarray,
    a: Sequence[np.ndarray],
    b: Sequence[np.ndarray],
    num_labels: int,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 1,
) -> tuple[float, float]:
    """(difference, two-sided p) of mean macro-F1, ``a`` minus ``b`` (each a list of prediction arrays,
    e.g. one per seed), by a paired bootstrap over rows (stratified by class): both scored on the same
    resamples, and p is twice the smaller tail of the resampled differences around 0."""

    def mean_f1(preds: Sequence[np.ndarray], idx: np.ndarray) -> np.ndarray:
        return np.mean([resampled_macro_f1(labels, x, idx, num_labels) for x in preds], axis=0)

    whole = np.arange(len(labels))[None]
    observed = float(mean_f1(a, whole)[0] - mean_f1(b, whole)[0])
    idx = bootstrap_indices(len(labels), samples, seed=seed, strata=labels)
    diff = mean_f1(a, idx) - mean_f1(b, idx)
    # (1 + tail) / (samples + 1): a finite number of resamples cannot show p = 0 (Davison & Hinkley 1997).
    tail = min(int((diff <= 0).sum()), int((diff >= 0).sum()))
    return observed, min(1.0, 2 * (tail + 1) / (samples + 1))


def paired_gain(
    labels: np.ndarray, a: np.ndarray, b: np.ndarray, metric: str, num_labels: int
) -> tuple[float, float, str]:
    """(gain of ``a`` over ``b`` in ``metric``, two-sided p, the test's name) for two prediction arrays
    on the same rows: exact McNemar on correctness for accuracy, a paired bootstrap for macro-F1. Used
    where one choice is kept unless another beats it on evidence (prompt search, label texts)."""
    if metric == "macro_f1":
        gain, p = paired_bootstrap_f1(labels, [a], [b], num_labels, samples=2000, seed=0)
        return gain, p, "paired bootstrap of macro-F1"
    right_a, right_b = a == labels, b == labels
    return float(right_a.mean() - right_b.mean()), mcnemar_exact(right_a, right_b).p_value, "McNemar"
