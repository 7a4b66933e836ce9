"""The whole accuracy matrix of issue 8 — tasks × protocols × routes × backbones — as one resumable
command: it plans every cell, skips those already committed for this kind of device (with
``--missing``), and runs the rest through ``bench/accuracy.py`` one (task, protocol, route, backbone)
at a time, so a stopped run loses at most one route's unfinished seeds (finished seed cells are kept
under ``--out`` and reused). Results go to ``bench/results/accuracy-suite-<device>.json``.

GPU: the full protocols. CPU (reduced, stated in every row): full-data training on a seeded subset of
train where train is larger than the size below (protocol key ``subset``, size in ``train_limit``).

    python bench/suite.py --dry-run                       # the plan, what is already committed
    python bench/suite.py --missing --budget-minutes 100  # fill the matrix for a while, then stop
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SEEDS = (13, 21, 42, 87, 100)  # the LM-BFF few-shot seeds
BACKBONES = {"smollm2-135m-instruct": "causal", "all-minilm-l6-v2": "encoder"}
TRAINED = {
    "causal": [
        "prompt_tuning",
        "deep_prompt_tuning",
        "prompt_ensemble",
        "finetune_prompt",
        "finetune_head",
        "lora",
    ],
    "encoder": ["prompt_tuning", "finetune_prompt", "finetune_head", "lora"],
}
# CPU full-data training: a seeded subset of this size when train is larger than the second figure
# (hours otherwise on 2 cores); all of MR and AG News fits for all-MiniLM-L6-v2.
CPU_TRAIN_LIMIT = {"causal": (2_000, 2_000), "encoder": (8_000, 10_000)}


@dataclass(frozen=True)
class Cell:
    task: str
    protocol: str  # zero, few, full
    route: str
    backbone: str  # "" for majority
    train_limit: int | None

    @property
    def key(self) -> tuple[str, str, str, str]:
        protocol = f"subset-n{self.train_limit}" if self.train_limit else self.protocol
        return (self.task, protocol, self.route, self.backbone or "none")


def train_size(task: str) -> int:
    from tasktune.task.data import load_split
    from tasktune.task.spec import load_task

    return len(load_split(load_task(REPO / "examples" / f"{task}.yaml"), "train").examples)


def plan(tasks: list[str], protocols: list[str], backbones: list[str], on_gpu: bool) -> list[Cell]:
    cells = []
    for task in tasks:
        n_train = train_size(task) if "full" in protocols and not on_gpu else 0
        for protocol in protocols:
            if protocol == "zero":
                cells.append(Cell(task, "zero", "majority", "", None))
            for backbone in backbones:
                kind = BACKBONES[backbone]
                routes = ["prompting"] + ([] if protocol == "zero" else TRAINED[kind])
                limit = None
                size, up_to = CPU_TRAIN_LIMIT[kind]
                if protocol == "full" and not on_gpu and n_train > up_to:
                    limit = size
                cells += [Cell(task, protocol, r, backbone, limit) for r in routes]
    return cells


def committed(on_gpu: bool) -> dict[tuple, dict]:
    """Rows already in bench/results for this kind of device (GPU rows count on a GPU, CPU rows on CPU)."""
    sys.path.insert(0, str(BENCH))
    from table import load_rows

    return {
        (r["task"], r["protocol"], r["route"], r["backbone"]): r
        for r in load_rows()
        if str(r.get("device", "cpu")).startswith("cuda") == on_gpu and runs_the_defaults(r)
    }


def runs_the_defaults(row: dict) -> bool:
    """A row run with settings (--set) is the suite's cell only where those settings are what the route
    does by default now (e.g. head_init=probe, measured before it became the default)."""
    overrides = row.get("overrides")
    if not overrides:
        return True
    from tasktune.routes import get_route
    from tasktune.routes.overrides import flatten

    kind = BACKBONES.get(row["backbone"])
    if kind is None:
        return False
    protocol = "full" if row["protocol"].startswith(("subset", "full")) else row["protocol"]
    n_train = row.get("train_limit") or 0
    defaults = flatten(
        get_route(row["route"]).options(protocol, 13, n_train, kind, {}).model_dump(mode="json")
    )
    return all(defaults.get(k) == v for k, v in flatten(overrides).items())


def done(cell: Cell, rows: dict[tuple, dict]) -> bool:
    row = rows.get(cell.key)
    if row is None:
        return False
    return cell.protocol != "few" or len(row.get("seeds") or []) >= len(SEEDS)


def command(cell: Cell, out: Path) -> list[str]:
    cmd = [
        sys.executable,
        str(BENCH / "accuracy.py"),
        "--task",
        str(REPO / "examples" / f"{cell.task}.yaml"),
        "--protocol",
        cell.protocol,
        "--routes",
        cell.route,
        "--backbones",
        cell.backbone,
        "--label",
        "suite",
        "--out",
        str(out),
    ]
    if cell.protocol == "few":
        cmd += ["--seeds", ",".join(map(str, SEEDS))]
    if cell.train_limit:
        cmd += ["--train-limit", str(cell.train_limit)]
    return cmd


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="sst2,mr,agnews")
    p.add_argument("--protocols", default="zero,few,full")
    p.add_argument("--backbones", default=",".join(BACKBONES))
    p.add_argument("--routes", default="", help="only these routes (default: all)")
    p.add_argument("--missing", action="store_true", help="skip cells already committed for this device")
    p.add_argument("--budget-minutes", type=float, default=0, help="start no new cell after this long")
    p.add_argument("--out", default="runs/suite")
    p.add_argument("--dry-run", action="store_true")
    args = p.parse_args()

    on_gpu = torch.cuda.is_available()
    unknown = [b for b in args.backbones.split(",") if b not in BACKBONES]
    if unknown:
        sys.exit(f"unknown backbone(s) {unknown}: the suite covers {sorted(BACKBONES)}")
    cells = plan(args.tasks.split(","), args.protocols.split(","), args.backbones.split(","), on_gpu)
    if args.routes:
        keep = set(args.routes.split(","))
        cells = [c for c in cells if c.route in keep]
    rows = committed(on_gpu)
    todo = [c for c in cells if not (args.missing and done(c, rows))]
    print(f"{len(cells)} cells for {'GPU (full)' if on_gpu else 'CPU (reduced)'}; {len(todo)} to run")
    for c in cells:
        state = "committed" if done(c, rows) else "missing"
        print(f"  {'/'.join(c.key):70s} {state}{'' if c in todo else ' (skipped)'}")
    if args.dry_run:
        return
    start, ran, failed = time.monotonic(), 0, []
    for c in todo:
        if args.budget_minutes and time.monotonic() - start > args.budget_minutes * 60:
            print(f"budget of {args.budget_minutes} min spent: {len(todo) - ran} cells left for the next run")
            break
        print(f"== {'/'.join(c.key)}", flush=True)
        if subprocess.run(command(c, Path(args.out)), cwd=REPO).returncode != 0:
            failed.append("/".join(c.key))
        ran += 1
    print(json.dumps({"ran": ran, "failed": failed, "minutes": round((time.monotonic() - start) / 60, 1)}))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
