"""A/B tests between two versions of an adaptation: a deterministic traffic split and a verdict.

The two arms see *different* requests, so their accuracies are independent binomial samples (unlike the
paired comparison in ``tasktune.evaluation.significance``, where both models score the same examples):

* the p-value is Fisher's exact test on the 2 x 2 table (arm x correct/wrong). It is exact for any size,
  so small arms never get an over-optimistic verdict; it is slightly conservative, which for a "promote
  B?" decision errs on the side of keeping what works. (Boschloo's test is more powerful but takes about
  half a second per call at a few hundred labels, too slow for a dashboard.)
* the interval for B - A is Newcombe's hybrid score interval (Newcombe 1998, method 10), built from the
  two Wilson intervals: unlike the Wald interval it keeps close to its nominal coverage near 0 or 1
  accuracy and with small arms, and it never leaves [-1, 1].
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from scipy import stats

Arm = Literal["A", "B"]
Verdict = Literal["insufficient data", "no significant difference", "B better", "A better"]

DEFAULT_ALPHA = 0.05
DEFAULT_MIN_FEEDBACK = 30


@dataclass(frozen=True)
class ABSplit:
    """Send a fixed share of traffic to version B, the same request key always to the same arm."""

    version_a: str
    version_b: str
    share_b: float

    def __post_init__(self) -> None:
        for field in ("version_a", "version_b"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{field} must be a non-empty string, got {value!r}")
        if self.version_a == self.version_b:
            raise ValueError(f"version_a and version_b are both {self.version_a!r}: an A/B test needs two")
        share = self.share_b
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0.0 < share < 1.0:
            raise ValueError(f"share_b must be a number strictly between 0 and 1, got {share!r}")

    def _unit(self, request_key: str) -> float:
        """sha256 of the key -> a number uniform in [0, 1).

        The version names are hashed in too, so that two different experiments split traffic
        independently (otherwise the same users would always be the guinea pigs). 53 bits fill a double's
        mantissa exactly, so every value is representable and strictly below 1.
        """
        if not isinstance(request_key, str):
            raise ValueError(f"request_key must be a string, got {type(request_key).__name__}")
        digest = hashlib.sha256(f"{self.version_a}\0{self.version_b}\0{request_key}".encode()).digest()
        return (int.from_bytes(digest[:8], "big") >> 11) / float(1 << 53)

    def assign(self, request_key: str) -> Arm:
        # A fixed threshold on a fixed hash: raising share_b later only moves keys from A to B, never back.
        return "B" if self._unit(request_key) < self.share_b else "A"

    def version_for(self, request_key: str) -> str:
        return self.version_b if self.assign(request_key) == "B" else self.version_a

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ABVerdict:
    n_a: int
    correct_a: int
    n_b: int
    correct_b: int
    acc_a: float | None  # None when the arm has no labelled prediction yet
    acc_b: float | None
    difference: float | None  # acc_b - acc_a
    ci_low: float | None  # (1 - alpha) Newcombe hybrid score interval of the difference
    ci_high: float | None
    p_value: float  # two-sided Fisher exact test
    alpha: float
    min_feedback: int
    state: Verdict
    recommendation: str

    def to_dict(self) -> dict:
        return asdict(self)


def _wilson(correct: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval for one proportion (Wilson 1927)."""
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(
    correct_a: int, n_a: int, correct_b: int, n_b: int, *, alpha: float
) -> tuple[float, float]:
    """Newcombe's hybrid score interval for p_b - p_a (Newcombe 1998, method 10), both arms non-empty."""
    z = float(stats.norm.ppf(1 - alpha / 2))
    pa, pb = correct_a / n_a, correct_b / n_b
    la, ua = _wilson(correct_a, n_a, z)
    lb, ub = _wilson(correct_b, n_b, z)
    d = pb - pa
    low = d - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2)
    high = d + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2)
    return max(-1.0, low), min(1.0, high)


def _count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _pct(x: float) -> str:
    return f"{100.0 * x:.1f} %"


def _points(x: float) -> str:
    return f"{100.0 * x:+.1f}"


def ab_verdict(
    correct_a: int,
    n_a: int,
    correct_b: int,
    n_b: int,
    *,
    alpha: float = DEFAULT_ALPHA,
    min_feedback: int = DEFAULT_MIN_FEEDBACK,
) -> ABVerdict:
    """Compare the accuracy of arms A and B from their labelled predictions (feedback)."""
    n_a, n_b = _count(n_a, "n_a"), _count(n_b, "n_b")
    correct_a, correct_b = _count(correct_a, "correct_a"), _count(correct_b, "correct_b")
    if correct_a > n_a:
        raise ValueError(f"correct_a ({correct_a}) cannot exceed n_a ({n_a})")
    if correct_b > n_b:
        raise ValueError(f"correct_b ({correct_b}) cannot exceed n_b ({n_b})")
    if not (isinstance(alpha, int | float) and 0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
    if isinstance(min_feedback, bool) or not isinstance(min_feedback, int) or min_feedback < 1:
        raise ValueError(f"min_feedback must be a positive integer, got {min_feedback!r}")

    acc_a = correct_a / n_a if n_a else None
    acc_b = correct_b / n_b if n_b else None
    difference = ci_low = ci_high = None
    if acc_a is not None and acc_b is not None:
        difference = acc_b - acc_a
        ci_low, ci_high = newcombe_interval(correct_a, n_a, correct_b, n_b, alpha=alpha)
    table = [[correct_a, n_a - correct_a], [correct_b, n_b - correct_b]]
    p_value = float(stats.fisher_exact(table).pvalue)

    missing_a, missing_b = max(0, min_feedback - n_a), max(0, min_feedback - n_b)
    state: Verdict
    if missing_a or missing_b:
        # Too few labels: any verdict would be noise, so say how much more is needed rather than guess.
        state = "insufficient data"
        needs = [
            f"{m} more labelled predictions on {arm}" for m, arm in ((missing_a, "A"), (missing_b, "B")) if m
        ]
        recommendation = f"keep collecting feedback: need {' and '.join(needs)}"
    else:
        assert acc_a is not None and acc_b is not None and ci_low is not None and ci_high is not None
        summary = (
            f"accuracy B {_pct(acc_b)} vs A {_pct(acc_a)}, difference {_points(acc_b - acc_a)} points "
            f"({100 * (1 - alpha):.0f} % CI {_points(ci_low)} to {_points(ci_high)}), p = {p_value:.2g}"
        )
        if p_value < alpha:
            state = "B better" if acc_b > acc_a else "A better"
        else:
            state = "no significant difference"
        recommendation = {
            "B better": f"promote B: {summary}",
            "A better": f"keep A: B is worse, {summary}",
            "no significant difference": (
                f"keep A (or keep collecting feedback to detect a smaller difference): no significant "
                f"difference yet, {summary}"
            ),
        }[state]
    return ABVerdict(
        n_a=n_a,
        correct_a=correct_a,
        n_b=n_b,
        correct_b=correct_b,
        acc_a=acc_a,
        acc_b=acc_b,
        difference=difference,
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=p_value,
        alpha=float(alpha),
        min_feedback=min_feedback,
        state=state,
        recommendation=recommendation,
    )


__all__ = ["ABSplit", "ABVerdict", "ab_verdict", "newcombe_interval"]
