"""Length buckets for one batch: every row in exactly one pass, the plan optimal under its cost model."""

from __future__ import annotations

import itertools
import random

import pytest

from tasktune.serving.passes import in_passes, pass_cost_tokens, plan_passes


def _cost(passes, lengths, pass_cost):
    return sum(len(p) * max(lengths[i] for i in p) + pass_cost for p in passes)


def _brute_force(lengths, pass_cost, max_rows=None):
    """Cheapest split of the length-sorted rows into contiguous runs, by trying every split."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    best = None
    for cuts in itertools.product([False, True], repeat=len(order) - 1):
        passes, current = [], [order[0]]
        for i, cut in zip(order[1:], cuts, strict=True):
            if cut:
                passes.append(current)
                current = []
            current.append(i)
        passes.append(current)
        if max_rows is not None and max(map(len, passes)) > max_rows:
            continue
        cost = _cost(passes, lengths, pass_cost)
        best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize("pass_cost", [0, 3, 8, 40, 10_000])
@pytest.mark.parametrize("max_rows", [None, 1, 3])
def test_plan_is_a_partition_and_optimal(pass_cost, max_rows):
    rng = random.Random(pass_cost)
    for _ in range(20):
        lengths = [rng.randint(1, 60) for _ in range(rng.randint(1, 9))]
        passes = plan_passes(lengths, pass_cost, max_rows)
        assert sorted(i for p in passes for i in p) == list(range(len(lengths)))
        assert max_rows is None or max(map(len, passes)) <= max_rows
        assert _cost(passes, lengths, pass_cost) == _brute_force(lengths, pass_cost, max_rows)


def test_expensive_passes_keep_one_pass_and_free_passes_split_by_length():
    lengths = [30, 5, 5, 60, 30, 5]
    assert plan_passes(lengths, 10_000) == [[1, 2, 5, 0, 4, 3]]  # one pass, sorted by length
    assert plan_passes(lengths, 0) == [[1, 2, 5], [0, 4], [3]]  # no padding at all
    assert plan_passes([], 8) == []


def test_a_gpu_keeps_arrival_batches_whole_and_a_cpu_splits_ragged_ones():
    ragged = [59, 12, 31, 8, 44, 20, 15, 27] * 4  # 32 rows, about 45 % padding in one pass
    assert len(plan_passes(ragged, pass_cost_tokens("cuda"))) == 1
    cpu = plan_passes(ragged, pass_cost_tokens("cpu"))
    assert 1 < len(cpu) < len(ragged)
    assert pass_cost_tokens("xpu") == pass_cost_tokens("cuda")  # an unknown accelerator: like a GPU


def test_a_large_batch_keeps_the_row_limit():
    rng = random.Random(0)
    lengths = [rng.randint(1, 512) for _ in range(1024)]  # numpy over each pass end: milliseconds
    passes = plan_passes(lengths, pass_cost_tokens("cpu"), max_rows=32)
    assert sorted(i for p in passes for i in p) == list(range(1024))
    assert max(map(len, passes)) <= 32


def test_answers_come_back_in_the_rows_order_and_a_short_answer_is_an_error():
    lengths = [30, 5, 60, 5]
    out = in_passes(lengths, "cpu", lambda idx: [f"row{i}" for i in idx])
    assert out == ["row0", "row1", "row2", "row3"]
    with pytest.raises(RuntimeError, match="answered 1 rows for"):
        in_passes(lengths, "cuda", lambda idx: ["only one"])
