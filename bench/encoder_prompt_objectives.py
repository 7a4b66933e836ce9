"""Soft prompts on an encoder: similarity to frozen label-description embeddings vs a small trained
head, same prompt length, data, seeds and loop (the prompt-tuning route uses "similarity").

    python bench/encoder_prompt_objectives.py [--seeds 13,21,42]                 # SST-2 K=16
    python bench/encoder_prompt_objectives.py --protocol full --seeds 13 [--objectives head]

``--protocol full`` trains on all of SST-2 train less the held-out dev (as ``tasktune run --protocol
full`` splits it) with the route's full-data defaults; rows are merged per protocol and objective.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import write_result

from tasktune.backbones.loading import load_backbone
from tasktune.evaluation.evaluator import evaluate
from tasktune.routes.prompt_tuning.config import default_options
from tasktune.routes.prompt_tuning.encoder import EncoderSoftPrompt
from tasktune.routes.trained import dev_sample
from tasktune.task.data import load_split
from tasktune.task.protocols import few_shot, full_data
from tasktune.task.spec import load_task
from tasktune.training import train

TASK = Path(__file__).resolve().parents[1] / "examples" / "sst2.yaml"
BACKBONE = "all-minilm-l6-v2"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--protocol", choices=["few", "full"], default="few")
    p.add_argument("--seeds", default="13,21,42")
    p.add_argument("--objectives", default="similarity,head")
    args = p.parse_args()

    spec = load_task(TASK)
    backbone = load_backbone(BACKBONE)
    train_split, test = load_split(spec, "train"), load_split(spec, "test").examples
    rows, summary = [], {}
    for objective in args.objectives.split(","):
        accs, seconds = [], []
        for seed in (int(s) for s in args.seeds.split(",")):
            if args.protocol == "few":
                ps = few_shot(train_split, spec.label_names, k=16, seed=seed)
            else:
                ps = full_data(train_split, spec.num_labels, seed=seed)
            options = default_options(
                args.protocol, seed=seed, n_train=len(ps.train), backbone_kind="encoder"
            ).model_copy(update={"readout": objective})  # the route's option of that name
            trainable = EncoderSoftPrompt(backbone, spec, options, seed, objective=options.readout)
            dev = dev_sample(ps.dev, options.train.dev_limit, seed)  # as the route selects
            started = time.perf_counter()
            train(trainable, ps.train, dev, options.train, backbone.device, progress=False)
            seconds.append(time.perf_counter() - started)
            metrics, _ = evaluate(trainable, test, batch_size=64)
            accs.append(metrics.accuracy * 100)
        rows.append(
            {
                "task": "sst2",
                "protocol": args.protocol,
                "route": f"prompt_tuning/{objective}",
                "backbone": BACKBONE,
                "objective": objective,
                "seeds": args.seeds,
                "n_train": len(ps.train),
                "acc": [round(a, 2) for a in accs],
                "acc_mean": round(float(np.mean(accs)), 2),
                "acc_std": round(float(np.std(accs, ddof=1)), 2) if len(accs) > 1 else 0.0,
                "fit_seconds_mean": round(float(np.mean(seconds)), 1),
            }
        )
        summary[f"sst2/{args.protocol}/{objective}/acc_mean"] = rows[-1]["acc_mean"]
        row = rows[-1]
        print(f"{args.protocol} {objective:10s} {row['acc_mean']:.2f} ± {row['acc_std']:.2f}  {row['acc']}")
    write_result(
        "encoder_prompt_objectives",
        settings={"task": "sst2", "k": 16, "backbone": BACKBONE, "dev_limit": options.train.dev_limit},
        rows=rows,
        summary=summary,
        merge=True,
    )


if __name__ == "__main__":
    main()
