"""Drift alarms: is live traffic still like the data the adaptation was evaluated on?

Three signals are compared between the evaluation reference (stored with each adaptation) and a window of
live predictions:

* ``label_mix``  - the share of each predicted label (chi-square test of homogeneity, exact when small);
* ``confidence`` - the distribution of the top-class probability (two-sample Kolmogorov-Smirnov);
* ``length``     - the distribution of input lengths in characters (two-sample Kolmogorov-Smirnov).

Both the reference and the live window are *samples*, so every test is a two-sample test: comparing the
live counts against the reference proportions as if those were known exactly (a goodness-of-fit test)
would ignore the reference's own sampling noise and raise too many false alarms.

Calibration (requirement R21): the three tests form one family, so each is run at ``alpha / 3``
(Bonferroni); the chance that *any* of them alarms when nothing changed is then at most ``alpha``. A window
with fewer than ``min_live`` predictions is reported as "insufficient data" instead of being tested.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from scipy import stats

SignalName = Literal["label_mix", "confidence", "length"]
CONFIDENCE_DECIMALS = 6  # what evaluation records keep (evaluation/evaluator.py)
State = Literal["ok", "drift", "insufficient data"]

DEFAULT_ALPHA = 0.05
DEFAULT_MIN_LIVE = 30
SIGNALS = 3  # the size of the test family, for the Bonferroni correction
# Cochran's rule: the chi-square approximation is trusted only when every expected count is at least 5.
MIN_EXPECTED = 5.0
MONTE_CARLO_RESAMPLES = 9999
MONTE_CARLO_SEED = 0  # fixed, so that the same window always gets the same report


@dataclass(frozen=True)
class SignalDrift:
    """The outcome of one drift test. ``statistic``/``p_value`` are None when it was not run."""

    name: SignalName
    state: State
    statistic: float | None
    p_value: float | None
    n_live: int
    n_reference: int
    min_live: int
    detail: str
    alpha: float  # the significance level this signal was tested at (alpha / 3 inside check_drift)
    test: str  # which test produced the p-value, or "" when none ran

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DriftReport:
    label_mix: SignalDrift
    confidence: SignalDrift
    length: SignalDrift
    alpha: float  # the family-wise false-alarm rate; each signal is tested at alpha / 3

    @property
    def signals(self) -> tuple[SignalDrift, SignalDrift, SignalDrift]:
        return (self.label_mix, self.confidence, self.length)

    @property
    def state(self) -> State:
        states = [s.state for s in self.signals]
        if "drift" in states:
            return "drift"
        if all(s == "insufficient data" for s in states):
            return "insufficient data"
        return "ok"

    def to_dict(self) -> dict:
        return {
            "state": self.state,
            "alpha": self.alpha,
            # a list in a fixed order (label_mix, confidence, length), each entry naming itself
            "signals": [s.to_dict() for s in self.signals],
        }


# --- input checks ---------------------------------------------------------------------------------------


def _check_alpha(alpha: float) -> None:
    if not (isinstance(alpha, int | float) and 0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")


def _check_min_live(min_live: int) -> None:
    if isinstance(min_live, bool) or not isinstance(min_live, int | np.integer) or min_live < 1:
        raise ValueError(f"min_live must be a positive integer, got {min_live!r}")


def _integers(values: Sequence | np.ndarray, name: str) -> np.ndarray:
    """A 1-D array of non-negative integers (integral floats accepted), or a ValueError naming the input."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise ValueError(
            f"{name} contains a non-finite value (NaN or infinity): {_first_bad(arr, ~np.isfinite(arr))}"
        )
    if not np.issubdtype(arr.dtype, np.integer) and (arr != np.round(arr)).any():
        fractional = arr != np.round(arr)
        raise ValueError(f"{name} must hold whole numbers, got {_first_bad(arr, fractional)}")
    if (arr < 0).any():
        raise ValueError(f"{name} must not be negative, got {_first_bad(arr, arr < 0)}")
    return arr.astype(np.int64)


def _probabilities(values: Sequence | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.float64)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must hold probabilities, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(
            f"{name} contains a non-finite value (NaN or infinity): {_first_bad(arr, ~np.isfinite(arr))}"
        )
    outside = (arr <= 0.0) | (arr > 1.0)
    if outside.any():
        raise ValueError(f"{name} must lie in (0, 1], got {_first_bad(arr, outside)}")
    return arr


def _first_bad(arr: np.ndarray, mask: np.ndarray) -> str:
    """'VALUE at index I' for the first offending element, as plain Python (no np.float64(...) noise)."""
    i = int(np.flatnonzero(mask)[0])
    return f"{arr[i].item()!r} at index {i}"


# --- the three tests ------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100.0 * x:.0f} %"


def _label_name(i: int, label_names: Sequence[str] | None) -> str:
    return repr(label_names[i]) if label_names is not None else f"label {i}"


def label_mix_drift(
    reference_counts: Sequence[int] | np.ndarray,
    live_counts: Sequence[int] | np.ndarray,
    *,
    alpha: float,
    min_live: int = DEFAULT_MIN_LIVE,
    label_names: Sequence[str] | None = None,
) -> SignalDrift:
    """Has the mix of predicted labels changed? A test of homogeneity of the 2 x L table (reference, live).

    Pearson's chi-square without Yates' correction (Yates over-corrects and makes the test conservative,
    which would cost power for no calibration gain at these sample sizes). When an expected count is below
    5 the asymptotic p-value is not trusted: 2 labels use Fisher's exact test, more labels a Monte Carlo
    version of the same chi-square test with both margins fixed (seeded, so reports are reproducible).
    """
    _check_alpha(alpha)
    _check_min_live(min_live)
    ref = _integers(reference_counts, "reference label_counts")
    live = _integers(live_counts, "live label counts")
    if ref.size != live.size:
        raise ValueError(f"reference label_counts has {ref.size} labels but the live counts have {live.size}")
    if label_names is not None and len(label_names) != ref.size:
        raise ValueError(f"label_names has {len(label_names)} names but there are {ref.size} labels")
    n_ref, n_live = int(ref.sum()), int(live.sum())

    def result(state: State, statistic, p_value, detail: str, test: str = "") -> SignalDrift:
        return SignalDrift(
            "label_mix", state, statistic, p_value, n_live, n_ref, min_live, detail, alpha, test
        )

    if n_ref == 0:
        return result("insufficient data", None, None, "the evaluation reference has no label counts")
    if n_live < min_live:
        return result(
            "insufficient data", None, None, f"only {n_live} live predictions; need at least {min_live}"
        )

    # The label whose share moved most is the one a person should look at first; on a tie (always, with two
    # labels) the one that grew, since "predicted X 80 %" reads better than "predicted not-X 20 %".
    ref_share, live_share = ref / n_ref, live / n_live
    moved_by = live_share - ref_share
    worst = max(range(ref.size), key=lambda i: (round(abs(float(moved_by[i])), 9), float(moved_by[i])))
    moved = (
        f"predicted {_label_name(worst, label_names)} {_pct(live_share[worst])} live "
        f"vs {_pct(ref_share[worst])} at evaluation"
    )

    # A label never predicted in either sample carries no information (and would make expected counts 0).
    keep = (ref + live) > 0
    table = np.vstack([ref[keep], live[keep]])
    if table.shape[1] < 2:
        only = _label_name(int(np.flatnonzero(keep)[0]), label_names)
        return result("ok", 0.0, 1.0, f"every prediction is {only}, live and at evaluation", "none needed")

    chi2 = stats.chi2_contingency(table, correction=False)
    statistic, p_value, test = float(chi2.statistic), float(chi2.pvalue), "chi-square"
    if chi2.expected_freq.min() < MIN_EXPECTED:
        if table.shape[1] == 2:
            p_value, test = float(stats.fisher_exact(table).pvalue), "fisher exact"
        else:
            method = stats.MonteCarloMethod(
                n_resamples=MONTE_CARLO_RESAMPLES, rng=np.random.default_rng(MONTE_CARLO_SEED)
            )
            mc = stats.chi2_contingency(table, correction=False, method=method)
            p_value, test = float(mc.pvalue), "chi-square (monte carlo)"
    state: State = "drift" if p_value < alpha else "ok"
    return result(state, statistic, p_value, f"{moved} (p = {p_value:.2g})", test)


def _ks_drift(
    name: SignalName,
    reference: np.ndarray,
    live: np.ndarray,
    *,
    alpha: float,
    min_live: int,
    what: str,
    fmt: str,
) -> SignalDrift:
    """Two-sample Kolmogorov-Smirnov test of one numeric signal (validated arrays in)."""
    n_ref, n_live = int(reference.size), int(live.size)

    def result(state: State, statistic, p_value, detail: str, test: str = "") -> SignalDrift:
        return SignalDrift(name, state, statistic, p_value, n_live, n_ref, min_live, detail, alpha, test)

    if n_ref == 0:
        return result("insufficient data", None, None, f"the evaluation reference has no {what} values")
    if n_live == 0:
        return result("insufficient data", None, None, f"no live {what} values were logged")
    if n_live < min_live:
        return result(
            "insufficient data", None, None, f"only {n_live} live {what} values; need at least {min_live}"
        )
    # KS assumes continuous data. With ties (integer lengths, confidences saturated at 1.0) its p-values
    # are conservative, i.e. too large: that can only lower the false-alarm rate, never raise it, so R21's
    # calibration bound still holds; the price is a little power on heavily tied data.
    ks = stats.ks_2samp(reference, live)
    p_value = float(ks.pvalue)
    state: State = "drift" if p_value < alpha else "ok"
    detail = (
        f"median {what} {format(float(np.median(live)), fmt)} live vs "
        f"{format(float(np.median(reference)), fmt)} at evaluation (p = {p_value:.2g})"
    )
    return result(state, float(ks.statistic), p_value, detail, "kolmogorov-smirnov")


def confidence_drift(
    reference: Sequence[float] | np.ndarray,
    live: Sequence[float] | np.ndarray,
    *,
    alpha: float,
    min_live: int = DEFAULT_MIN_LIVE,
) -> SignalDrift:
    """Has the distribution of the top-class probability changed? (two-sample KS)"""
    _check_alpha(alpha)
    _check_min_live(min_live)
    # Both at the 6 decimals the evaluation reference is stored with: a confident model's 0.99999994
    # is 1.0 in the reference but not live, and KS reads that rounding as a shift (p = 2e-8 on samples
    # from one distribution).
    ref = np.round(_probabilities(reference, "reference confidence"), CONFIDENCE_DECIMALS)
    cur = np.round(_probabilities(live, "live confidence"), CONFIDENCE_DECIMALS)
    return _ks_drift("confidence", ref, cur, alpha=alpha, min_live=min_live, what="confidence", fmt=".2f")


def length_drift(
    reference: Sequence[int] | np.ndarray,
    live: Sequence[int] | np.ndarray,
    *,
    alpha: float,
    min_live: int = DEFAULT_MIN_LIVE,
) -> SignalDrift:
    """Has the distribution of input lengths (characters) changed? (two-sample KS)"""
    _check_alpha(alpha)
    _check_min_live(min_live)
    ref = _integers(reference, "reference length")
    cur = _integers(live, "live lengths")
    return _ks_drift("length", ref, cur, alpha=alpha, min_live=min_live, what="input length", fmt=".0f")


def _optional(reference: Mapping, key: str) -> Sequence | np.ndarray:
    """A reference sample that may be absent (None or missing key means none was recorded)."""
    value = reference.get(key)
    return [] if value is None else value


def check_drift(
    reference: Mapping,
    live_labels: Sequence[int] | np.ndarray,
    live_confidence: Sequence[float] | np.ndarray,
    live_lengths: Sequence[int] | np.ndarray,
    num_labels: int,
    *,
    alpha: float = DEFAULT_ALPHA,
    min_live: int = DEFAULT_MIN_LIVE,
    label_names: Sequence[str] | None = None,
) -> DriftReport:
    """Compare a window of live predictions with the adaptation's evaluation reference.

    ``reference`` is ``{"n", "label_counts", "confidence", "length"}``; a missing or empty ``confidence``
    or ``length`` makes that signal "insufficient data". ``live_confidence`` must pair one-to-one with
    ``live_labels``; ``live_lengths`` must too, or be empty when input lengths were not logged.
    """
    _check_alpha(alpha)
    _check_min_live(min_live)
    if isinstance(num_labels, bool) or not isinstance(num_labels, int | np.integer) or num_labels < 1:
        raise ValueError(f"num_labels must be a positive integer, got {num_labels!r}")
    if not isinstance(reference, Mapping):
        raise ValueError(
            f"reference must be a mapping with label_counts/confidence/length, got {type(reference)}"
        )
    if "label_counts" not in reference:
        raise ValueError("reference has no 'label_counts'")
    ref_counts = _integers(reference["label_counts"], "reference label_counts")
    if ref_counts.size != num_labels:
        raise ValueError(
            f"reference label_counts has {ref_counts.size} entries but num_labels is {num_labels}"
        )

    labels = _integers(live_labels, "live_labels")
    if labels.size and labels.max() >= num_labels:
        raise ValueError(
            f"live_labels must lie in [0, {num_labels}), got {_first_bad(labels, labels >= num_labels)}"
        )
    confidence = _probabilities(live_confidence, "live_confidence")
    lengths = _integers(live_lengths, "live_lengths")
    if confidence.size != labels.size:
        raise ValueError(
            f"live_confidence has {confidence.size} values but live_labels has {labels.size}: "
            "they must pair up"
        )
    if lengths.size not in (0, labels.size):
        raise ValueError(
            f"live_lengths has {lengths.size} values but live_labels has {labels.size}: "
            "they must pair up (or live_lengths be empty)"
        )

    # Bonferroni: three tests at alpha/3 each keep P(any false alarm) <= alpha when nothing changed. The
    # signals are positively dependent (confidence tracks the label mix), so this is slightly conservative,
    # which R21 prefers to an alarm that cries wolf.
    per_signal = alpha / SIGNALS
    live_counts = np.bincount(labels, minlength=num_labels)
    return DriftReport(
        label_mix=label_mix_drift(
            ref_counts, live_counts, alpha=per_signal, min_live=min_live, label_names=label_names
        ),
        confidence=confidence_drift(
            _optional(reference, "confidence"), confidence, alpha=per_signal, min_live=min_live
        ),
        length=length_drift(_optional(reference, "length"), lengths, alpha=per_signal, min_live=min_live),
        alpha=float(alpha),
    )


__all__ = [
    "DriftReport",
    "SignalDrift",
    "check_drift",
    "confidence_drift",
    "label_mix_drift",
    "length_drift",
]
