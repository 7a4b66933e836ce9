import numpy as np
import pytest

from tasktune.evaluation.evaluator import build_result, evaluate, member_summary, predict
from tasktune.evaluation.results import read_result, write_result
from tasktune.task.data import Example
from tasktune.task.spec import parse_task

TASK = parse_task({"name": "t", "labels": ["a", "b"], "data": {"test": {"path": "x.jsonl"}}})


class LengthScorer:
    """Says 'b' for texts longer than 3 characters; batch-size independent by construction."""

    num_labels = 2

    def __init__(self):
        self.batches = []

    def predict_proba(self, batch):
        self.batches.append(len(batch))
        return np.array([[0.2, 0.8] if len(e.text) > 3 else [0.9, 0.1] for e in batch])


EXAMPLES = [Example("abcd", 1, row=1), Example("ab", 0, row=2), Example("abcdef", 0, row=3)]


def test_predict_batches_and_progress():
    scorer, seen = LengthScorer(), []
    pred = predict(scorer, EXAMPLES, batch_size=2, progress=seen.append)
    assert scorer.batches == [2, 1] and seen == [2, 3]
    assert pred.labels.tolist() == [1, 0, 1]


def test_batches_hold_similar_lengths_and_answers_keep_the_given_order():
    class Recording:
        num_labels = 2

        def __init__(self):
            self.batches = []

        def predict_proba(self, batch):
            self.batches.append([e.text for e in batch])
            return np.array([[1 / (1 + len(e.text)), 1 - 1 / (1 + len(e.text))] for e in batch])

    texts = ["a" * n for n in (5, 1, 9, 3, 7, 2, 8)]
    scorer = Recording()
    pred = predict(scorer, [Example(t, 0) for t in texts], batch_size=3)
    assert [[len(t) for t in b] for b in scorer.batches] == [[9, 8, 7], [5, 3, 2], [1]]
    np.testing.assert_allclose(pred.probs[:, 0], [1 / (1 + len(t)) for t in texts])


def test_evaluate_and_result_roundtrip(tmp_path):
    metrics, pred = evaluate(LengthScorer(), EXAMPLES, batch_size=2)
    assert metrics.accuracy == pytest.approx(2 / 3)
    result = build_result(
        task=TASK,
        split_name="test",
        data_hashes={"test": "abc"},
        examples=EXAMPLES,
        metrics=metrics,
        prediction=pred,
        protocol="zero",
        seed=13,
        route="length",
    )
    assert [r.pred for r in result.records] == [1, 0, 1]
    assert result.records[2].row == 3 and result.records[2].label == 0
    path = write_result(result, tmp_path / "r" / "cell.json")
    back = read_result(path)
    assert back == result
    assert back.info.task_hash == TASK.spec_hash() and back.info.versions["torch"]


class BrokenScorer:
    num_labels = 2

    def predict_proba(self, batch):
        return np.ones((len(batch), 3))


def test_wrong_shape_is_caught():
    with pytest.raises(RuntimeError, match="shape"):
        evaluate(BrokenScorer(), EXAMPLES)


class TwoMembers:
    """Two members each sure where it is right and unsure where it is wrong (2 of 3 right each), so
    their mean probability is right on all three of EXAMPLES (labels b, a, a)."""

    num_labels = 2

    def predict_member_proba(self, batch):
        answers = {  # text: (member 0, member 1)
            "abcd": ([0.1, 0.9], [0.6, 0.4]),
            "ab": ([0.4, 0.6], [0.9, 0.1]),
            "abcdef": ([0.8, 0.2], [0.8, 0.2]),
        }
        return np.array([answers[e.text] for e in batch])

    def predict_proba(self, batch):
        return self.predict_member_proba(batch).mean(1)


def test_an_ensemble_is_scored_member_by_member_in_the_same_pass():
    pred = predict(TwoMembers(), EXAMPLES, batch_size=2)
    assert pred.members.shape == (3, 2, 2)
    np.testing.assert_allclose(pred.probs, pred.members.mean(1))
    summary = member_summary(EXAMPLES, pred.members)
    assert summary["member_accuracy"] == [round(2 / 3, 6)] * 2
    assert summary["ensemble_accuracy"] == 1.0
    assert (
        summary["gain_over_member_mean"] == summary["gain_over_best_member"] == pytest.approx(1 / 3, abs=1e-5)
    )
    assert predict(LengthScorer(), EXAMPLES).members is None  # not an ensemble: nothing kept


def test_a_member_that_is_not_a_probability_is_named():
    class Broken(TwoMembers):
        def predict_member_proba(self, batch):
            out = super().predict_member_proba(batch)
            out[:, 1] = 0.9
            return out

    with pytest.raises(RuntimeError, match="Broken member 1"):
        predict(Broken(), EXAMPLES)
