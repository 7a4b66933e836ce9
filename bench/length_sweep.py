"""Soft-prompt length sweep as a result file: ``tasktune prompt-tune sweep`` per backbone (label-word
start, the route's defaults otherwise), dev and test accuracy per length, written to
``bench/results/length_sweep-<device>.json`` (rows merged by task, backbone and length).

    python bench/length_sweep.py --task examples/sst2.yaml --backbones all-minilm-l6-v2 \\
        --lengths 1,5,20,50 --seeds 13,21,42,87,100
    python bench/length_sweep.py --task examples/sst2.yaml \\
        --collect all-minilm-l6-v2=runs/sweep/sst2-minilm.json   # sweeps the CLI wrote with --out
                                                                 # (repeatable, merged per backbone)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import write_result

from tasktune.routes.prompt_tuning.sweep import SweepCell, rows_of
from tasktune.task.spec import load_task


def _rows(task: str, backbone: str, cells: list[dict], protocol: str) -> list[dict]:
    """One row per length from the sweep's cells (several sweeps of one backbone may be collected)."""
    rows = rows_of([SweepCell(**c) for c in cells])
    return [
        {
            "task": task,
            "protocol": protocol,
            # One row per length: the length is part of the cell's name, as a --set label would be.
            "route": f"prompt_tuning[num_virtual_tokens={r.length},init=labels]",
            "backbone": backbone,
            "length": r.length,
            "seeds": r.seeds,
            "dev_mean": None if r.dev_mean is None else round(100 * r.dev_mean, 2),
            "test_mean": round(100 * r.test_mean, 2),
            "test_std": round(100 * r.test_std, 2),
            "test_per_seed": [
                round(100 * c["test_accuracy"], 2)
                for c in sorted(cells, key=lambda c: c["seed"])
                if c["length"] == r.length
            ],
            "trainable_parameters": r.trainable_parameters,
            "fit_seconds_mean": round(r.fit_seconds_mean, 2),
        }
        for r in sorted(rows, key=lambda r: r.length)
    ]


def _run(args: argparse.Namespace, backbone: str) -> dict:
    from tasktune.backbones.loading import load_backbone
    from tasktune.routes.prompt_tuning.sweep import sweep_lengths, to_json
    from tasktune.task.data import load_splits

    spec = load_task(args.task)
    rows, cells = sweep_lengths(
        spec,
        load_splits(spec),
        load_backbone(backbone),
        lengths=[int(v) for v in args.lengths.split(",")],
        seeds=[int(v) for v in args.seeds.split(",")],
        protocol=args.protocol,
        on_cell=lambda c: print(f"  {backbone} length {c.length} seed {c.seed}: test {c.test_accuracy:.4f}"),
    )
    return to_json(rows, cells)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True)
    ap.add_argument("--protocol", default="few", choices=["few", "full"])
    ap.add_argument("--backbones", default="all-minilm-l6-v2,smollm2-135m-instruct")
    ap.add_argument("--lengths", default="1,5,20,50")
    ap.add_argument("--seeds", default="13,21,42,87,100")
    ap.add_argument("--collect", action="append", default=[], help="BACKBONE=SWEEP.json, repeatable")
    args = ap.parse_args()
    task = load_task(args.task).name
    cells: dict[str, list[dict]] = {}
    sources: dict[str, list[str]] = {}
    for item in args.collect:
        backbone, _, path = item.partition("=")
        cells.setdefault(backbone, []).extend(json.loads(Path(path).read_text())["cells"])
        sources.setdefault(backbone, []).append(path)
    if not args.collect:
        cells = {b: _run(args, b)["cells"] for b in args.backbones.split(",")}
    rows = [row for b, mine in cells.items() for row in _rows(task, b, mine, args.protocol)]
    for r in rows:
        print(
            f"{r['backbone']:24s} length {r['length']:3d}: test {r['test_mean']:.2f} ± {r['test_std']:.2f} "
            f"(dev {r['dev_mean']}), {r['trainable_parameters']:,} parameters, "
            f"fit {r['fit_seconds_mean']:.0f} s"
        )
    summary = {
        f"{task}/{args.protocol}/{r['backbone']}/length{r['length']}/test_mean": r["test_mean"] for r in rows
    }
    settings = {
        f"{task}/{args.protocol}/{b}": {
            "task_file": args.task,
            "init": "labels",
            "how": "tasktune prompt-tune sweep (the route's defaults for a label-word start)",
            "collected_from": sources.get(b),
        }
        for b in cells
    }
    write_result("length_sweep", settings=settings, rows=rows, summary=summary, merge=True)


if __name__ == "__main__":
    main()
