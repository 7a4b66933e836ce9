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

import math
from collections.abc import Sequence

# The fixed cost of one more forward pass, in token positions. Measured for SmolLM2-135M (fp32, 2-core
# CPU, nothing else running): a pass costs about 80 ms + 1.4 ms per token position, so one more pass is
# worth it when it saves more than ~60 padded positions. On a GPU one token position is microseconds
# and launching one pass's few hundred kernels is milliseconds, so splitting there rarely pays.
PASS_COST_TOKENS = {"cpu": 64, "cuda": 2048, "mps": 512}


def pass_cost_tokens(device_type: str) -> int:
    return PASS_COST_TOKENS.get(device_type, PASS_COST_TOKENS["cuda"])


def plan_passes(lengths: Sequence[int], pass_cost: float) -> list[list[int]]:
    """Row indices per pass, each pass length-sorted, minimising the sum over passes of
    (rows × longest row) + ``pass_cost``."""
    n = len(lengths)
    order = sorted(range(n), key=lambda i: (lengths[i], i))
    sorted_lengths = [lengths[i] for i in order]
    best = [0.0] + [math.inf] * n  # best[j]: cheapest plan for the j shortest rows
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        longest = sorted_lengths[j - 1]
        for i in range(j):  # rows i..j-1 (sorted) in one pass, padded to the longest of them
            cost = best[i] + (j - i) * longest + pass_cost
            if cost < best[j]:
                best[j], cut[j] = cost, i
    passes = []
    j = n
    while j:
        passes.append(order[cut[j] : j])
        j = cut[j]
    return passes[::-1]
