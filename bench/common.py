"""Shared helpers for benchmark scripts: machine/version info and result files in the format of
../shared/BENCHMARKS.md (``machine``, ``versions``, ``settings``, ``rows``, ``summary``)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tasktune.provenance import git_revision, machine_info, package_versions, utc_now

RESULTS = Path(__file__).resolve().parent / "results"


def device_tag() -> str:
    """``cpu`` or the GPU's short name (``h100``, ``h200``, ``a100`` ...)."""
    if not torch.cuda.is_available():
        return "cpu"
    name = torch.cuda.get_device_name(0).lower()
    for tag in ("h200", "h100", "a100", "l40s", "l4", "a10g", "t4", "v100"):
        if tag in name:
            return tag
    return name.split()[-1]


def provenance() -> dict:
    """What every result file starts with: when, which commit, which machine and package versions."""
    return {
        "created": utc_now(),
        "git": git_revision(),
        "machine": machine_info(),
        "versions": package_versions(),
    }


def row_key(row: dict) -> tuple:
    """What makes an accuracy row its own cell: a subset of another size or a route run with other
    settings is another cell, never a replacement (rows without these fields share one key)."""
    overrides = json.dumps(row.get("overrides") or {}, sort_keys=True)
    return (
        row.get("task"),
        row.get("protocol"),
        row.get("route"),
        row.get("backbone"),
        row.get("train_limit"),
        overrides,
    )


def summary_prefix(row: dict) -> str:
    """``<task>/<protocol>/<route>/<backbone>`` as BENCHMARKS.md names summary keys; a reduced full-data
    run's protocol carries its size (``subset-n8000``) and a route run with settings says them
    (``prompt_ensemble[init=prompt]``), so no two rows write one key."""
    protocol = f"{row['protocol']}-n{row['train_limit']}" if row.get("train_limit") else row["protocol"]
    settings = ",".join(f"{k}={v}" for k, v in sorted((row.get("overrides") or {}).items()))
    route = f"{row['route']}[{settings}]" if settings else row["route"]
    return f"{row['task']}/{protocol}/{route}/{row['backbone']}"


def write_result(name: str, *, settings: dict, rows: list[dict], summary: dict, merge: bool = False) -> Path:
    """Write ``bench/results/<name>-<device>.json``; with ``merge`` keep other rows/keys already there.
    Each new row records when it was written (``created``): a reader takes the newest row of a cell by
    it, not by the file's time, which every merge moves."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{device_tag()}.json"
    now = utc_now()
    rows = [{**r, "created": r.get("created") or now} for r in rows]
    if merge and path.is_file():
        old = json.loads(path.read_text())
        keys = {row_key(r) for r in rows}
        rows = [r for r in old.get("rows", []) if row_key(r) not in keys] + rows
        summary = {**old.get("summary", {}), **summary}
        settings = {**old.get("settings", {}), **settings}
    data = {
        **provenance(),
        "settings": settings,
        "rows": rows,
        "summary": summary,
    }
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(json.dumps(summary))
    return path


def timed_rows(count: int, unit: str, timings: list[tuple[str, float]]) -> list[dict]:
    """One row per compared path (label, seconds for ``count`` items), printed as a small table;
    ``unit`` names the rate (``examples`` or ``requests``)."""
    rows = [
        {"path": label, "seconds": round(seconds, 3), f"{unit}_per_s": round(count / seconds, 3)}
        for label, seconds in timings
    ]
    for r in rows:
        print(f"  {r['path']:40s} {r['seconds']:8.2f} s  {r[f'{unit}_per_s']:8.2f} {unit}/s")
    return rows
