"""Optimizer and learning-rate schedule, built from a :class:`TrainConfig`.

The schedules follow the formulas of ``transformers``' ``get_*_schedule_with_warmup`` (what
practitioners know): linear warmup from 0, then linear decay to 0, half-cosine decay to 0, or constant.
They are plain functions of the step, so a scheduler's whole state is a few numbers (JSON, R3).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

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


# A numbered block of a transformer, as the common implementations name it: BERT's encoder.layer.N,
# Llama's model.layers.N, GPT-2's h.N, T5's block.N (PEFT's LoRA tensors sit inside them, so they
# follow their block).
_BLOCK = re.compile(r"(?:^|\.)(?:layer|layers|h|block|blocks)\.(\d+)\.")
# Input embeddings (token, position, type). Anchored at a dot so that e.g. a soft prompt's
# ``prompt_embeddings`` is not taken for the backbone's.
_EMBEDDINGS = re.compile(r"(?:^|\.)(?:embeddings|embed_tokens|embed_positions|wte|wpe)(?:\.|$)")


def layer_lr_scales(names: Sequence[str], decay: float) -> dict[str, float]:
    """Each named tensor's lr multiplier under layer-wise decay: ``decay ** (top - depth)`` with depth
    0 for embeddings, i + 1 for block i, and top (blocks + 1) for everything else."""
    blocks = {n: int(m.group(1)) for n in names if (m := _BLOCK.search(n))}
    top = max(blocks.values(), default=-1) + 2
    scales = {}
    for name in names:
        depth = blocks[name] + 1 if name in blocks else 0 if _EMBEDDINGS.search(name) else top
        scales[name] = decay ** (top - depth)
    return scales


def parameter_groups(named: Sequence[tuple[str, torch.nn.Parameter]], config: TrainConfig) -> list[dict]:
    """The optimizer's parameter groups: one per lr multiplier (layer-wise decay; one when there is
    none), each split into the tensors weight decay applies to (matrices, soft prompts: 2-D and up)
    and those it does not (biases, LayerNorm scales: 1-D, whose pull towards 0 is not a penalty on
    size but a change of what the layer computes; what BERT, GPT-2 and the HF Trainer do). The top
    multiplier's decayed group comes first, so ``param_groups[0]["lr"]`` is the schedule's lr."""
    decay = config.layer_lr_decay
    names = [n for n, _ in named]
    scales = layer_lr_scales(names, decay) if decay is not None and decay != 1 else dict.fromkeys(names, 1.0)
    groups: dict[tuple[float, bool], list[torch.nn.Parameter]] = {}
    for name, param in named:
        decayed = config.weight_decay > 0 and param.ndim >= 2
        groups.setdefault((scales[name], decayed), []).append(param)
    order = sorted(groups, key=lambda k: (-k[0], not k[1]))
    return [
        {"params": groups[k], "lr": config.lr * k[0], **({} if k[1] else {"weight_decay": 0.0})}
        for k in order
    ]


def build_optimizer(
    named: Sequence[tuple[str, torch.nn.Parameter]], config: TrainConfig
) -> torch.optim.Optimizer:
    params = parameter_groups(named, config)
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
