"""Results of one evaluation cell, as JSON: everything a report needs, so reports can be regenerated
from stored results alone (no model, no data)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

RESULT_SCHEMA = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunInfo(_Model):
    run_id: str
    created: str
    task: str
    task_hash: str
    # TaskSpec.inputs_hash(): with data_hashes, split and labelled_examples, what a finished cell must
    # match to be reused by a later run (None in results written before it existed).
    inputs_hash: str | None = None
    split: str
    data_hashes: dict[str, str]
    protocol: str
    seed: int
    # Labelled examples the route could use (train + dev of the protocol): 0 for zero-shot. None for
    # results written before it was recorded.
    labelled_examples: int | None = None
    train_limit: int | None = None  # a reduced full-data run: the training subset's size
    route: str
    route_config: dict[str, Any] = Field(default_factory=dict)
    backbone: dict[str, Any] | None = None  # BackboneIdentity.to_dict(), None for backbone-free routes
    device: str
    dtype: str
    versions: dict[str, str]
    git: str | None
    machine: dict[str, Any]


class Timings(_Model):
    fit_seconds: float
    predict_seconds: float
    examples_per_second: float
    peak_memory_mb: float
    trainable_parameters: int = 0
    artifact_bytes: int = 0
    # Single-example latency (one example per call, after one warm-up call): what a user waiting on one
    # prediction sees. None for results written before it was measured.
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None


class Record(_Model):
    """One test example's outcome: where it came from, its label, the prediction and probabilities."""

    row: int
    label: int
    pred: int
    probs: list[float]


class RunResult(_Model):
    schema_version: int = RESULT_SCHEMA
    info: RunInfo
    labels: list[str]
    metrics: dict[str, Any]
    timings: Timings
    records: list[Record]


def write_result(result: RunResult, path: Path) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves a truncated results file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results are ordinary readable files
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(result.model_dump_json(indent=1))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_result(path: Path) -> RunResult:
    return RunResult.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))


def overrides_label(overrides: dict[str, Any] | None) -> str:
    """``{"lora.r": 16, "train.lr": 0.0001}`` → ``"lora.r=16,train.lr=0.0001"`` (sorted, stable)."""
    return ",".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in sorted((overrides or {}).items()))


def cell_group(r: RunResult) -> tuple[str, str | None, str]:
    """(route, backbone, protocol) as comparisons name a result's cell: a reduced full-data run is
    ``full-nN`` and a route run with the user's settings is ``route[option=value,...]`` — never merged
    with the defaults' cell or another setting's."""
    backbone = r.info.backbone.get("name") if r.info.backbone else None
    protocol = r.info.protocol
    if protocol == "full" and r.info.train_limit is not None:
        protocol = f"full-n{r.info.train_limit}"
    route = r.info.route
    label = overrides_label(r.info.route_config.get("overrides"))
    return (f"{route}[{label}]" if label else route, backbone, protocol)
