import json
import math

import numpy as np
import pytest

from tasktune.evaluation.metrics import compute_metrics
from tasktune.evaluation.significance import (
    bootstrap_indices,
    clustered_mcnemar,
    compare_paired,
    holm_adjust,
    mcnemar_exact,
    paired_bootstrap_diff,
    paired_bootstrap_f1,
    paired_gain,
    required_sample_size,
    resampled_macro_f1,
)


def paired(both_right: int, a_only: int, b_only: int, both_wrong: int) -> tuple[np.ndarray, np.ndarray]:
    """Correctness arrays with exactly the given 2x2 table, in a fixed shuffled order."""
    a = np.array([1] * both_right + [1] * a_only + [0] * b_only + [0] * both_wrong, dtype=bool)
    b = np.array([1] * both_right + [0] * a_only + [1] * b_only + [0] * both_wrong, dtype=bool)
    order = np.random.default_rng(7).permutation(a.size)
    return a[order], b[order]


def test_mcnemar_matches_hand_computed_exact_binomial():
    a, b = paired(both_right=50, a_only=10, b_only=2, both_wrong=8)
    result = mcnemar_exact(a, b)
    # 2 * P(X <= 2 | n=12, p=1/2) = 2 * (1 + 12 + 66) / 4096
    assert result.p_value == pytest.approx(2 * 79 / 4096, rel=1e-12)
    assert result.p_value == pytest.approx(0.0385742, abs=1e-6)
    assert (result.n, result.a_only, result.b_only, result.both_right, result.both_wrong) == (
        70,
        10,
        2,
        50,
        8,
    )


def test_mcnemar_one_discordant_each_way_and_a_one_sided_extreme():
    # b=0, c=5: 2 * (1/2)^5 = 0.0625
    assert mcnemar_exact(*paired(3, 0, 5, 1)).p_value == pytest.approx(0.0625)
    # b=1, c=0: 2 * P(X <= 0 | n=1) = 1, capped at 1
    assert mcnemar_exact(*paired(3, 1, 0, 1)).p_value == 1.0


def test_mcnemar_balanced_and_no_discordant_pairs_give_p_one():
    assert mcnemar_exact(*paired(20, 6, 6, 4)).p_value == pytest.approx(1.0)
    result = mcnemar_exact(*paired(20, 0, 0, 4))
    assert result.p_value == 1.0
    assert result.discordant == 0


def test_mcnemar_is_symmetric_in_a_and_b():
    a, b = paired(40, 13, 4, 9)
    ab, ba = mcnemar_exact(a, b), mcnemar_exact(b, a)
    assert ab.p_value == pytest.approx(ba.p_value, rel=1e-12)
    assert (ab.a_only, ab.b_only) == (ba.b_only, ba.a_only) == (13, 4)
    assert ab.both_right == ba.both_right and ab.both_wrong == ba.both_wrong


def test_mcnemar_accepts_zero_one_integers_and_lists():
    a, b = paired(10, 3, 1, 2)
    assert mcnemar_exact(a.astype(int).tolist(), b.astype(np.int8)) == mcnemar_exact(a, b)


@pytest.mark.parametrize(
    ("correct_a", "correct_b", "message"),
    [
        ([1, 0, 1], [1, 0], "lengths 3 and 2"),
        ([], [], "empty"),
        ([1, 2, 0], [1, 0, 0], "0/1"),
        ([0.5, 1.0], [1.0, 1.0], "0/1"),
        (["yes", "no"], [1, 0], "0/1"),
        ([[1, 0], [0, 1]], [[1, 0], [0, 1]], "1-D"),
        ([1.0, float("nan")], [1, 0], "0/1"),
    ],
)
def test_invalid_inputs_raise_naming_the_problem(correct_a, correct_b, message):
    with pytest.raises(ValueError, match=message):
        mcnemar_exact(np.array(correct_a), np.array(correct_b))
    with pytest.raises(ValueError, match=message):
        paired_bootstrap_diff(np.array(correct_a), np.array(correct_b))


def test_paired_bootstrap_contains_observed_difference_and_is_deterministic():
    a, b = paired(150, 30, 10, 10)
    diff, low, high = paired_bootstrap_diff(a, b, seed=3)
    assert diff == pytest.approx((30 - 10) / 200)
    assert low < diff < high
    assert low > 0  # 30 vs 10 discordant pairs: clearly positive
    assert paired_bootstrap_diff(a, b, seed=3) == (diff, low, high)


def test_paired_bootstrap_is_much_narrower_than_unpaired_for_correlated_predictions():
    rng = np.random.default_rng(0)
    a = rng.random(500) < 0.7
    b = a.copy()
    flip = rng.choice(500, size=15, replace=False)  # B differs from A on only 3% of examples
    b[flip] = ~b[flip]
    _, low, high = paired_bootstrap_diff(a, b, samples=2000, seed=0)

    # Unpaired: resample each classifier's examples independently, as if from two test sets.
    idx_a = rng.integers(0, 500, size=(2000, 500))
    idx_b = rng.integers(0, 500, size=(2000, 500))
    unpaired = a[idx_a].mean(axis=1) - b[idx_b].mean(axis=1)
    u_low, u_high = np.quantile(unpaired, [0.025, 0.975])
    assert (high - low) < 0.5 * (u_high - u_low)


def test_required_sample_size_matches_hand_computation():
    # d = 0.05, psi = 0.15, z_0.975 = 1.959964, z_0.8 = 0.841621:
    # (1.959964*sqrt(0.15) + 0.841621*sqrt(0.15 - 0.0025))^2 / 0.0025 = 468.56 -> 469
    assert required_sample_size(0.80, 0.75, 0.15) == 469
    assert required_sample_size(0.75, 0.80, 0.15) == 469  # direction does not matter
    # Higher power or a stricter alpha needs more examples.
    assert required_sample_size(0.80, 0.75, 0.15, power=0.9) > 469
    assert required_sample_size(0.80, 0.75, 0.15, alpha=0.01) > 469


def test_required_sample_size_general_formula_case():
    d, psi = 0.1, 0.3
    expected = (1.959964 * math.sqrt(psi) + 0.841621 * math.sqrt(psi - d * d)) ** 2 / d**2
    assert required_sample_size(0.9, 0.8, psi) == math.ceil(expected)


def test_required_sample_size_none_without_a_difference_and_rejects_impossible_inputs():
    assert required_sample_size(0.8, 0.8, 0.1) is None
    assert required_sample_size(0.8, 0.8, 0.0) is None
    with pytest.raises(ValueError, match="discordant_rate"):
        required_sample_size(0.9, 0.7, 0.1)  # |d| = 0.2 cannot exceed the discordant rate
    with pytest.raises(ValueError, match="acc_a"):
        required_sample_size(1.2, 0.7, 0.5)


def test_holm_known_example_keeps_input_order():
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_holm_is_monotone_and_capped():
    p = [0.2, 0.001, 0.6, 0.02]
    adjusted = holm_adjust(p)
    # sorted 0.001*4=0.004, 0.02*3=0.06, 0.2*2=0.4, 0.6*1=0.6
    assert adjusted == pytest.approx([0.4, 0.004, 0.6, 0.06])
    assert holm_adjust([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm_adjust([]) == []
    with pytest.raises(ValueError):
        holm_adjust([0.1, 1.5])


def test_compare_paired_significant_verdict_names_the_better_one():
    a, b = paired(both_right=140, a_only=5, b_only=30, both_wrong=25)
    cmp = compare_paired("short", a, "fewshot", b)
    assert cmp.significant and cmp.better == "fewshot"
    assert cmp.accuracy_a == pytest.approx(145 / 200) and cmp.accuracy_b == pytest.approx(170 / 200)
    assert cmp.difference == pytest.approx(-0.125)
    assert cmp.accuracy_a_ci[0] < cmp.accuracy_a < cmp.accuracy_a_ci[1]
    assert cmp.difference_ci[1] < 0
    assert cmp.verdict.startswith("fewshot is better than short: +12.5 points (95% CI +")
    assert cmp.verdict.endswith("McNemar p<0.001 on 200 paired examples.")
    low, high = (-100 * x for x in reversed(cmp.difference_ci))
    assert f"CI {low:+.1f} to {high:+.1f}" in cmp.verdict


def test_compare_paired_non_significant_verdict_gives_sample_size():
    a, b = paired(both_right=700, a_only=25, b_only=20, both_wrong=127)
    cmp = compare_paired("A", a, "B", b)
    assert not cmp.significant and cmp.better is None
    assert cmp.mcnemar.p_value == pytest.approx(mcnemar_exact(a, b).p_value)
    assert cmp.required_n == required_sample_size(725 / 872, 720 / 872, 45 / 872)
    assert cmp.required_n > 872
    assert cmp.verdict.startswith("No significant difference between A and B (A - B: +0.6 points, 95% CI")
    assert "McNemar p=0.55 on 872 paired examples" in cmp.verdict
    assert cmp.verdict.endswith("examples would be needed to detect a difference this size with 80% power.")


def test_compare_paired_identical_correctness_says_so():
    a, b = paired(30, 0, 0, 10)
    cmp = compare_paired("A", a, "B", b)
    assert cmp.required_n is None and not cmp.significant
    assert cmp.verdict.endswith("both are right and wrong on exactly the same examples.")


def test_compare_paired_to_dict_round_trips_through_json():
    a, b = paired(60, 12, 3, 25)
    data = json.loads(json.dumps(compare_paired("A", a, "B", b).to_dict()))
    assert data["mcnemar"]["a_only"] == 12 and data["better"] == "A"
    assert isinstance(data["difference_ci"], list) and len(data["difference_ci"]) == 2


def test_compare_paired_rejects_same_names():
    a, b = paired(5, 1, 1, 1)
    with pytest.raises(ValueError, match="distinct names"):
        compare_paired("A", a, "A", b)


def _three_labels(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Labels 0,1,2 in turn and predictions that call every 2 a 0: macro-F1 exactly 5/9."""
    y = np.array([i % 3 for i in range(n)])
    return y, np.where(y == 2, 0, y)


def test_resampled_macro_f1_on_the_whole_rows_is_the_metric_and_chunks_agree():
    y, preds = _three_labels()
    assert resampled_macro_f1(y, preds, np.arange(300)[None], 3)[0] == pytest.approx(5 / 9)
    probs = np.eye(3)[preds]
    assert compute_metrics(y, probs).macro_f1 == pytest.approx(5 / 9)
    # Many resamples are scored in chunks (bounded memory); the chunked result is the same per resample.
    idx = bootstrap_indices(300, 8000, seed=3)
    assert idx.shape == (8000, 300) and (bootstrap_indices(300, 8000, seed=3) == idx).all()
    whole = resampled_macro_f1(y, preds, idx, 3)
    one_by_one = np.array([resampled_macro_f1(y, preds, idx[i : i + 1], 3)[0] for i in (0, 4321, 7999)])
    assert whole.shape == (8000,) and np.allclose(whole[[0, 4321, 7999]], one_by_one)


def test_paired_f1_bootstrap_and_paired_gain():
    y, worse = _three_labels()
    # Identical predictions: no difference, p = 1.
    assert paired_bootstrap_f1(y, [worse], [worse], 3, samples=500) == (0.0, 1.0)
    gain, p, test = paired_gain(y, y.copy(), worse, "macro_f1", 3)
    assert test == "paired bootstrap of macro-F1" and gain == pytest.approx(1 - 5 / 9) and p < 0.01
    # Accuracy goes to exact McNemar on correctness: 100 rows only one side gets right.
    gain, p, test = paired_gain(y, y.copy(), worse, "accuracy", 3)
    assert test == "McNemar" and gain == pytest.approx(1 / 3)
    assert p == pytest.approx(mcnemar_exact(y == y, worse == y).p_value)
    # The sign follows the argument order.
    assert paired_gain(y, worse, y.copy(), "macro_f1", 3)[0] == pytest.approx(-(1 - 5 / 9))


def test_clustered_mcnemar_does_not_grow_surer_with_seeds_that_repeat_the_same_evidence():
    a, b = paired(170, 16, 8, 6)
    one = clustered_mcnemar([a], [b])
    assert one == pytest.approx(mcnemar_exact(a, b).p_value)  # one seed: the exact McNemar test
    assert clustered_mcnemar([a] * 5, [b] * 5) == pytest.approx(one)  # pooling gave p = 0.00033
    assert mcnemar_exact(np.tile(a, 5), np.tile(b, 5)).p_value < 0.001


def test_clustered_mcnemar_exact_enumeration_and_random_flips():
    # Rows where the seeds disagree give unequal |d|: 3 rows at +2, 2 at +1, 1 at -1.
    a = [np.array([1, 1, 1, 1, 1, 0, 1], bool), np.array([1, 1, 1, 0, 0, 1, 1], bool)]
    b = [np.array([0, 0, 0, 0, 0, 1, 1], bool), np.array([0, 0, 0, 0, 0, 1, 1], bool)]
    d = np.array([2, 2, 2, 1, 1, -1])  # row 5: seed 0 B alone right, seed 1 both right
    flips = [np.array(s) for s in np.ndindex(*(2,) * d.size)]
    brute = np.mean([abs(((1 - 2 * f) * d).sum()) >= abs(d.sum()) for f in flips])
    assert clustered_mcnemar(a, b) == pytest.approx(brute)
    # Many differing rows: random flips, seeded (the same p twice), never an impossible 0.
    rng = np.random.default_rng(3)
    big_a = [rng.random(400) < 0.9 for _ in range(3)]
    big_b = [rng.random(400) < 0.6 for _ in range(3)]
    p = clustered_mcnemar(big_a, big_b, samples=4000)
    assert p == clustered_mcnemar(big_a, big_b, samples=4000) and p == pytest.approx(1 / 4001)
    assert clustered_mcnemar([a[0]], [a[0]]) == 1.0
    with pytest.raises(ValueError, match="differ in shape"):
        clustered_mcnemar(a, b[:1])


def test_the_macro_f1_bootstrap_p_is_never_zero_and_resamples_keep_every_class():
    y = np.array([0] * 50 + [1] * 50 + [2] * 3)
    idx = bootstrap_indices(len(y), 300, seed=0, strata=y)
    assert idx.shape == (300, len(y))
    assert all(np.bincount(y[row], minlength=3).tolist() == [50, 50, 3] for row in idx)
    worse = y.copy()
    worse[:40] = 1
    diff, p = paired_bootstrap_f1(y, [y], [worse], 3, samples=999)
    assert diff > 0.2 and p == pytest.approx(2 / 1000)  # no resample crosses 0: p < 0.002, not p = 0
