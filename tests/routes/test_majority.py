import numpy as np

from tasktune.routes import get_route
from tasktune.routes.base import FitContext
from tasktune.task.data import Example
from tasktune.task.spec import parse_task

TASK = parse_task({"name": "t", "labels": ["a", "b", "c"], "data": {"test": {"path": "x.jsonl"}}})


def test_majority_predicts_most_common_training_label():
    train = tuple(Example(f"x{i}", label) for i, label in enumerate([2, 2, 2, 1, 0]))
    fitted = get_route("majority").fit(FitContext(TASK, train, (), "full", 13))
    probs = fitted.scorer.predict_proba([Example("anything", 0)] * 4)
    assert probs.shape == (4, 3) and (probs.argmax(1) == 2).all()
    assert np.allclose(probs.sum(1), 1)


def test_majority_zero_shot_is_uniform():
    fitted = get_route("majority").fit(FitContext(TASK, (), (), "zero", 13))
    assert np.allclose(fitted.scorer.predict_proba([Example("x", 0)]), 1 / 3)
