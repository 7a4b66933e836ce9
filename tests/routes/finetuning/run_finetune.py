"""One fine-tuning run of the resume test in its own process (so that the test can SIGKILL it).

Usage: python -m tests.routes.finetuning.run_finetune MODEL_DIR OUTPUT_DIR ADAPTER SLEEP_S [resume]
Writes OUTPUT_DIR/final.safetensors (the trained tensors) when the run ends.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from safetensors.torch import save_file

from tasktune.backbones.loading import load_backbone
from tasktune.routes.finetuning.classifier import FinetunedClassifier
from tasktune.routes.finetuning.config import default_options
from tasktune.task.data import Example
from tasktune.training import TrainConfig, train
from tests.routes.prompting.conftest import TASK

CONFIG = TrainConfig(
    max_steps=12,
    batch_size=2,
    grad_accum_steps=2,
    lr=5e-3,
    weight_decay=0.01,
    warmup_steps=2,
    eval_every=3,
    checkpoint_every=1,
    keep_checkpoints=2,
    seed=5,
)
TEXTS = ["awful soup", "great food", "rude staff", "lovely place", "cold tea", "kind host", "dirty", "tasty"]
TRAIN = [Example(t, i % 2, row=i + 1) for i, t in enumerate(TEXTS)]
DEV = TRAIN[:4]


class SlowClassifier(FinetunedClassifier):
    sleep_s = 0.0

    def loss(self, batch):
        time.sleep(self.sleep_s)  # room for the test to kill the process between checkpoints
        return super().loss(batch)


def main(model_dir: str, out: Path, adapter: str, sleep_s: float, resume: bool) -> None:
    backbone = load_backbone(model_dir, device="cpu")
    objective = "prompt" if adapter == "lora" else "head"
    options = default_options("few", objective, adapter, backbone.kind, CONFIG.seed)
    # Dropout on (classifier and LoRA): resuming must restore the RNG, not only the tensors.
    options = options.model_copy(update={"train": CONFIG, "classifier_dropout": 0.2})
    clf = SlowClassifier(backbone, TASK, options, CONFIG.seed)
    clf.sleep_s = sleep_s
    train(clf, TRAIN, DEV, CONFIG, backbone.device, output_dir=out, resume=resume, progress=False)
    save_file({n: p.detach().contiguous() for n, p in clf.parameters()}, str(out / "final.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3], float(sys.argv[4]), len(sys.argv) > 5)
