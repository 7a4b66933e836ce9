"""The batcher answers a group of requests in length buckets and gives each request its own rows back,
in order, whatever order the passes ran in."""

from __future__ import annotations

import time

import numpy as np

from tasktune.serving.batcher import Job, MicroBatcher
from tasktune.serving.pool import Served
from tasktune.task.data import Example
from tests.serving.stubs import StubScorer, reference, spec


class RecordingScorer(StubScorer):
    def __init__(self):
        super().__init__()
        self.passes: list[list[str]] = []

    def predict_proba(self, batch):
        self.passes.append([e.text for e in batch])
        return super().predict_proba(batch)


def test_length_buckets_return_each_request_its_own_rows_in_order():
    scorer = RecordingScorer()
    served = Served("sentiment", 1, "prompting", "prompt", spec(), scorer, "stub", reference())
    texts = [f"{i}" + "x" * n for i, n in enumerate((400, 4, 8, 380, 12, 5, 200))]  # all different
    jobs = [
        Job(served, [Example(t, 0) for t in texts[a:b]], time.monotonic() + 60) for a, b in ((0, 3), (3, 7))
    ]
    batcher = MicroBatcher(max_batch=3, wait_s=0.0, capacity_rows=100)
    answers = batcher._predict(("alone", id(served)), jobs)
    expected = StubScorer().predict_proba([Example(t, 0) for t in texts])
    np.testing.assert_array_equal(np.concatenate(answers), expected)
    assert [len(a) for a in answers] == [3, 4]
    # Short rows and long rows ran apart, each pass within max_batch and sorted by length.
    assert all(len(p) <= 3 for p in scorer.passes)
    assert all([len(t) for t in p] == sorted(len(t) for t in p) for p in scorer.passes)
    assert sorted(len(t) for p in scorer.passes for t in p) == sorted(map(len, texts))
    shortest_pass = min(scorer.passes, key=lambda p: max(map(len, p)))
    assert max(map(len, shortest_pass)) <= 13  # the 5-13 character rows were not padded to 400


class UnloadedScorer(StubScorer):
    def predict_proba(self, batch):
        from tasktune.serving.shared_lora import AdapterUnloadedError

        raise AdapterUnloadedError("LoRA adapter(s) ['t-v2'] are no longer loaded (the version was unloaded)")


def test_a_request_racing_an_unload_is_a_conflict_not_a_bad_input():
    import pytest

    from tasktune.serving.errors import ServingError

    served = Served("sentiment", 2, "lora", "lora", spec(), UnloadedScorer(), "stub", reference())
    batcher = MicroBatcher(max_batch=4, wait_s=0.0, capacity_rows=100)
    batcher.start()
    try:
        future = batcher.submit(served, [Example("fine", 0)], time.monotonic() + 60)
        with pytest.raises(ServingError) as err:
            future.result(10)
    finally:
        batcher.stop(5)
    assert (err.value.status, err.value.type) == (409, "version_unloaded")  # was 422 cannot_predict
