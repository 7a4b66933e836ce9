"""What the trained routes (prompt tuning, fine-tuning) share around the training loop: the dev sample
they select on and the summary of a training run that goes into results and manifests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel

from tasktune.task.data import Example
from tasktune.training.result import TrainResult

DEV_LIMIT = 500  # dev examples per evaluation during training (a seeded sample when dev is larger)


def dev_sample(dev: Sequence[Example], n: int, seed: int) -> list[Example]:
    if len(dev) <= n:
        return list(dev)
    idx = np.random.default_rng(seed).permutation(len(dev))[:n]
    return [dev[i] for i in sorted(idx)]


def training_summary(options: BaseModel, result: TrainResult) -> dict[str, Any]:
    return {
        "options": options.model_dump(mode="json"),
        "best_step": result.best_step,
        "best_dev": result.best_metrics,
        "stopped": result.stopped,
        "train_seconds": round(result.seconds, 2),
        "train_examples_per_second": round(result.examples_per_second, 2),
        "learning_curve": [
            {"step": h.step, "train_loss": h.train_loss, "dev": h.dev, "lr": h.lr} for h in result.history
        ],
    }
