"""Read a run folder: one result JSON per cell plus ``run.json`` (the task as run). Nothing else."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tasktune.errors import TaskTuneError
from tasktune.evaluation.results import RunResult, read_result

RUN_MANIFEST = "run.json"
# <route>--<backbone_slug>--<protocol>--s<seed>[--o<settings hash>].json, as tasktune.runner.cell_name
# writes them.
CELL_FILE = re.compile(r"^[^.][^/]*--[^/]*--[^/]*--s-?\d+(--o[0-9a-f]{8})?\.json$")


@dataclass(frozen=True)
class RunFolder:
    path: Path
    results: tuple[RunResult, ...]
    manifest: dict[str, Any] | None  # run.json, None for folders written before it existed
    skipped: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (file name, why)

    @property
    def task(self) -> dict[str, Any]:
        return (self.manifest or {}).get("task") or {}

    @property
    def task_name(self) -> str:
        names = sorted({r.info.task for r in self.results})
        return self.task.get("name") or ", ".join(names) or self.path.name

    @property
    def constraints(self) -> dict[str, Any]:
        return dict(self.task.get("constraints") or {})


def load_run(run_dir: Path) -> RunFolder:
    """All cell results of a run folder, sorted by file name. A file that cannot be read is skipped and
    named in the report (one bad file should not hide the others); no readable result is an error."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise TaskTuneError(f"{run_dir}: not a run folder (no such directory)")
    results, skipped = [], []
    for path in sorted(p for p in run_dir.iterdir() if p.is_file() and CELL_FILE.match(p.name)):
        try:
            results.append(read_result(path))
        except (OSError, ValueError, ValidationError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            skipped.append((path.name, first))
    manifest = None
    manifest_path = run_dir / RUN_MANIFEST
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            skipped.append((RUN_MANIFEST, str(err)))
    if not results:
        detail = f" ({len(skipped)} unreadable: {', '.join(n for n, _ in skipped)})" if skipped else ""
        raise TaskTuneError(
            f"{run_dir}: no results to report{detail}; expected files named "
            "<route>--<backbone>--<protocol>--s<seed>.json written by `tasktune run`"
        )
    return RunFolder(run_dir, tuple(results), manifest, tuple(skipped))
