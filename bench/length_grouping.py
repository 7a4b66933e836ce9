"""Training speed with steps grouped by text length vs uniformly random steps, in one run: the same
trainable, full-data defaults, seed and number of steps, on SST-2 train (phrases of 1 to 267
characters, so a random batch pads far). Prints training examples/s of each order, the ratio, the
padding each order carries (characters a step pads to, over characters it holds) and the dev accuracy
each reaches — the grouped order must train as well, not only faster.

    python bench/length_grouping.py [--backbone all-minilm-l6-v2] [--route finetune_head] [--steps N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from common import write_result

from tasktune.backbones.loading import load_backbone
from tasktune.routes.finetuning.classifier import FinetunedClassifier
from tasktune.routes.finetuning.config import default_options as finetune_defaults
from tasktune.routes.prompt_tuning.causal import CausalSoftPrompt
from tasktune.routes.prompt_tuning.config import default_options as prompt_defaults
from tasktune.routes.prompt_tuning.encoder import EncoderSoftPrompt
from tasktune.routes.trained import dev_sample
from tasktune.task.data import load_split
from tasktune.task.protocols import full_data
from tasktune.task.spec import load_task
from tasktune.training import train
from tasktune.training.batches import epoch_order, text_sizes

TASK = Path(__file__).resolve().parents[1] / "examples" / "sst2.yaml"
SEED = 13


def trainable_and_config(route: str, backbone, spec, n_train: int):
    if route == "finetune_head":
        options = finetune_defaults("full", "head", "full", backbone.kind, SEED, n_train)
        clf = FinetunedClassifier(backbone, spec, options, SEED)
        return clf, options.train
    options = prompt_defaults(
        "full", seed=SEED, n_train=n_train, backbone_kind=backbone.kind, from_prompt=False
    )
    cls = CausalSoftPrompt if backbone.kind == "causal" else EncoderSoftPrompt
    return cls(backbone, spec, options, SEED), options.train


def padding(order: torch.Tensor, sizes: torch.Tensor, step: int, steps: int) -> float:
    """Characters the first ``steps`` steps pad to (each to its longest text) over those they hold."""
    used = order[: steps * step].view(steps, step)
    return float((sizes[used].max(dim=1).values * step).sum() / sizes[used].sum())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--backbone", default="all-minilm-l6-v2")
    p.add_argument("--route", choices=["finetune_head", "prompt_tuning"], default="finetune_head")
    p.add_argument("--steps", type=int, default=0, help="default 150 on CPU, 1000 on GPU")
    p.add_argument("--dev", type=int, default=872, help="dev examples (held out of train) scored at the end")
    args = p.parse_args()

    spec = load_task(TASK)
    backbone = load_backbone(args.backbone)
    on_gpu = backbone.device.device.type == "cuda"
    steps = args.steps or (1000 if on_gpu else 150)
    mode = "gpu" if on_gpu else "cpu reduced"
    splits = full_data(load_split(spec, "train"), spec.num_labels, seed=SEED)
    train_ex, dev_ex = list(splits.train), dev_sample(splits.dev, args.dev, SEED)
    sizes = text_sizes(train_ex)

    rows = []
    for grouped in (False, True):
        trainable, config = trainable_and_config(args.route, backbone, spec, len(train_ex))
        config = config.model_copy(
            update={"max_steps": steps, "epochs": None, "eval_every": None, "group_by_length": grouped}
        )
        step = config.batch_size * config.grad_accum_steps
        order = epoch_order(
            len(train_ex), step, torch.Generator().manual_seed(SEED), sizes if grouped else None
        )
        result = train(trainable, train_ex, [], config, backbone.device, progress=False)
        rows.append(
            {
                "order": "grouped by length" if grouped else "random",
                "examples_per_s": round(result.examples_per_second, 2),
                "padding": round(padding(order, sizes, step, min(steps, len(train_ex) // step)), 3),
                "dev_accuracy": round(trainable.evaluate(dev_ex)["accuracy"], 4),
            }
        )
    ratio = rows[1]["examples_per_s"] / rows[0]["examples_per_s"]
    print(
        f"{args.route} on {args.backbone}: {steps} steps of batch {config.batch_size}, "
        f"{len(train_ex)} train / {len(dev_ex)} dev, {backbone.device.device} {backbone.device.dtype_name}"
    )
    for r in rows:
        print(
            f"  {r['order']:18s} {r['examples_per_s']:8.2f} ex/s   padding x{r['padding']:.2f}   "
            f"dev accuracy {r['dev_accuracy']:.4f}"
        )
    print(f"  ratio {ratio:.2f}x")
    run = {
        "route": args.route,
        "backbone": args.backbone,
        "steps": steps,
        "batch": config.batch_size,
        "n_dev": len(dev_ex),
    }
    key = f"{args.route}/{args.backbone}"
    write_result(
        "length_grouping",
        settings={"seed": SEED, "n_train": len(train_ex), "mode": mode},  # per-run figures are in rows
        rows=[{**run, "lr": config.lr, **r} for r in rows],
        summary={
            f"{key}/ratio": round(ratio, 2),
            f"{key}/dev_accuracy_delta": round(rows[1]["dev_accuracy"] - rows[0]["dev_accuracy"], 4),
        },
        merge=True,  # one file for every (route, backbone) measured; rows keyed by them and the order
    )


if __name__ == "__main__":
    main()
