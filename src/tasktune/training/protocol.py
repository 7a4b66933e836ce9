"""What a route hands to the training loop. The loop knows nothing else about it: a soft prompt on a
frozen backbone, LoRA matrices, a classification head and a whole model all look the same."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch

from tasktune.task.data import Example


@runtime_checkable
class Trainable(Protocol):
    def parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        """The trained tensors, by stable name (checkpoints are keyed by these names), in a fixed order.

        Everything not listed is frozen (``requires_grad=False``); the tensors are fp32 and already on
        the training device.
        """
        ...

    def loss(self, batch: Sequence[Example]) -> torch.Tensor:
        """Scalar loss, the *mean* over the batch (gradient accumulation relies on it being a mean)."""
        ...

    def evaluate(self, examples: Sequence[Example]) -> dict[str, float]:
        """Dev metrics (higher is better for the one the config names); called under ``no_grad``."""
        ...

    def train_mode(self, training: bool) -> None:
        """Switch dropout etc. on (True) or off (False); the frozen part may stay in eval mode."""
        ...
