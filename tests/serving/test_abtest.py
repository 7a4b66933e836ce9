"""A/B split and verdict: deterministic assignment, calibrated verdicts, honest intervals."""

import json

import numpy as np
import pytest

from tasktune.serving.abtest import ABSplit, ab_verdict, newcombe_interval

SIMULATIONS = 1000
N = 300


def simulate(rng, acc_a, acc_b, n=N, runs=SIMULATIONS):
    correct_a = rng.binomial(n, acc_a, size=runs)
    correct_b = rng.binomial(n, acc_b, size=runs)
    return [ab_verdict(int(a), n, int(b), n) for a, b in zip(correct_a, correct_b, strict=True)]


# --- the split -------------------------------------------------------------------------------------------


def test_assignment_is_deterministic_and_the_share_is_respected():
    split = ABSplit("v1", "v2", 0.1)
    keys = [f"req-{i}" for i in range(20_000)]
    arms = [split.assign(k) for k in keys]
    assert arms == [ABSplit("v1", "v2", 0.1).assign(k) for k in keys]  # same key, same arm, any instance
    share = arms.count("B") / len(arms)
    print(f"\nshare of B over 20,000 keys (asked 0.1): {share:.4f}")
    assert abs(share - 0.1) <= 0.01
    assert set(arms) == {"A", "B"}
    assert split.version_for(keys[arms.index("B")]) == "v2"
    assert split.version_for(keys[arms.index("A")]) == "v1"


def test_raising_the_share_only_moves_keys_from_a_to_b():
    keys = [f"user-{i}" for i in range(2000)]
    small, large = ABSplit("v1", "v2", 0.1), ABSplit("v1", "v2", 0.5)
    assert all(large.assign(k) == "B" for k in keys if small.assign(k) == "B")


def test_different_experiments_split_independently():
    keys = [f"req-{i}" for i in range(4000)]
    first = np.array([ABSplit("v1", "v2", 0.5).assign(k) == "B" for k in keys])
    second = np.array([ABSplit("v2", "v3", 0.5).assign(k) == "B" for k in keys])
    assert 0.45 <= np.mean(first == second) <= 0.55  # about half agree by chance, not all


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("v1", "v2", 0.0), "share_b must be a number strictly between 0 and 1, got 0.0"),
        (("v1", "v2", 1.0), "share_b must be a number strictly between 0 and 1, got 1.0"),
        (("v1", "v2", -0.2), "share_b must be"),
        (("v1", "v2", "0.5"), "share_b must be"),
        (("v1", "v1", 0.5), "version_a and version_b are both 'v1'"),
        (("", "v2", 0.5), "version_a must be a non-empty string"),
    ],
)
def test_bad_split_is_rejected(args, message):
    with pytest.raises(ValueError, match=message):
        ABSplit(*args)


def test_request_key_must_be_a_string():
    with pytest.raises(ValueError, match="request_key must be a string, got int"):
        ABSplit("v1", "v2", 0.5).assign(42)  # type: ignore[arg-type]


# --- the verdict -----------------------------------------------------------------------------------------


def test_equal_accuracies_are_rarely_called_different():
    verdicts = simulate(np.random.default_rng(11), 0.8, 0.8)
    rate = np.mean([v.state == "no significant difference" for v in verdicts])
    print(f"\n'no significant difference' under the null (0.80 vs 0.80, n={N}): {rate:.3f}")
    assert rate >= 0.93


def test_a_clear_improvement_is_found():
    verdict = ab_verdict(210, N, 255, N)  # 0.70 vs 0.85
    assert verdict.state == "B better"
    assert verdict.recommendation.startswith("promote B")
    assert verdict.difference == pytest.approx(0.15)
    assert 0 < verdict.ci_low < 0.15 < verdict.ci_high
    assert verdict.p_value < 0.001
    worse = ab_verdict(255, N, 210, N)
    assert worse.state == "A better" and worse.recommendation.startswith("keep A")
    verdicts = simulate(np.random.default_rng(12), 0.70, 0.85)
    power = np.mean([v.state == "B better" for v in verdicts])
    print(f"\n'B better' for 0.70 vs 0.85, n={N}: {power:.3f}")
    assert power >= 0.95


def test_interval_covers_the_true_difference_about_95_percent_of_the_time():
    coverage = {}
    rng = np.random.default_rng(13)
    for acc_a, acc_b, n in ((0.70, 0.85, N), (0.90, 0.95, 100)):
        correct_a = rng.binomial(n, acc_a, size=SIMULATIONS)
        correct_b = rng.binomial(n, acc_b, size=SIMULATIONS)
        intervals = [
            newcombe_interval(int(a), n, int(b), n, alpha=0.05)
            for a, b in zip(correct_a, correct_b, strict=True)
        ]
        coverage[(acc_a, acc_b, n)] = float(np.mean([lo <= acc_b - acc_a <= hi for lo, hi in intervals]))
    print(f"\n95 % CI coverage: {coverage}")
    for cov in coverage.values():
        assert 0.92 <= cov <= 0.98
    # the verdict reports exactly this interval
    verdict = ab_verdict(int(correct_a[0]), 100, int(correct_b[0]), 100)
    assert (verdict.ci_low, verdict.ci_high) == intervals[0]


def test_newcombe_interval_matches_the_published_example():
    # Newcombe (1998), Stat Med 17:873, Table II example (a): 56/70 - 48/80, method 10: 0.0524 to 0.3339
    low, high = newcombe_interval(48, 80, 56, 70, alpha=0.05)
    assert (low, high) == pytest.approx((0.0524, 0.3339), abs=5e-5)


def test_too_little_feedback_is_insufficient_and_says_how_much_more():
    verdict = ab_verdict(200, N, 20, 20)  # B looks perfect, but on 20 labels
    assert verdict.state == "insufficient data"
    assert verdict.recommendation == "keep collecting feedback: need 10 more labelled predictions on B"
    both = ab_verdict(5, 10, 0, 0)
    assert both.state == "insufficient data"
    assert both.acc_b is None and both.difference is None and both.ci_low is None
    assert both.recommendation.endswith(
        "need 20 more labelled predictions on A and 30 more labelled predictions on B"
    )


def test_verdict_is_json_serialisable():
    data = json.loads(json.dumps(ab_verdict(210, N, 255, N).to_dict()))
    assert data["state"] == "B better" and data["n_a"] == N and data["correct_b"] == 255


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((31, 30, 10, 30), {}, r"correct_a \(31\) cannot exceed n_a \(30\)"),
        ((10, 30, 31, 30), {}, r"correct_b \(31\) cannot exceed n_b \(30\)"),
        ((-1, 30, 10, 30), {}, "correct_a must be a non-negative integer, got -1"),
        ((10, 30.0, 10, 30), {}, "n_a must be a non-negative integer, got 30.0"),
        ((10, 30, 10, 30), {"alpha": 0}, r"alpha must be a number in \(0, 1\)"),
        ((10, 30, 10, 30), {"min_feedback": 0}, "min_feedback must be a positive integer"),
    ],
)
def test_bad_counts_are_rejected(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ab_verdict(*args, **kwargs)
