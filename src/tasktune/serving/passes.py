"""Splitting one batch of rows into forward passes by length.

A padded pass costs (rows × longest row) token positions however short the other rows are: 32 SST-2
requests in arrival order are about 40 % padding. Sorting the rows by length and cutting the sorted
list where the saving outweighs the fixed cost of one more pass removes most of it. The cut points
are the exact optimum of that cost model (a small dynamic programme over the sorted lengths; the
batch is at most a few hundred rows), so on a device where a pass is expensive next to a token (a
GPU) it keeps one pass, and on a CPU it splits.

Splitting never changes answers beyond float rounding: every row's attention is masked to its own
tokens and prefix (R14, tests/serving/test_mixed.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import torch

# The fixed cost of one more forward pass, in token positions. Measured for SmolLM2-135M (fp32, 2-core
# CPU, nothing else running): a pass costs about 80 ms + 1.4 ms per token position, so one more pass is
# worth it when it saves more than ~60 padded positions. On a GPU one token position is microseconds
# and launching one pass's few hundred kernels is milliseconds, so splitting there rarely pays.
PASS_COST_TOKENS = {"cpu": 64, "cuda": 2048, "mps": 512}

T = TypeVar("T")


def pass_cost_tokens(device_type: str) -> int:
    return PASS_COST_TOKENS.get(device_type, PASS_COST_TOKENS["cuda"])


def device_type_of(scorer: object) -> str:
    """The device a scorer runs on: its backbone's, or that of what it wraps (an ensemble's members,
    an encoder prompt's embedder); where none is found, an accelerator if there is one."""
    for part in (scorer, *getattr(scorer, "members", ())[:1], getattr(scorer, "embed", None)):
        backbone = getattr(part, "backbone", None)
        if backbone is not None:
            return backbone.device.device.type
    return "cuda" if torch.cuda.is_available() else "cpu"


def plan_passes(lengths: Sequence[int], pass_cost: float, max_rows: int | None = None) -> list[list[int]]:
    """Row indices per pass, each pass length-sorted and at most ``max_rows`` long, minimising the sum
    over passes of (rows × longest row) + ``pass_cost``."""
    n = len(lengths)
    order = np.array(sorted(range(n), key=lambda i: (lengths[i], i)), dtype=np.int64)
    sorted_lengths = np.array([lengths[i] for i in order], dtype=np.float64)
    limit = n if max_rows is None else max(1, max_rows)
    best = np.full(n + 1, np.inf)  # best[j]: cheapest plan for the j shortest rows
    best[0] = 0.0
    cut = np.zeros(n + 1, dtype=np.int64)
    for j in range(1, n + 1):
        # The last pass holds sorted rows i..j-1, padded to the longest of them (row j-1).
        i = np.arange(max(0, j - limit), j)
        costs = best[i] + (j - i) * sorted_lengths[j - 1] + pass_cost
        k = int(np.argmin(costs))  # the first minimum: the longest last pass among equals
        best[j], cut[j] = costs[k], i[k]
    passes = []
    j = n
    while j:
        passes.append(order[cut[j] : j].tolist())
        j = int(cut[j])
    return passes[::-1]


def in_passes(
    lengths: Sequence[int],
    device_type: str,
    run: Callable[[list[int]], Sequence[T]],
    max_rows: int | None = None,
) -> list[T]:
    """``run`` on each pass's row indices (length buckets for ``device_type``); its answers, one per
    row, come back in the rows' own order."""
    out: list[T | None] = [None] * len(lengths)
    for idx in plan_passes(lengths, pass_cost_tokens(device_type), max_rows):
        answers = run(idx)
        if len(answers) != len(idx):  # numpy would broadcast one row over the pass
            raise RuntimeError(f"a pass answered {len(answers)} rows for {len(idx)}")
        for i, answer in zip(idx, answers, strict=True):
            out[i] = answer
    return out  # type: ignore[return-value]
