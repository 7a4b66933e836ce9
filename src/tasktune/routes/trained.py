"""What the trained routes (prompt tuning, fine-tuning) share around the training loop: the dev sample
they select on and the summary of a training run that goes into results and manifests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel

from tasktune.evaluation.evaluator import length_order
from tasktune.task.data import Example
from tasktune.training.config import TrainConfig
from tasktune.training.result import TrainResult


def dev_sample(dev: Sequence[Example], n: int | None, seed: int) -> list[Example]:
    """``n`` of ``dev`` drawn with ``seed``, in their original order; all of it when ``n`` is None or
    at least its size."""
    if n is None or len(dev) <= n:
        return list(dev)
    idx = np.random.default_rng(seed).permutation(len(dev))[:n]
    return [dev[i] for i in sorted(idx)]


CHECKPOINT_SECONDS = 600.0  # a killed cell loses at most ten minutes of training


def checkpointed(
    config: TrainConfig, work_dir: Path | None, options: BaseModel | None = None
) -> tuple[TrainConfig, dict]:
    """``train()``'s config and keyword arguments for a cell's work folder: a checkpoint every ten
    minutes of training (unless the config sets its own interval; by time, so the cost stays a few
    percent whatever a step costs — a full fine-tune's checkpoint of SmolLM2 with Adam is 1.6 GB) and
    one at the end, and resume from the latest one there. One is kept: each is written atomically,
    so the previous one is only removed once the new one is whole. The route's ``options`` other than
    ``train`` (checked by the loop itself) and those the options class lists in ``AFTER_TRAINING``
    (applied to the trained tensors afterwards) go into the checkpoint: one written with another head
    or initialisation does not resume."""
    if work_dir is None:
        return config, {}
    if config.checkpoint_every is None and config.checkpoint_every_seconds is None:
        config = config.model_copy(
            update={"checkpoint_every_seconds": CHECKPOINT_SECONDS, "keep_checkpoints": 1}
        )
    setup = None
    if options is not None:
        setup = options.model_dump(
            mode="json", exclude={"train": True, **getattr(options, "AFTER_TRAINING", {})}
        )
    return config, {"output_dir": work_dir, "resume": True, "setup": setup}


def training_summary(options: BaseModel, result: TrainResult) -> dict[str, Any]:
    return {
        "options": options.model_dump(mode="json"),
        "selected_on": result.metric,  # the dev metric the best step was chosen by (the task's)
        "best_step": result.best_step,
        "best_dev": result.best_metrics,
        **result.extra,  # route-specific figures, e.g. the dev score after WiSE-FT interpolation
        "stopped": result.stopped,
        "resumed_from_step": result.resumed_from_step,
        "train_seconds": round(result.seconds, 2),
        "train_examples_per_second": round(result.examples_per_second, 2),
        "learning_curve": [
            {"step": h.step, "train_loss": h.train_loss, "dev": h.dev, "lr": h.lr} for h in result.history
        ],
    }


def full_data_schedule(n_train: int | None, batch_size: int, target_examples: int) -> dict[str, int]:
    """Epochs and evaluation interval for the full-data protocol, by the size of train.

    One epoch is right for tens of thousands of examples, far too little for a few hundred (a soft
    prompt or a new head needs a few thousand example presentations to move), so small training sets
    get more passes — at most 20 — and about eight dev evaluations per run either way."""
    if not n_train:
        return {"epochs": 1, "eval_every": 200}
    epochs = max(1, min(20, -(-target_examples // n_train)))
    steps = -(-n_train // batch_size) * epochs
    return {"epochs": epochs, "eval_every": max(1, steps // 8)}


def probabilities_in_batches(
    predict_proba: Callable[[Sequence[Example]], np.ndarray], examples: Sequence[Example], batch_size: int
) -> np.ndarray:
    """(N, L) probabilities of a trainable's ``predict_proba``, ``batch_size`` examples at a time, in
    length-sorted batches (little padding), returned in the given order."""
    order = length_order(examples)
    out: np.ndarray | None = None
    for i in range(0, len(examples), batch_size):
        idx = order[i : i + batch_size]
        probs = predict_proba([examples[j] for j in idx])
        if out is None:
            out = np.zeros((len(examples), probs.shape[1]), dtype=probs.dtype)
        out[idx] = probs
    return out if out is not None else np.zeros((0, 0))


@torch.no_grad()
def mean_calibration_offset(
    predict_proba_all: Callable[[Sequence[Example]], np.ndarray], texts: Sequence[Example | str]
) -> torch.Tensor:
    """(L,) minus the mean log label distribution over unlabelled ``texts`` (route 1's ``mean``
    calibration): added to a prompt-based classifier's label logits, it removes the prompt's preference
    for one label. Call with the classifier's offset at zero and in eval mode."""
    from tasktune.routes.base import unlabelled_inputs  # base imports the backbones: not at module level

    return -torch.from_numpy(predict_proba_all(list(unlabelled_inputs(texts)))).log().mean(0).float()


def dev_accuracy(probs: np.ndarray, examples: Sequence[Example]) -> dict[str, float]:
    """What every trained route's ``evaluate`` reports to the loop: accuracy and macro-F1 (the loop
    selects on the one the task names, see :func:`for_task`)."""
    from tasktune.evaluation.metrics import macro_f1

    y = np.array([e.label for e in examples])
    pred = probs.argmax(1)
    return {"accuracy": float((pred == y).mean()), "macro_f1": macro_f1(y, pred, probs.shape[1])}


def for_task(config: TrainConfig, metric: str) -> TrainConfig:
    """The training config selecting (best checkpoint, early stopping) on the task's metric."""
    return config if config.metric == metric else config.model_copy(update={"metric": metric})
