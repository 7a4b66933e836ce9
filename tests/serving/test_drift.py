"""Drift alarms (R21): calibrated false-alarm rate, power on clear shifts, honest "insufficient data"."""

import json

import numpy as np
import pytest
from scipy import stats

from tasktune.serving.drift import (
    check_drift,
    confidence_drift,
    label_mix_drift,
    length_drift,
)

ALPHA = 0.05
REF_N = 1000
LIVE_N = 200
NULL_WINDOWS = 1000
POWER_WINDOWS = 200
LABELS = ("negative", "positive")


def sample(rng, n, *, p_positive=0.5, beta=(8.0, 2.0), length_mean=4.6):
    """n predictions: labels, top-class confidence (a Beta) and input lengths (rounded log-normal, tied)."""
    labels = (rng.random(n) < p_positive).astype(int)
    confidence = np.clip(rng.beta(*beta, size=n), 1e-6, 1.0)
    lengths = np.maximum(1, np.round(rng.lognormal(length_mean, 0.6, size=n))).astype(int)
    return labels, confidence, lengths


def reference_from(labels, confidence, lengths, num_labels=2):
    return {
        "n": int(labels.size),
        "label_counts": np.bincount(labels, minlength=num_labels).tolist(),
        "confidence": confidence.tolist(),
        "length": lengths.tolist(),
    }


@pytest.fixture(scope="module")
def reference():
    return reference_from(*sample(np.random.default_rng(2024), REF_N))


def run_windows(reference, seed, windows, **shift):
    rng = np.random.default_rng(seed)
    return [
        check_drift(reference, *sample(rng, LIVE_N, **shift), num_labels=2, alpha=ALPHA)
        for _ in range(windows)
    ]


def drift_rate(reports, signal=None):
    if signal is None:
        return float(np.mean([r.state == "drift" for r in reports]))
    return float(np.mean([getattr(r, signal).state == "drift" for r in reports]))


# --- calibration and power ------------------------------------------------------------------------------


def test_false_alarm_rate_is_calibrated_when_nothing_changed(reference):
    reports = run_windows(reference, seed=1, windows=NULL_WINDOWS)
    overall = drift_rate(reports)
    per_signal = {s: drift_rate(reports, s) for s in ("label_mix", "confidence", "length")}
    print(f"\nfalse alarms, {NULL_WINDOWS} no-change windows: overall {overall:.3f}, per signal {per_signal}")
    assert all(r.state in ("ok", "drift") for r in reports)  # 200 live >= min_live: always tested
    assert overall <= 0.06
    for signal, rate in per_signal.items():
        assert rate <= ALPHA / 3 + 0.01, signal  # Bonferroni: each test at alpha/3


def test_label_mix_shift_50_50_to_80_20_is_detected(reference):
    reports = run_windows(reference, seed=2, windows=POWER_WINDOWS, p_positive=0.8)
    rate = drift_rate(reports, "label_mix")
    print(f"\npower, label mix 50/50 -> 80/20, {LIVE_N} live: {rate:.3f}")
    assert rate >= 0.99
    assert drift_rate(reports) >= 0.99


def test_confidence_shift_is_detected(reference):
    # Mean confidence 0.80 -> 0.71: the model has become less sure of itself.
    reports = run_windows(reference, seed=3, windows=POWER_WINDOWS, beta=(5.0, 2.0))
    rate = drift_rate(reports, "confidence")
    print(f"\npower, confidence Beta(8,2) -> Beta(5,2): {rate:.3f}")
    assert rate >= 0.95


def test_length_shift_is_detected(reference):
    # Median input length ~100 -> ~135 characters, with integer ties (KS is conservative there).
    reports = run_windows(reference, seed=4, windows=POWER_WINDOWS, length_mean=4.9)
    rate = drift_rate(reports, "length")
    print(f"\npower, input length median ~100 -> ~135 characters: {rate:.3f}")
    assert rate >= 0.95


# --- insufficient data -----------------------------------------------------------------------------------


def test_too_few_live_predictions_is_insufficient_never_drift(reference):
    labels, confidence, lengths = sample(np.random.default_rng(5), 29, p_positive=1.0, beta=(1.0, 5.0))
    report = check_drift(reference, labels, confidence, lengths, num_labels=2)
    assert report.state == "insufficient data"
    for signal in report.signals:
        assert signal.state == "insufficient data"
        assert signal.p_value is None and signal.statistic is None
        assert signal.n_live == 29 and signal.min_live == 30
        assert "need at least 30" in signal.detail
    # one more prediction and the same (wildly shifted) data is tested, and alarms
    labels, confidence, lengths = sample(np.random.default_rng(5), 30, p_positive=1.0, beta=(1.0, 5.0))
    assert check_drift(reference, labels, confidence, lengths, num_labels=2).state == "drift"


def test_empty_live_window_is_insufficient(reference):
    report = check_drift(reference, [], [], [], num_labels=2)
    assert report.state == "insufficient data"


def test_empty_reference_confidence_and_length_make_only_those_signals_insufficient(reference):
    ref = {"n": REF_N, "label_counts": reference["label_counts"], "confidence": [], "length": []}
    labels, confidence, lengths = sample(np.random.default_rng(6), LIVE_N)
    report = check_drift(ref, labels, confidence, lengths, num_labels=2)
    assert report.label_mix.state == "ok"
    assert report.confidence.state == "insufficient data"
    assert report.length.state == "insufficient data"
    assert "reference has no confidence" in report.confidence.detail
    assert "reference has no input length" in report.length.detail
    assert report.state == "ok"  # one signal was tested and found nothing
    # a reference without the keys at all behaves the same
    report = check_drift({"n": REF_N, "label_counts": ref["label_counts"]}, labels, confidence, lengths, 2)
    assert report.confidence.state == report.length.state == "insufficient data"


def test_lengths_not_logged_make_only_the_length_signal_insufficient(reference):
    labels, confidence, _ = sample(np.random.default_rng(7), LIVE_N)
    report = check_drift(reference, labels, confidence, [], num_labels=2)
    assert report.length.state == "insufficient data" and "no live input length" in report.length.detail
    assert report.label_mix.state != "insufficient data"


def test_zero_reference_counts_is_insufficient():
    signal = label_mix_drift([0, 0], [20, 20], alpha=ALPHA)
    assert signal.state == "insufficient data" and "reference has no label counts" in signal.detail


# --- the tests themselves --------------------------------------------------------------------------------


def test_label_mix_is_an_uncorrected_chi_square_homogeneity_test_with_a_readable_detail():
    signal = label_mix_drift([500, 500], [40, 160], alpha=ALPHA, label_names=LABELS)
    expected = stats.chi2_contingency([[500, 500], [40, 160]], correction=False)
    assert signal.test == "chi-square"
    assert signal.statistic == pytest.approx(expected.statistic)
    assert signal.p_value == pytest.approx(expected.pvalue)
    assert signal.state == "drift"
    assert signal.detail.startswith("predicted 'positive' 80 % live vs 50 % at evaluation")
    grew_first = label_mix_drift([500, 500], [160, 40], alpha=ALPHA, label_names=LABELS)
    assert grew_first.detail.startswith("predicted 'negative' 80 % live vs 50 % at evaluation")


def test_labels_never_predicted_are_dropped():
    signal = label_mix_drift([500, 500, 0], [90, 110, 0], alpha=ALPHA)
    expected = stats.chi2_contingency([[500, 500], [90, 110]], correction=False)
    assert signal.p_value == pytest.approx(expected.pvalue)
    single = label_mix_drift([0, 1000], [0, 50], alpha=ALPHA)
    assert single.state == "ok" and single.p_value == 1.0


def test_small_expected_counts_fall_back_to_exact_tests():
    two = label_mix_drift([995, 5], [25, 5], alpha=ALPHA)
    assert two.test == "fisher exact"
    assert two.p_value == pytest.approx(stats.fisher_exact([[995, 5], [25, 5]]).pvalue)
    assert two.state == "drift"
    three = label_mix_drift([900, 97, 3], [27, 3, 0], alpha=ALPHA)
    assert three.test == "chi-square (monte carlo)"
    assert three.state == "ok"
    assert three == label_mix_drift([900, 97, 3], [27, 3, 0], alpha=ALPHA)  # seeded: reproducible


def test_ks_signals_match_scipy():
    rng = np.random.default_rng(8)
    ref, live = rng.beta(8, 2, 500), rng.beta(8, 2, 100)
    signal = confidence_drift(ref, live, alpha=ALPHA)
    expected = stats.ks_2samp(ref, live)
    assert signal.test == "kolmogorov-smirnov"
    assert (signal.statistic, signal.p_value) == pytest.approx((expected.statistic, expected.pvalue))
    assert length_drift([10, 20, 30] * 20, [10, 20, 30] * 20, alpha=ALPHA).p_value == pytest.approx(1.0)


def test_report_is_json_serialisable(reference):
    labels, confidence, lengths = sample(np.random.default_rng(9), LIVE_N, p_positive=0.8)
    report = check_drift(reference, labels, confidence, lengths, num_labels=2, label_names=LABELS)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["state"] == "drift"
    assert [s["name"] for s in data["signals"]] == ["label_mix", "confidence", "length"]
    label_mix = data["signals"][0]
    assert label_mix["state"] == "drift" and label_mix["alpha"] == pytest.approx(ALPHA / 3)
    assert "positive" in label_mix["detail"]


# --- bad input -------------------------------------------------------------------------------------------

GOOD = {"n": 4, "label_counts": [2, 2], "confidence": [0.9, 0.8], "length": [10, 12]}


@pytest.mark.parametrize(
    ("reference", "labels", "confidence", "lengths", "message"),
    [
        (GOOD, [0, 2], [0.9, 0.9], [5, 5], r"live_labels must lie in \[0, 2\), got 2 at index 1"),
        (GOOD, [0, -1], [0.9, 0.9], [5, 5], "live_labels must not be negative"),
        (GOOD, [0, 1.5], [0.9, 0.9], [5, 5], "live_labels must hold whole numbers"),
        (GOOD, [0, 1], [0.9], [5, 5], "live_confidence has 1 values but live_labels has 2"),
        (GOOD, [0, 1], [0.9, 0.9], [5], "live_lengths has 1 values but live_labels has 2"),
        (
            GOOD,
            [0, 1],
            [0.9, float("nan")],
            [5, 5],
            r"live_confidence contains a non-finite value \(NaN or infinity\): nan at index 1",
        ),
        (GOOD, [0, 1], [0.9, 1.2], [5, 5], r"live_confidence must lie in \(0, 1\], got 1.2 at index 1"),
        (
            GOOD,
            [0, 1],
            [0.9, 0.9],
            [5, float("inf")],
            "live_lengths contains a non-finite value .*: inf at index 1",
        ),
        (GOOD, [0, 1], [0.9, 0.9], [5, -3], "live_lengths must not be negative"),
        ({**GOOD, "label_counts": [1, 1, 2]}, [0, 1], [0.9, 0.9], [5, 5], "label_counts has 3 entries"),
        ({"n": 4}, [0, 1], [0.9, 0.9], [5, 5], "reference has no 'label_counts'"),
        ({**GOOD, "confidence": [0.5, 0.0]}, [0, 1], [0.9, 0.9], [5, 5], "reference confidence must lie in"),
        ({**GOOD, "length": [1, float("nan")]}, [0, 1], [0.9, 0.9], [5, 5], "reference length contains"),
    ],
)
def test_bad_input_names_what_is_wrong(reference, labels, confidence, lengths, message):
    with pytest.raises(ValueError, match=message):
        check_drift(reference, labels, confidence, lengths, num_labels=2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.0}, r"alpha must be a number in \(0, 1\)"),
        ({"alpha": 1.5}, r"alpha must be a number in \(0, 1\)"),
        ({"min_live": 0}, "min_live must be a positive integer"),
        ({"num_labels": 0}, "num_labels must be a positive integer"),
    ],
)
def test_bad_settings_are_rejected(kwargs, message):
    args = {"num_labels": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        check_drift(GOOD, [0, 1], [0.9, 0.9], [5, 5], **args)


def test_confidences_saturating_near_one_are_compared_at_the_references_precision():
    # A confident model: softmax margins ~ N(12, 3). The reference is stored at 6 decimals (evaluation
    # records), the live log keeps the float: 0.99999994 is 1.0 in one and not the other.
    from tasktune.serving.drift import confidence_drift

    rng = np.random.default_rng(0)

    def confidences(n):
        margin = rng.normal(12, 3, n).astype(np.float32)
        return (1 / (1 + np.exp(-margin))).astype(np.float64)

    reference = [round(float(c), 6) for c in confidences(500)]
    signal = confidence_drift(reference, confidences(500), alpha=0.05)
    assert signal.state == "ok", signal.detail  # was drift, p = 2e-8, on one distribution
