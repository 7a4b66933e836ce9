"""Accuracy benchmark: routes × backbones on a task under one protocol, through `tasktune run`'s
runner (same splits, seeds and evaluator as users get). Writes or merges
``bench/results/accuracy-<label>-<device>.json`` with summary keys
``<task>/<protocol>/<route>/<backbone>/<figure>``.

    python bench/accuracy.py --task examples/sst2.yaml --protocol few --routes prompting \
        --backbones smollm2-135m-instruct --label prompting
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
from common import write_result
from rich.console import Console

from tasktune.cli.report_cmd import print_comparison
from tasktune.evaluation.compare import summarise
from tasktune.evaluation.recommend import recommend
from tasktune.runner import run_matrix
from tasktune.task.spec import load_task


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--task", required=True)
    p.add_argument("--protocol", choices=["zero", "few", "full"], required=True)
    p.add_argument("--routes", required=True)
    p.add_argument("--backbones", default="")
    p.add_argument("--seeds", default="")
    p.add_argument("--label", required=True)
    p.add_argument("--out", default="runs/bench")
    p.add_argument(
        "--train-limit",
        type=int,
        default=None,
        help="full protocol on a seeded random subset of train (summary key protocol 'subset')",
    )
    args = p.parse_args()

    spec = load_task(args.task)
    out_dir = Path(args.out) / f"{spec.name}-{args.protocol}"
    seeds = [int(s) for s in args.seeds.split(",") if s] or None
    outcome = run_matrix(
        spec,
        route_names=args.routes.split(","),
        backbone_names=[b for b in args.backbones.split(",") if b],
        protocol=args.protocol,
        seeds=seeds,
        out_dir=out_dir,
        train_limit=args.train_limit,
    )
    comparison = summarise(outcome.results)
    title = f"{spec.name} ({args.protocol})"
    print_comparison(
        comparison, recommend(comparison, spec.constraints), title=title, console=Console(width=140)
    )
    for f in outcome.failures:
        print(f"FAILED {f.cell}: {f.error}")

    groups = defaultdict(list)
    for r in outcome.results:
        backbone = r.info.backbone["name"] if r.info.backbone else "none"
        groups[(r.info.route, backbone)].append(r)
    # A reduced full-data run is reported under its own protocol key, never as "full".
    protocol_key = "subset" if args.protocol == "full" and args.train_limit else args.protocol
    rows, summary = [], {}
    for (route, backbone), rs in sorted(groups.items()):
        acc = np.array([r.metrics["accuracy"] for r in rs]) * 100
        f1 = np.array([r.metrics["macro_f1"] for r in rs]) * 100
        ci = np.mean([r.metrics["accuracy_ci95"] for r in rs], axis=0) * 100
        row = {
            "task": spec.name,
            "protocol": protocol_key,
            "route": route,
            "backbone": backbone,
            "seeds": [r.info.seed for r in rs],
            "acc": acc.round(2).tolist(),
            "acc_mean": round(float(acc.mean()), 2),
            "acc_std": round(float(acc.std(ddof=1)) if len(acc) > 1 else 0.0, 2),
            "macro_f1_mean": round(float(f1.mean()), 2),
            "ci95_mean": ci.round(2).tolist(),
            "ece_mean": round(float(np.mean([r.metrics["ece"] for r in rs])), 4),
            "n_test": rs[0].metrics["n"],
            "fit_seconds_mean": round(float(np.mean([r.timings.fit_seconds for r in rs])), 2),
            "examples_per_second": round(float(np.mean([r.timings.examples_per_second for r in rs])), 2),
            "peak_memory_mb": round(float(max(r.timings.peak_memory_mb for r in rs)), 1),
            "trainable_parameters": rs[0].timings.trainable_parameters,
            "artifact_bytes": rs[0].timings.artifact_bytes,
            "device": rs[0].info.device,
            "dtype": rs[0].info.dtype,
            # Subsets of different sizes share the protocol key; the size travels with each row.
            "train_limit": args.train_limit if protocol_key == "subset" else None,
        }
        rows.append(row)
        key = f"{spec.name}/{protocol_key}/{route}/{backbone}"
        summary[f"{key}/acc_mean"] = row["acc_mean"]
        summary[f"{key}/acc_std"] = row["acc_std"]
        summary[f"{key}/macro_f1_mean"] = row["macro_f1_mean"]
    size = f"-n{args.train_limit}" if protocol_key == "subset" else ""
    settings = {
        f"{spec.name}/{protocol_key}{size}": {
            "task_file": args.task,
            "train_limit": args.train_limit,
            "routes": args.routes,
            "seeds": seeds or "default",
            "test_split": "test",
            "mode": "full test set",
        }
    }
    write_result(f"accuracy-{args.label}", settings=settings, rows=rows, summary=summary, merge=True)


if __name__ == "__main__":
    main()
