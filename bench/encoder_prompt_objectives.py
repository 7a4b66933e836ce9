"""Soft prompts on an encoder: similarity to frozen label-description embeddings vs a small trained
head, same prompt length, data, seeds and loop (the prompt-tuning route uses "similarity").

    python bench/encoder_prompt_objectives.py [--seeds 13,21,42]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import write_result

from tasktune.backbones.loading import load_backbone
from tasktune.evaluation.evaluator import evaluate
from tasktune.routes.prompt_tuning.config import default_options
from tasktune.routes.prompt_tuning.encoder import EncoderSoftPrompt
from tasktune.task.data import load_split
from tasktune.task.protocols import few_shot
from tasktune.task.spec import load_task
from tasktune.training import train

TASK = Path(__file__).resolve().parents[1] / "examples" / "sst2.yaml"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", default="13,21,42")
    args = p.parse_args()
    spec = load_task(TASK)
    backbone = load_backbone("all-minilm-l6-v2")
    train_split, test = load_split(spec, "train"), load_split(spec, "test").examples
    rows, summary = [], {}
    for objective in ("similarity", "head"):
        accs = []
        for seed in (int(s) for s in args.seeds.split(",")):
            ps = few_shot(train_split, spec.label_names, k=16, seed=seed)
            options = default_options("few", seed=seed, backbone_kind="encoder")
            trainable = EncoderSoftPrompt(backbone, spec, options, seed, objective=objective)
            train(trainable, ps.train, ps.dev, options.train, backbone.device, progress=False)
            metrics, _ = evaluate(trainable, test, batch_size=64)
            accs.append(metrics.accuracy * 100)
        rows.append(
            {
                "objective": objective,
                "seeds": args.seeds,
                "acc": [round(a, 2) for a in accs],
                "acc_mean": round(float(np.mean(accs)), 2),
                "acc_std": round(float(np.std(accs, ddof=1)), 2),
            }
        )
        summary[f"sst2/few/{objective}/acc_mean"] = rows[-1]["acc_mean"]
        print(f"{objective:10s} {rows[-1]['acc_mean']:.2f} ± {rows[-1]['acc_std']:.2f}  {rows[-1]['acc']}")
    write_result(
        "encoder_prompt_objectives",
        settings={"task": "sst2", "protocol": "few", "k": 16, "backbone": "all-minilm-l6-v2"},
        rows=rows,
        summary=summary,
    )


if __name__ == "__main__":
    main()
