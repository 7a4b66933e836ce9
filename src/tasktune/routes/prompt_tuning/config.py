"""Prompt-tuning options. Defaults per protocol are in :func:`default_options` and are starting points
chosen from the literature (Lester et al. 2021: 20 tokens, label-word init; P-tuning v2 for deep
prompts); the benchmark numbers in bench/results say how they fare."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tasktune.routes.trained import full_data_schedule
from tasktune.training.config import TrainConfig


class PromptTuningOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    num_virtual_tokens: int = Field(default=20, ge=1, le=512)
    depth: Literal["shallow", "deep"] = "shallow"
    init: Literal["random", "vocab", "text", "labels"] = "labels"
    prompt_dropout: float = Field(default=0.0, ge=0, lt=1)
    max_tokens: int = Field(default=256, ge=8, description="input tokens kept (the end, where the cue is)")
    eval_batch_size: int = Field(default=32, ge=1)
    train: TrainConfig


def default_options(
    protocol: str, depth: str = "shallow", seed: int = 13, n_train: int | None = None
) -> PromptTuningOptions:
    shared = {"lr": 3e-2 if depth == "shallow" else 5e-3, "seed": seed, "weight_decay": 1e-5}
    if protocol == "few":
        train = TrainConfig(
            epochs=25, batch_size=8, warmup_ratio=0.1, eval_every=10, early_stopping_patience=6, **shared
        )
    else:
        schedule = full_data_schedule(n_train, 16, target_examples=3000)
        train = TrainConfig(batch_size=16, warmup_ratio=0.06, **schedule, **shared)
    return PromptTuningOptions(depth=depth, train=train)
