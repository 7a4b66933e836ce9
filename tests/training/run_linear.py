"""Run one training of the resume test in its own process (so that the test can SIGKILL it).

Usage: python -m tests.training.run_linear OUTPUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

from tasktune.backbones.device import resolve_device
from tasktune.training import TrainConfig, train
from tests.training.helpers import LinearTrainable, features, make_examples

N_TRAIN, N_DEV = 40, 24
RESUME_CONFIG = TrainConfig(
    max_steps=30,
    batch_size=4,
    grad_accum_steps=2,
    group_by_length=True,  # a grouped order must resume exactly too (the checkpoint stores the order)
    lr=0.05,
    weight_decay=0.01,
    ema_decay=0.9,  # the weight average is state too (the checkpoint stores it)
    layer_lr_decay=0.5,  # two optimizer parameter groups (the weight is named as a block's, below)
    schedule="cosine",
    warmup_steps=3,
    eval_every=4,
    checkpoint_every=2,
    keep_checkpoints=2,
    log_every=3,
    seed=7,
    metric="neg_loss",
)


def data() -> tuple[list, list, LinearTrainable]:
    examples = make_examples(N_TRAIN + N_DEV)
    return (
        examples[:N_TRAIN],
        examples[N_TRAIN:],
        LinearTrainable(features(N_TRAIN + N_DEV), names=("model.encoder.layer.0.weight", "head.bias")),
    )


def main(output_dir: Path, sleep_s: float) -> None:
    train_ex, dev_ex, trainable = data()
    trainable.sleep_s = sleep_s
    train(
        trainable,
        train_ex,
        dev_ex,
        RESUME_CONFIG,
        resolve_device("cpu"),
        output_dir=output_dir,
        progress=False,
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.0)
