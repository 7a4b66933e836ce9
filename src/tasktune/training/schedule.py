"""Optimizer and learning-rate schedule, built from a :class:`TrainConfig`.

The schedules follow the formulas of ``transformers``' ``get_*_schedule_with_warmup`` (what
practitioners know): linear warmup from 0, then linear decay to 0, half-cosine decay to 0, or constant.
They are plain functions of the step, so a scheduler's whole state is a few numbers (JSON, R3).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from tasktune.training.config import ScheduleName, TrainConfig


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, schedule: ScheduleName) -> float:
    """Multiplier of the base lr for the optimizer step after ``step`` completed steps."""
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def build_optimizer(params: list[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adafactor":
        # A fixed, externally scheduled lr (no relative step / parameter scaling): the schedule is ours,
        # so both optimizers follow the same lr curve.
        from transformers.optimization import Adafactor  # lazily: importing it costs seconds

        return Adafactor(
            params,
            lr=config.lr,
            weight_decay=config.weight_decay,
            scale_parameter=False,
            relative_step=False,
            warmup_init=False,
        )
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = config.warmup_for(total_steps)

    # A plain function (not a callable object): LambdaLR then keeps nothing of it in its state_dict.
    def factor(step: int) -> float:
        return lr_factor(step, total_steps=total_steps, warmup_steps=warmup, schedule=config.schedule)

    fn: Callable[[int], float] = factor
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
