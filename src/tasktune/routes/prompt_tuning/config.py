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

    # 20: the dev-best of 1/5/20/50 for a label-word start on SST-2 K=16, both backbones (test within
    # noise of each other; bench/results/length_sweep-cpu.json). The prompt start has the prompt's length.
    num_virtual_tokens: int = Field(default=20, ge=1, le=512)
    depth: Literal["shallow", "deep"] = "shallow"
    # ``prompt``: the soft prompt starts as route 1's zero-shot prompt itself (its opening tokens'
    # embeddings, or their keys/values for a deep prompt) in front of the rest of that prompt — causal
    # LMs only; encoders always start from their label descriptions.
    init: Literal["random", "vocab", "text", "labels", "prompt"] = "labels"
    # What an encoder's prompted text embedding is read by (a causal LM reads label-word logits):
    # ``similarity`` to the frozen label descriptions (nothing but the prompt is trained; the artifact
    # exports to PEFT) or a linear ``head`` trained with the prompt. all-MiniLM-L6-v2 on SST-2
    # (bench/results/encoder_prompt_objectives-cpu.json): K=16, 3 seeds, similarity 72.06 vs head
    # 64.14; all of SST-2, one seed, head 84.40 vs similarity 83.26 — one seed is not enough to make
    # the head the full-data default.
    readout: Literal["similarity", "head"] = "similarity"
    prompt_dropout: float = Field(default=0.0, ge=0, lt=1)
    max_tokens: int = Field(default=256, ge=8, description="input tokens kept (the end, where the cue is)")
    eval_batch_size: int = Field(default=32, ge=1)
    train: TrainConfig


def default_options(
    protocol: str,
    depth: str = "shallow",
    seed: int = 13,
    n_train: int | None = None,
    backbone_kind: str = "causal",
    from_prompt: bool | None = None,
) -> PromptTuningOptions:
    """On a causal LM the prompt starts as route 1's zero-shot prompt (``init="prompt"``), and that
    start competes for the dev-selected best (it is a working classifier). Its vectors are real token
    embeddings (SmolLM2: std 0.136 per coordinate), so the shallow learning rate is 3e-3, not the 3e-2
    a label-word start takes: at 3e-2 a handful of Adam steps would move every coordinate by more than
    its spread and the prompt would be forgotten before it helped. ``from_prompt=False`` asks for the
    label-word start on a causal LM too (the length sweep; ensemble members when asked)."""
    from_prompt = backbone_kind == "causal" and from_prompt is not False
    lr = (3e-3 if from_prompt else 3e-2) if depth == "shallow" else 5e-3
    shared = {"lr": lr, "seed": seed, "weight_decay": 1e-5, "eval_at_start": from_prompt}
    if protocol == "few":
        train = TrainConfig(
            epochs=25, batch_size=8, warmup_ratio=0.1, eval_every=10, early_stopping_patience=6, **shared
        )
    else:
        schedule = full_data_schedule(n_train, 16, target_examples=3000)
        # Steps of similar-length texts: SmolLM2 on SST-2 trained 1.30x faster, dev 0.863 vs 0.850
        # (bench/results/length_grouping-cpu.json).
        train = TrainConfig(batch_size=16, warmup_ratio=0.06, group_by_length=True, **schedule, **shared)
    return PromptTuningOptions(depth=depth, init="prompt" if from_prompt else "labels", train=train)
