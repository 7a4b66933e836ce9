"""The benchmark table: every committed accuracy result merged (GPU files over CPU files), and per task
and protocol the best route with its CI, its cost and the published anchors of ../shared/BENCHMARKS.md.

Reads ``bench/results/accuracy-*.json`` only (nothing is re-run); prints Markdown and writes it to
``bench/results/table.md``.

    python bench/table.py
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

# Reference points quoted from ../shared/BENCHMARKS.md (SST-2 test accuracy); not targets to tune to.
ANCHORS: dict[tuple[str, str], list[str]] = {
    ("sst2", "zero"): [
        "RoBERTa-large zero-shot prompt 83.6 (LM-BFF)",
        "GPT-2 XL zero-shot raw → calibrated 60.0 → 82.0 (Zhao et al. 2021)",
    ],
    ("sst2", "few"): [
        "RoBERTa-large K=16 fine-tuning 81.4 (3.8), prompt-based FT 92.7 (0.9) (LM-BFF)",
    ],
    ("sst2", "full"): [
        "RoBERTa-large 95.0 (LM-BFF); MiniLM-L6-H384 91.5; DistilBERT 91.3; T5.1.1-base prompt tuning 95.07",
    ],
}
FEW_SEEDS = 5  # the LM-BFF protocol's seeds
ORDER = {"zero": 0, "few": 1, "subset": 2, "full": 3}


def load_rows() -> list[dict]:
    """Rows of every accuracy file, one per (task, protocol, route, backbone, settings); a GPU row
    replaces a CPU row of the same cell, and a newer row an older one on the same device."""
    cells: dict[tuple, dict] = {}
    found = []
    for path in RESULTS.glob("accuracy-*.json"):
        data = json.loads(path.read_text())
        for row in data.get("rows", []):
            # Newer by the time written into each row (older rows: their file's), never by file mtime:
            # a fresh clone's mtimes are checkout order, and a merge moves a whole file's time.
            when = row.get("created") or data.get("created", "")
            found.append(((not path.stem.endswith("-cpu"), when, path.name), path, row))
    found.sort(key=lambda f: f[0])
    for _, path, row in found:
        # Reduced full-data runs of different sizes are different cells (subset-n8000, ...), and so is
        # a route run with other settings: neither may hide the other.
        protocol = f"subset-n{row['train_limit']}" if row.get("train_limit") else row["protocol"]
        settings = json.dumps(row.get("overrides") or {}, sort_keys=True)
        key = (row["task"], protocol, row["route"], row.get("backbone") or "–", settings)
        cells[key] = {**row, "protocol": protocol, "backbone": key[3], "file": path.name}
    return list(cells.values())


def _route(row: dict) -> str:
    """The route, with the settings it ran with over its defaults of the time (bench/accuracy.py --set)."""
    settings = ", ".join(f"{k}={v}" for k, v in sorted((row.get("overrides") or {}).items()))
    return f"{row['route']} [{settings}]" if settings else row["route"]


def _acc(row: dict) -> str:
    std = row.get("acc_std")
    text = f"{row['acc_mean']:.1f}" + (f" ± {std:.1f}" if std and len(row.get("acc") or []) > 1 else "")
    n = len(row.get("seeds") or [])
    if row["protocol"] == "few" and 0 < n < FEW_SEEDS:  # a partial row: say so next to its mean
        text += f" ({n} of {FEW_SEEDS} seeds)"
    if "gain_over_member_mean" in row:  # an ensemble: what combining its members bought
        text += f" (members {row['member_acc_mean']:.1f}, gain {row['gain_over_member_mean']:+.1f})"
    return text


def _ci(row: dict) -> str:
    ci = row.get("ci95_mean") or row.get("ci95")
    return f"[{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "–"


def _cost(row: dict) -> str:
    params = row.get("trainable_parameters") or 0
    size = row.get("artifact_bytes") or 0
    fit = row.get("fit_seconds_mean", row.get("fit_seconds"))
    parts = [f"{params:,} trained" if params else "0 trained"]
    if size:
        parts.append(f"{size / 1024:,.0f} KiB" if size < 2**20 else f"{size / 2**20:,.0f} MiB")
    if fit is not None:
        parts.append(f"fit {fit:,.0f} s")
    if row.get("examples_per_second"):
        parts.append(f"{row['examples_per_second']:.1f} ex/s")
    return ", ".join(parts) + f" ({row.get('device', '?')})"


def render(rows: list[dict]) -> str:
    lines = ["# tasktune benchmark table", ""]
    lines.append(
        "Merged from bench/results/accuracy-*.json (GPU over CPU). Accuracy % on each task's test set; "
        "mean ± std over seeds where several ran; CI = 95 % bootstrap over test examples (mean over seeds)."
    )
    for task in sorted({r["task"] for r in rows}):
        mine = [r for r in rows if r["task"] == task]
        lines += [
            "",
            f"## {task}",
            "",
            "| protocol | best route (backbone) | acc % | 95 % CI | cost | anchors |",
        ]
        lines.append("|---|---|---|---|---|---|")
        for protocol in sorted(
            {r["protocol"] for r in mine}, key=lambda p: (ORDER.get(p.split("-")[0], 9), p)
        ):
            cell = [r for r in mine if r["protocol"] == protocol and r["route"] != "majority"]
            if not cell:
                continue
            best = max(cell, key=lambda r: r["acc_mean"])
            anchor_key = (task, "full" if protocol.startswith("subset") else protocol)
            anchors = "; ".join(ANCHORS.get(anchor_key, [])) or "–"
            lines.append(
                f"| {protocol} | {_route(best)} ({best['backbone']}) | {_acc(best)} | {_ci(best)} | "
                f"{_cost(best)} | {anchors} |"
            )
        lines += ["", "| protocol | route | backbone | acc % | macro-F1 % | 95 % CI | cost | file |"]
        lines.append("|---|---|---|---|---|---|---|---|")
        for r in sorted(
            mine,
            key=lambda r: (
                ORDER.get(r["protocol"].split("-")[0], 9),
                -r["acc_mean"],
                _route(r),
                r["backbone"],
            ),
        ):
            f1 = r.get("macro_f1_mean")
            lines.append(
                f"| {r['protocol']} | {_route(r)} | {r['backbone']} | {_acc(r)} | "
                f"{'–' if f1 is None else f'{f1:.1f}'} | {_ci(r)} | {_cost(r)} | {r['file']} |"
            )
    missing = [t for t in ("sst2", "mr", "agnews") if t not in {r["task"] for r in rows}]
    if missing:
        lines += ["", f"No committed results yet for: {', '.join(missing)}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    text = render(load_rows())
    (RESULTS / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
