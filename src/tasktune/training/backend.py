"""The seam between the loop and "how many processes train": everything the loop does that would differ
under ``accelerate launch`` / torch.distributed goes through these few methods.

Only :class:`LocalBackend` (one process, one device) exists today. A multi-process backend built on
``accelerate.Accelerator`` implements the same five members: ``shard`` takes this rank's slice of each
micro-batch, ``backward`` calls ``accelerator.backward``, ``reduce_gradients`` all-reduces (mean) the
trainable gradients, ``reduce_mean`` averages logged losses, ``is_main_process`` gates checkpoint and
progress output. Checkpoints stay in the loop's own pickle-free format either way (``save_state`` of
accelerate pickles RNG states).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

import torch

T = TypeVar("T")


class Backend(Protocol):
    @property
    def is_main_process(self) -> bool: ...

    def shard(self, batch: Sequence[T]) -> Sequence[T]: ...

    def backward(self, loss: torch.Tensor) -> None: ...

    def reduce_gradients(self, params: Sequence[torch.nn.Parameter]) -> None: ...

    def reduce_mean(self, value: torch.Tensor) -> torch.Tensor: ...


class LocalBackend:
    """One process: every method is the identity or a plain call."""

    @property
    def is_main_process(self) -> bool:
        return True

    def shard(self, batch: Sequence[T]) -> Sequence[T]:
        return batch

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def reduce_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        return None

    def reduce_mean(self, value: torch.Tensor) -> torch.Tensor:
        return value
