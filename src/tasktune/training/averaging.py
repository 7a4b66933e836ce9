"""An exponential moving average of the trained tensors (Polyak-Ruppert averaging), evaluated and
kept in their place when ``TrainConfig.ema_decay`` is set.

The last iterate of SGD wanders around a minimum at the scale of the learning rate; the average of
the recent iterates sits nearer its centre, which is what dev evaluation and the kept ``best`` tensors
should see. Written here rather than with ``torch.optim.swa_utils.AveragedModel`` because that copies
the whole module (for a soft prompt, the frozen backbone too) and keeps its step count as a buffer of
the copy; the loop only needs the trained tensors, and their count is the loop's own step.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def effective_decay(decay: float, step: int) -> float:
    """The decay at optimizer step ``step`` (1-based): ``min(decay, (1 + step) / (10 + step))``, so the
    first steps are not averaged with the untrained start for long (the warm-up of TensorFlow's
    ExponentialMovingAverage with ``num_updates``)."""
    return min(decay, (1 + step) / (10 + step))


class WeightAverage:
    """The average, one fp32 tensor per trained tensor, updated after each optimizer step."""

    def __init__(self, named: list[tuple[str, torch.nn.Parameter]], decay: float):
        self.decay = decay
        self.tensors = {name: p.detach().clone() for name, p in named}

    @torch.no_grad()
    def update(self, named: list[tuple[str, torch.nn.Parameter]], step: int) -> None:
        weight = 1.0 - effective_decay(self.decay, step)
        averages = [self.tensors[name] for name, _ in named]
        torch._foreach_lerp_(averages, [p.detach() for _, p in named], weight)

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        """A checkpoint's average (same names; the loop checks them)."""
        with torch.no_grad():
            for name, t in self.tensors.items():
                t.copy_(tensors[name])

    @contextmanager
    def swapped_in(self, named: list[tuple[str, torch.nn.Parameter]]) -> Iterator[None]:
        """The parameters hold the average inside the block and their own values again after it."""
        own = {name: p.detach().clone() for name, p in named}
        with torch.no_grad():
            for name, p in named:
                p.copy_(self.tensors[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, p in named:
                    p.copy_(own[name])
