"""The distributed test's worker: run under ``accelerate launch``, one process per rank.

Usage: accelerate launch ... -m tests.training.run_distributed OUTPUT_DIR [--resume]

Trains every scenario of :data:`SCENARIOS` into ``OUTPUT_DIR/<name>/`` with plain ``train(...)`` — no
backend argument: it must pick the data-parallel one from the launcher's environment by itself. Each rank
writes the tensors it ends with (``rank-R.safetensors``), a summary (``rank-R.json``), and appends every
folder the loop writes to ``writes-rank-R.txt`` (only rank 0 may have one).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import safetensors.torch
import torch

import tasktune.training.resume as resume_module
from tasktune.backbones.device import resolve_device
from tasktune.task.data import Example
from tasktune.training import TrainConfig, train
from tests.training.helpers import LinearTrainable, features, make_examples, tensors_of


@dataclass(frozen=True)
class Scenario:
    n_train: int
    dropout: float
    config: TrainConfig
    n_dev: int = 8
    # Each rank builds a different start (as a probe fitted per rank may): rank 0's must win.
    start_per_rank: bool = False


def _config(batch_size: int, grad_accum_steps: int) -> TrainConfig:
    return TrainConfig(
        epochs=3,
        batch_size=batch_size,
        grad_accum_steps=grad_accum_steps,
        lr=0.05,
        weight_decay=0.01,
        schedule="cosine",
        warmup_steps=1,
        eval_every=2,
        checkpoint_every=2,
        keep_checkpoints=100,  # the test resumes from a mid-run one
        log_every=1,
        seed=5,
        metric="neg_loss",
    )


SCENARIOS = {
    # 16 = two steps of 4 x 2 per epoch: every micro-batch splits 2 + 2.
    "even": Scenario(16, 0.0, _config(4, 2)),
    # 13 = steps of 6, 6, 1 per epoch: micro-batches of 3 split 1 + 2, and the last step is one example,
    # so rank 0 has nothing at all in it (zero gradients, still in the all-reduce).
    "uneven": Scenario(13, 0.0, _config(3, 2)),
    # As "uneven" with dropout: no single-process twin (ranks draw their own masks), but ranks must agree
    # and resume must be exact.
    "dropout": Scenario(13, 0.2, _config(3, 2)),
    # With a weight average: it must start from rank 0's start on every rank too.
    "start_per_rank": Scenario(
        16, 0.0, _config(4, 2).model_copy(update={"ema_decay": 0.9}), start_per_rank=True
    ),
}


def data(scenario: Scenario, rank: int = 0) -> tuple[list[Example], list[Example], LinearTrainable]:
    n = scenario.n_train + scenario.n_dev
    examples = make_examples(n)
    trainable = LinearTrainable(features(n), dropout=scenario.dropout)
    if scenario.start_per_rank:
        with torch.no_grad():
            trainable.weight.add_(0.01 * rank)  # the trained tensors only; the frozen part is shared
    return examples[: scenario.n_train], examples[scenario.n_train :], trainable


def _record_writes(rank: int, root: Path) -> None:
    real = resume_module.write_folder_atomically

    def recording(final: Path, *args, **kwargs):  # type: ignore[no-untyped-def]
        with (root / f"writes-rank-{rank}.txt").open("a", encoding="utf-8") as fh:
            fh.write(f"{final}\n")
        return real(final, *args, **kwargs)

    resume_module.write_folder_atomically = recording  # type: ignore[assignment]


def main(root: Path, resume: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    rank = int(os.environ["RANK"])
    _record_writes(rank, root)
    for name, scenario in SCENARIOS.items():
        out = root / name
        if not out.is_dir():
            continue  # a resume launch only continues the scenarios the test prepared
        train_ex, dev_ex, trainable = data(scenario, rank)
        result = train(
            trainable,
            train_ex,
            dev_ex,
            scenario.config,
            resolve_device("cpu"),
            output_dir=out,
            resume=resume,
            progress=False,
        )
        safetensors.torch.save_file(tensors_of(trainable), str(out / f"rank-{rank}.safetensors"))
        history = [{k: v for k, v in asdict(h).items() if k != "seconds"} for h in result.history]
        summary = {
            "best_step": result.best_step,
            "final_step": result.final_step,
            "resumed_from_step": result.resumed_from_step,
            "history": history,
        }
        (out / f"rank-{rank}.json").write_text(json.dumps(summary), encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]), "--resume" in sys.argv[2:])
