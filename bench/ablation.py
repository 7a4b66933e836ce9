"""One setting against another on the same seeds and test set, from two folders of cell results
(`tasktune run --out A` and `--out B`, e.g. without and with `--set finetune_head.head_init=probe`).

Prints per-seed figures and the comparison tasktune itself makes (paired over seeds and test rows,
McNemar for accuracy, Holm-adjusted), and writes ``bench/results/ablation-<name>-<device>.json``:

    python bench/ablation.py --name lp-ft --route finetune_head --backbone all-minilm-l6-v2 \\
        --a runs/lpft/minilm-sst2-random --b runs/lpft/minilm-sst2 --what "..."
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from common import RESULTS, device_tag, provenance

from tasktune.evaluation.compare import summarise
from tasktune.evaluation.results import cell_group, read_result
from tasktune.routes.overrides import flatten


def load(folder: Path, route: str, backbone: str) -> dict[int, object]:
    """seed -> result of the route's cells on ``backbone`` in ``folder`` (one setting per folder)."""
    found = {}
    for path in sorted(folder.glob(f"{route}--{backbone}--*.json")):
        r = read_result(path)
        if r.info.seed in found:
            raise SystemExit(f"{folder} holds several settings of {route} on {backbone}; use one per folder")
        found[r.info.seed] = r
    if not found:
        raise SystemExit(f"no {route} cells on {backbone} in {folder}")
    return found


def label_by_options(a: dict[int, object], b: dict[int, object], seed: int) -> None:
    """Two folders run with the route's defaults of different times (a default changed between
    them) fall into one comparison cell; name each arm by the options that differ instead, read
    from the results of one seed both ran (the seed itself is not a setting)."""
    if cell_group(a[seed]) != cell_group(b[seed]):
        return
    fa = flatten(a[seed].info.route_config.get("options") or {})
    fb = flatten(b[seed].info.route_config.get("options") or {})
    differ = sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k) and k != "train.seed")
    if not differ:
        if a[seed].info.train_limit != b[seed].info.train_limit:
            return  # the same settings on training sets of other sizes: arm_names says so
        raise SystemExit("the two folders ran the same settings: nothing to compare")
    for results, flat in ((a, fa), (b, fb)):
        for r in results.values():
            r.info.route_config["overrides"] = {k: flat.get(k) for k in differ}


def arm_names(a: object, b: object) -> tuple[str, str]:
    """Each arm's name: its route label (with the options that differ), and where that is the same for
    both (arms of other protocols or training-set sizes) the protocol and size too, so the two arms'
    figures never land under one name."""
    name_a, name_b = cell_group(a)[0], cell_group(b)[0]
    if name_a != name_b:
        return name_a, name_b

    def size(r) -> str:
        return f"{r.info.protocol}-n{r.info.train_limit}" if r.info.train_limit else r.info.protocol

    name_a, name_b = f"{name_a} {size(a)}", f"{name_b} {size(b)}"
    if name_a == name_b:
        raise SystemExit(f"both arms are {name_a}: nothing tells them apart")
    return name_a, name_b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True)
    ap.add_argument("--route", required=True)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--a", type=Path, required=True, help="folder of the first setting (the baseline)")
    ap.add_argument("--b", type=Path, required=True, help="folder of the second setting")
    ap.add_argument("--what", default="", help="what is compared, for the result file")
    ap.add_argument("--merge", action="store_true", help="add to the rows already in the result file")
    args = ap.parse_args()
    a, b = load(args.a, args.route, args.backbone), load(args.b, args.route, args.backbone)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise SystemExit("the two folders share no seed")
    label_by_options(a, b, seeds[0])
    task = a[seeds[0]].info.task
    comparison = summarise([a[s] for s in seeds] + [b[s] for s in seeds])
    name_a, name_b = arm_names(a[seeds[0]], b[seeds[0]])
    acc = {n: [x[s].metrics["accuracy"] * 100 for s in seeds] for n, x in ((name_a, a), (name_b, b))}
    rows = [
        {
            "task": task,
            "seed": s,
            f"acc {name_a}": round(acc[name_a][i], 2),
            f"acc {name_b}": round(acc[name_b][i], 2),
        }
        for i, s in enumerate(seeds)
    ]
    gains = np.array(acc[name_b]) - np.array(acc[name_a])
    other = next(c for c in comparison.cells if c.key != comparison.best)
    vb = other.versus_best
    summary = {
        f"{task}/{args.route}/{args.backbone}/acc_mean_a": round(float(np.mean(acc[name_a])), 2),
        f"{task}/{args.route}/{args.backbone}/acc_mean_b": round(float(np.mean(acc[name_b])), 2),
        f"{task}/{args.route}/{args.backbone}/paired_gain": round(float(gains.mean()), 2),
        f"{task}/{args.route}/{args.backbone}/seeds_better": int((gains > 0).sum()),
        f"{task}/{args.route}/{args.backbone}/seeds_worse": int((gains < 0).sum()),
        # Three significant digits: a rounding to decimals would show tiny p-values as 0.
        f"{task}/{args.route}/{args.backbone}/p_holm": float(f"{vb.p_holm:.3g}") if vb else None,
    }
    print(f"{task}: {args.route} on {args.backbone}, seeds {seeds}")
    for r in rows:
        print("  " + "  ".join(f"{k}={v}" for k, v in r.items() if k != "task"))
    print(
        f"  mean {np.mean(acc[name_a]):.2f} ({name_a}) -> {np.mean(acc[name_b]):.2f} ({name_b}); "
        f"better on {(gains > 0).sum()}/{len(seeds)} seeds; best {comparison.best.split('|')[0]}, "
        f"other {vb.test if vb else '-'} p_holm={vb.p_holm if vb else float('nan'):.3g}"
    )
    path = RESULTS / f"ablation-{args.name}-{device_tag()}.json"
    old = json.loads(path.read_text()) if args.merge and path.is_file() else {}
    here = (task, args.route, args.backbone)
    data = {
        **provenance(),
        "what": args.what or old.get("what", ""),
        "settings": {
            **old.get("settings", {}),
            f"{task}/{args.route}/{args.backbone}": {
                "a": name_a,
                "b": name_b,
                "a_folder": str(args.a),
                "b_folder": str(args.b),
            },
        },
        "rows": [r for r in old.get("rows", []) if (r.get("task"), r.get("route"), r.get("backbone")) != here]
        + [{**r, "route": args.route, "backbone": args.backbone} for r in rows],
        "summary": {**old.get("summary", {}), **summary},
    }
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
