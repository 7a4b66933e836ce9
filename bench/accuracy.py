"""Accuracy benchmark: routes × backbones on a task under one protocol, through `tasktune run`'s
runner (same splits, seeds and evaluator as users get). Writes or merges
``bench/results/accuracy-<label>-<device>.json`` with summary keys
``<task>/<protocol>/<route>/<backbone>/<figure>``.

    python bench/accuracy.py --task examples/sst2.yaml --protocol few --routes prompting \
        --backbones smollm2-135m-instruct --label prompting

``--set ROUTE.OPTION=VALUE`` runs a route with settings over its defaults (as `tasktune run --set`);
each row then names them (``overrides``). ``--collect RUN_DIR`` writes the rows of cells a finished
`tasktune run --out RUN_DIR` already holds (the routes and backbones asked for), running nothing.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from common import summary_prefix, write_result
from rich.console import Console

from tasktune.cli.report_cmd import print_comparison
from tasktune.evaluation.compare import summarise
from tasktune.evaluation.recommend import recommend
from tasktune.evaluation.results import read_result
from tasktune.routes.overrides import parse_set
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
    p.add_argument("--set", action="append", default=[], metavar="ROUTE.OPTION=VALUE")
    p.add_argument("--collect", type=Path, default=None, metavar="RUN_DIR")
    args = p.parse_args()

    spec = load_task(args.task)
    seeds = [int(s) for s in args.seeds.split(",") if s] or None
    routes = args.routes.split(",")
    backbones = [b for b in args.backbones.split(",") if b]
    if args.collect is not None:
        results = collect(args.collect, spec.name, args.protocol, routes, backbones, seeds, args.train_limit)
    else:
        outcome = run_matrix(
            spec,
            route_names=routes,
            backbone_names=backbones,
            protocol=args.protocol,
            seeds=seeds,
            out_dir=Path(args.out) / f"{spec.name}-{args.protocol}",
            train_limit=args.train_limit,
            route_options=parse_set(args.set),
        )
        results = outcome.results
        for f in outcome.failures:
            print(f"FAILED {f.cell}: {f.error}")
    comparison = summarise(results, metric=spec.metric)
    title = f"{spec.name} ({args.protocol})"
    print_comparison(
        comparison, recommend(comparison, spec.constraints), title=title, console=Console(width=140)
    )

    groups = defaultdict(list)
    for r in results:
        backbone = r.info.backbone["name"] if r.info.backbone else "none"
        overrides = r.info.route_config.get("overrides") or {}
        groups[(r.info.route, backbone, json.dumps(overrides, sort_keys=True))].append(r)
    if len({key[:2] for key in groups}) < len(groups):
        raise SystemExit(
            "several settings of one route and backbone: one row each is all a result file holds"
        )
    # A reduced full-data run is reported under its own protocol key, never as "full".
    protocol_key = "subset" if args.protocol == "full" and args.train_limit else args.protocol
    rows, summary = [], {}
    for (route, backbone, overrides), rs in sorted(groups.items()):
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
        members = [r.info.route_config.get("members_on_test") for r in rs]
        if all(members):  # an ensemble: its members on the same test set, and the gain over them
            row["member_acc_mean"] = round(100 * float(np.mean([m["member_accuracy"] for m in members])), 2)
            gains = [100 * m["gain_over_member_mean"] for m in members]
            row["gain_over_member_mean"] = round(float(np.mean(gains)), 2)
            row["gain_over_best_member"] = round(
                100 * float(np.mean([m["gain_over_best_member"] for m in members])), 2
            )
            row["seeds_gaining"] = int(sum(g > 0 for g in gains))
        if json.loads(overrides):  # settings over the route's defaults at the time of the run
            row["overrides"] = json.loads(overrides)
        rows.append(row)
        key = summary_prefix(row)
        summary[f"{key}/acc_mean"] = row["acc_mean"]
        summary[f"{key}/acc_std"] = row["acc_std"]
        summary[f"{key}/macro_f1_mean"] = row["macro_f1_mean"]
    size = f"-n{args.train_limit}" if protocol_key == "subset" else ""
    run_settings = {
        "task_file": args.task,
        "train_limit": args.train_limit,
        "backbones": args.backbones or "default",
        "seeds": seeds or "default",
        "test_split": "test",
        "mode": "full test set",
        **({"collected_from": str(args.collect)} if args.collect else {}),
        **({"set": args.set} if args.set else {}),
    }
    # One entry per route, so that a later run of another route under the same task and protocol (the
    # merge below) does not replace the settings this route's row was measured with.
    settings = {
        f"{spec.name}/{protocol_key}{size}/{route}": run_settings
        for route in sorted({r["route"] for r in rows})
    }
    write_result(f"accuracy-{args.label}", settings=settings, rows=rows, summary=summary, merge=True)


def collect(
    run_dir: Path,
    task: str,
    protocol: str,
    routes: list[str],
    backbones: list[str],
    seeds: list[int] | None,
    train_limit: int | None,
) -> list:
    """The finished cells of ``run_dir`` that match: the task, protocol (and subset size), routes,
    backbones and seeds asked for."""
    found = []
    for path in sorted(run_dir.glob("*--*.json")):
        r = read_result(path)
        backbone = r.info.backbone["name"] if r.info.backbone else None
        if (
            r.info.task == task
            and r.info.protocol == protocol
            and r.info.train_limit == train_limit
            and r.info.route in routes
            and (backbone is None or not backbones or backbone in backbones)
            and (seeds is None or r.info.seed in seeds)
        ):
            found.append(r)
    found.sort(key=lambda r: (r.info.route, r.info.seed))
    if not found:
        raise SystemExit(f"no finished {task}/{protocol} cells of {routes} in {run_dir}")
    return found


if __name__ == "__main__":
    main()
