import numpy as np
import pytest

from tasktune.routes.prompting import calibration
from tasktune.routes.prompting.demos import DemoSelector
from tasktune.task.data import Example

POOL = [Example(f"t{i}", i % 2, row=i + 1) for i in range(10)]


def test_contextual_calibration_divides_by_content_free_distribution():
    # The content-free input gets 80/20: the prompt prefers label 0 four to one.
    cf = np.log(np.array([[0.8, 0.2]]))
    bias = calibration.contextual_bias(cf)
    probs = calibration.apply(np.log(np.array([[0.6, 0.4]])), bias)
    # 0.6/0.8 : 0.4/0.2 = 0.75 : 2 → normalised
    np.testing.assert_allclose(probs, [[0.75 / 2.75, 2 / 2.75]])


def test_mean_calibration_centres_the_average_log_distribution():
    scores = np.log(np.array([[0.9, 0.1], [0.7, 0.3], [0.8, 0.2]]))
    bias = calibration.mean_bias(scores)
    calibrated = np.log(calibration.apply(scores, bias))
    centred = calibrated - calibrated.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(centred.mean(axis=0), 0, atol=1e-9)


def test_apply_without_bias_is_softmax():
    np.testing.assert_allclose(calibration.apply(np.array([[0.0, np.log(3.0)]]), None), [[0.25, 0.75]])


def test_random_demos_k_per_class_from_pool_only():
    sel = DemoSelector(POOL, 2, 2, seed=5)
    demos = sel.for_queries([Example("q", 0, row=99)])[0]
    assert sorted(d.label for d in demos) == [0, 0, 1, 1]
    assert all(d in POOL for d in demos)
    assert DemoSelector(POOL, 2, 2, seed=5).fixed == sel.fixed


def test_sampled_order_varies_per_query_but_is_reproducible():
    sel = DemoSelector(POOL, 2, 3, order="sampled", seed=5)
    queries = [Example(f"q{r}", 0, row=r) for r in range(1, 30)]
    orders = [tuple(d.row for d in ds) for ds in sel.for_queries(queries)]
    assert len(set(orders)) > 1
    assert orders == [tuple(d.row for d in ds) for ds in sel.for_queries(queries)]
    assert all(sorted(o) == sorted(orders[0]) for o in orders)


def test_sampled_order_follows_the_text_not_its_position():
    """The server numbers a request's texts 1, 2, ...: the same review must get the same prompt (and
    answer) whether it comes first or third, and as it did in the evaluation."""
    sel = DemoSelector(POOL, 2, 3, order="sampled", seed=5)
    texts = [f"review {i}" for i in range(12)]
    at_row = {r: [Example(t, 0, row=r) for t in texts] for r in (1, 3, 500)}
    orders = {r: [tuple(d.row for d in ds) for ds in sel.for_queries(qs)] for r, qs in at_row.items()}
    assert orders[1] == orders[3] == orders[500]
    assert len(set(orders[1])) > 1  # still varies between texts


def test_knn_picks_nearest_per_class_most_similar_last():
    vectors = {f"t{i}": np.array([np.cos(i / 3), np.sin(i / 3)]) for i in range(10)}
    vectors["q"] = np.array([1.0, 0.0])

    def embed(texts):
        return np.stack([vectors[t] for t in texts])

    sel = DemoSelector(POOL, 2, 1, selection="knn", embed=embed)
    demos = sel.for_queries([Example("q", 0)])[0]
    assert [d.text for d in demos] == ["t1", "t0"]  # t0 is the closest (angle 0), so it comes last
    # A query from the pool itself (mean calibration scores the training texts) is never its own demo.
    own = sel.for_queries([Example("t0", 0)])[0]
    assert [d.text for d in own] == ["t2", "t1"]  # t2 the nearest other of its class; t1 nearest


def test_pool_too_small():
    with pytest.raises(ValueError, match="per class"):
        DemoSelector(POOL[:3], 2, 2)
