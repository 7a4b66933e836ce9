"""The training loop's settings, as data: one validated object shared by prompt tuning and fine-tuning.

A bad value fails when the config is built (pydantic names the field and the value); settings that only
make sense together (max_steps *or* epochs, warmup ratio *or* steps, early stopping needs evaluation)
are checked here too, so that a run never fails an hour in for a typo in its config.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tasktune.errors import TaskTuneError

OptimizerName = Literal["adamw", "adafactor"]
ScheduleName = Literal["linear", "cosine", "constant"]


class TrainConfigError(TaskTuneError):
    """A training config is invalid; the message lists every bad field with its value."""

    def __init__(self, source: str, problems: list[str]):
        self.source, self.problems = source, problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: invalid training config\n{lines}")


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Length of the run: exactly one of the two. An optimizer step consumes batch_size * grad_accum_steps
    # examples (fewer at the end of an epoch: a step never spans two epochs).
    max_steps: int | None = Field(default=None, gt=0)
    epochs: int | None = Field(default=None, gt=0)
    batch_size: int = Field(default=8, gt=0, description="examples per forward pass (micro-batch)")
    grad_accum_steps: int = Field(default=1, gt=0)
    # Steps of texts of similar length (shuffled among themselves): far less padding, so full-data
    # epochs run faster (training/batches.py). Off: every step a uniform random draw.
    group_by_length: bool = False
    lr: float = Field(default=1e-3, gt=0, allow_inf_nan=False)
    weight_decay: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    # Layer-wise lr decay (Howard & Ruder 2018; ELECTRA, BEiT): a backbone's block i of L trains at
    # lr * decay ** (L - i), its embeddings at lr * decay ** (L + 1), everything above the blocks (head,
    # pooler, final norm, soft prompt) at lr. Lower layers hold general features that a large lr
    # erases. None (or 1): one lr for all. Tensors outside any numbered block are all "top", so a
    # trainable without a backbone's blocks (a soft prompt, a linear model) is unaffected; a causal LM's
    # output layer tied to its input embeddings trains at the embeddings' lr. Off by
    # default: all-MiniLM-L6-v2 on all of SST-2 at lr 1e-4, decay 0.8 gave 88.88 vs 89.91 with dev
    # lower throughout (bench/results/ablation-minilm-llrd-full-cpu.json, one seed).
    layer_lr_decay: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    optimizer: OptimizerName = "adamw"
    schedule: ScheduleName = "linear"
    warmup_ratio: float | None = Field(default=None, ge=0, lt=1, allow_inf_nan=False)
    warmup_steps: int | None = Field(default=None, ge=0)
    # Polyak averaging: dev evaluation and the kept tensors use an exponential moving average of the
    # trained tensors with this decay (training/averaging.py), e.g. 0.99 averages over the last ~100
    # steps. None: the tensors as trained.
    ema_decay: float | None = Field(default=None, gt=0, lt=1, allow_inf_nan=False)
    # None: no clipping (the norm is still computed, to catch a non-finite gradient — R4).
    max_grad_norm: float | None = Field(default=1.0, gt=0, allow_inf_nan=False)
    # None: evaluate on the dev split only at the end of the run.
    eval_every: int | None = Field(default=None, gt=0)
    # Dev examples a trained route evaluates at each dev evaluation: a seeded sample of this many when
    # its dev split is larger (the same sample all run), so that evaluating does not cost more than the
    # steps between (the full-data protocol's 10 % of SST-2 is 6,735 phrases). None: all of dev, for
    # the least noisy choice of checkpoint where evaluation is cheap (a GPU, a small encoder).
    dev_limit: int | None = Field(default=500, gt=0)
    # Evaluate on dev before the first step as well (the untrained state can be the best).
    eval_at_start: bool = False
    # Evaluations in a row without improvement before stopping; None: never stop early.
    early_stopping_patience: int | None = Field(default=None, gt=0)
    # None: no checkpoints (and no resume). Needs an output folder when set.
    checkpoint_every: int | None = Field(default=None, gt=0)
    # Or by wall time: a checkpoint once this many seconds have passed since the last one (bounded
    # overhead whatever a step costs; a full fine-tune's checkpoint of SmolLM2 with Adam is 1.6 GB).
    checkpoint_every_seconds: float | None = Field(default=None, gt=0)
    keep_checkpoints: int = Field(default=2, ge=1, description="how many of the latest checkpoints stay")
    seed: int = Field(default=0, ge=0)
    metric: str = Field(default="accuracy", min_length=1, description="dev metric to maximise")
    log_every: int = Field(default=10, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if (self.max_steps is None) == (self.epochs is None):
            given = f"max_steps={self.max_steps!r}, epochs={self.epochs!r}"
            raise ValueError(f"set exactly one of max_steps and epochs (got {given})")
        if self.warmup_ratio is not None and self.warmup_steps is not None:
            raise ValueError(
                f"set at most one of warmup_ratio and warmup_steps "
                f"(got warmup_ratio={self.warmup_ratio!r}, warmup_steps={self.warmup_steps!r})"
            )
        if self.early_stopping_patience is not None and self.eval_every is None:
            raise ValueError(
                f"early_stopping_patience={self.early_stopping_patience!r} needs eval_every "
                "(early stopping counts periodic dev evaluations)"
            )
        return self

    def total_steps(self, n_train: int) -> int:
        """Optimizer steps of a run over ``n_train`` examples (a partial last step per epoch counts)."""
        if self.max_steps is not None:
            return self.max_steps
        return self.epochs * math.ceil(n_train / (self.batch_size * self.grad_accum_steps))

    def warmup_for(self, total_steps: int) -> int:
        """Warmup length in optimizer steps for a run of ``total_steps``."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        if self.warmup_ratio is not None:
            return int(self.warmup_ratio * total_steps)
        return 0


def parse_train_config(data: object, *, source: str = "<training config>") -> TrainConfig:
    """Validate a mapping (parsed YAML/JSON) into a :class:`TrainConfig`, or raise
    :class:`TrainConfigError` naming each bad field and its value."""
    if not isinstance(data, dict):
        raise TrainConfigError(source, [f"expected a mapping of fields, got {type(data).__name__}"])
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"]) or "(config)"
            if e["type"] == "extra_forbidden":
                problems.append(f"unknown field {loc!r} (got {e.get('input')!r})")
                continue
            value = e.get("input")
            shown = "" if isinstance(value, dict) else f" (got {value!r})"
            problems.append(f"field {loc!r}: {e['msg'].removeprefix('Value error, ')}{shown}")
        raise TrainConfigError(source, problems) from None
