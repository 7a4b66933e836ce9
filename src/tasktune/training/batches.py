"""The order in which an epoch visits the training examples.

Every batch is padded to its longest member, so a batch drawn at random pays for its longest text:
on SST-2's training phrases (52 characters on average, up to 267) random batches of 32 carry 3.3 times
the characters they need, sorted-within-chunk batches 1.05 times. Grouping by length is the
``group_by_length`` of Hugging Face's Trainer, done differently: that one sorts "megabatches" and
keeps their order, so each group of 50 steps runs from long to short texts; here the steps themselves
are then shuffled, so the length of a step is unrelated to its place in the epoch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tasktune.task.data import Example, text_chars

# Steps whose examples are sorted together: large enough that a step's texts are of similar lengths,
# small enough that which examples meet in a step stays random (Hugging Face's Trainer uses 50).
CHUNK_STEPS = 50
# At least this many chunks per epoch: sorting a whole small training set (a few-shot one) would put
# the same examples together in every epoch.
MIN_CHUNKS = 8


def text_sizes(examples: Sequence[Example]) -> torch.Tensor:
    """Characters per example (text and pair), as a tensor for :func:`epoch_order`."""
    return torch.tensor(text_chars(examples), dtype=torch.long)


def epoch_order(
    n: int, examples_per_step: int, generator: torch.Generator, sizes: torch.Tensor | None = None
) -> torch.Tensor:
    """A seeded permutation of ``range(n)``; with ``sizes``, grouped so that each step's examples
    are of similar length. The order depends only on the generator's state and the sizes, so every
    data-parallel rank (same generator state) draws the same one, and a checkpoint that stores the
    order (and the generator) resumes it exactly. A step never spans epochs: the last, short step of
    an epoch keeps the examples left over and stays last."""
    perm = torch.randperm(n, generator=generator)
    if sizes is None or n <= examples_per_step:
        return perm
    n_full = n // examples_per_step
    chunk = examples_per_step * max(1, min(CHUNK_STEPS, n_full // MIN_CHUNKS))
    sorted_parts = []
    for start in range(0, n, chunk):
        part = perm[start : start + chunk]
        # Stable sort, longest first: ties keep the random order.
        sorted_parts.append(part[torch.sort(sizes[part], descending=True, stable=True).indices])
    grouped = torch.cat(sorted_parts)
    steps = grouped[: n_full * examples_per_step].view(n_full, examples_per_step)
    steps = steps[torch.randperm(n_full, generator=generator)]
    return torch.cat([steps.reshape(-1), grouped[n_full * examples_per_step :]])
