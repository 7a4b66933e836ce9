import numpy as np
import pytest

from tasktune.evaluation.metrics import (
    bootstrap_ci,
    compute_metrics,
    confusion_matrix,
    expected_calibration_error,
    per_class_prf,
)


def test_confusion_and_prf_by_hand():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    cm = confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    p, r, f = per_class_prf(cm)
    assert p.tolist() == pytest.approx([1.0, 0.5, 0.5])
    assert r.tolist() == pytest.approx([2 / 3, 0.5, 1.0])
    assert f[0] == pytest.approx(0.8)


def test_class_never_predicted_has_zero_precision_not_nan():
    cm = confusion_matrix(np.array([0, 1]), np.array([0, 0]), 2)
    p, r, f = per_class_prf(cm)
    assert p.tolist() == [0.5, 0.0] and r.tolist() == [1.0, 0.0] and f[1] == 0.0


def test_ece_perfectly_calibrated_and_overconfident():
    # 10 predictions at confidence 0.8, 8 right: perfectly calibrated → 0.
    probs = np.array([[0.8, 0.2]] * 10)
    y = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(y, probs) == pytest.approx(0.0)
    # Confidence 1.0 but only half right → ECE 0.5.
    probs = np.array([[1.0, 0.0]] * 4)
    assert expected_calibration_error(np.array([0, 0, 1, 1]), probs) == pytest.approx(0.5)


def test_bootstrap_ci_contains_mean_and_narrows_with_n():
    rng = np.random.default_rng(0)
    small = (rng.random(50) < 0.7).astype(float)
    large = (rng.random(5000) < 0.7).astype(float)
    lo, hi = bootstrap_ci(small)
    assert lo < small.mean() < hi
    lo2, hi2 = bootstrap_ci(large)
    assert (hi2 - lo2) < (hi - lo) / 5
    assert bootstrap_ci(small, seed=1) == bootstrap_ci(small, seed=1)


def test_compute_metrics_summary():
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]])
    m = compute_metrics(np.array([0, 0, 1, 1]), probs)
    assert m.accuracy == 0.75 and m.n == 4
    assert m.confusion == [[1, 1], [0, 2]]
    assert m.macro_f1 == pytest.approx((2 / 3 + 0.8) / 2)
    assert m.nll == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.7, 0.8])))
    assert m.from_dict(m.to_dict()) == m


def test_macro_f1_averages_over_the_classes_that_occur():
    """A class absent from the test set and never predicted has no F1 (0/0): a perfect classifier scores
    1, not 2/3 (scikit-learn's default). A class predicted but absent counts, with F1 0."""
    import numpy as np

    from tasktune.evaluation.metrics import compute_metrics, macro_f1
    from tasktune.evaluation.significance import resampled_macro_f1

    y = np.array([0, 1, 0, 1])
    assert macro_f1(y, y, 3) == 1.0
    probs = np.eye(3)[y] * 0.8 + 0.2 / 3
    assert compute_metrics(y, probs).macro_f1 == pytest.approx(1.0)
    assert macro_f1(y, np.array([0, 1, 0, 2]), 3) == pytest.approx((1 + 2 / 3 + 0) / 3)
    idx = np.array([[0, 1, 2, 3], [0, 0, 2, 2]])  # the second resample holds class 0 alone
    np.testing.assert_allclose(resampled_macro_f1(y, y, idx, 3), [1.0, 1.0])
    pred = np.array([0, 1, 0, 2])
    expected = [macro_f1(y[i], pred[i], 3) for i in idx]
    np.testing.assert_allclose(resampled_macro_f1(y, pred, idx, 3), expected)
