"""Keeping a fitted route's adaptation in the registry, with its provenance and figures.

The one place where the runner (and later the main job) hands artifacts to the registry, so the
artifact bytes a report shows are the bytes on disk, not an estimate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tasktune.evaluation.results import RunResult, cell_group
from tasktune.registry import Registry
from tasktune.routes.base import Fitted
from tasktune.task.data import Example
from tasktune.task.spec import TaskSpec

SUMMARY_METRICS = ("accuracy", "macro_f1", "ece", "nll")
TASK_FILE = "task.json"  # the task definition, so a server can rebuild the adaptation without task.yaml
REFERENCE_FILE = "reference.json"  # what the evaluation saw: the baseline for drift monitoring
REFERENCE_SAMPLE = 2000


def evaluation_reference(result: RunResult, examples: Sequence[Example] = ()) -> dict:
    """Predicted-label counts, and samples of confidence and input length (characters), on the
    evaluation split: what live traffic is compared against. Samples are capped (evenly spaced rows)
    so a large test set does not bloat the artifact."""
    probs = np.array([r.probs for r in result.records], dtype=np.float64)
    if probs.size == 0:
        return {"n": 0, "label_counts": [0] * len(result.labels), "confidence": [], "length": []}
    pick = np.unique(np.linspace(0, len(probs) - 1, min(len(probs), REFERENCE_SAMPLE)).round().astype(int))
    lengths = []
    if examples:
        by_row = {e.row: e for e in examples}
        for r in (result.records[i] for i in pick):
            e = by_row.get(r.row)
            if e is not None:
                # As the server logs it: a pair is counted as text + newline + pair.
                lengths.append(len(e.text) + (1 + len(e.text_pair) if e.text_pair is not None else 0))
    return {
        "n": len(probs),
        "split": result.info.split,
        "label_counts": np.bincount(probs.argmax(1), minlength=len(result.labels)).tolist(),
        "confidence": [round(float(c), 6) for c in probs.max(1)[pick]],
        "length": lengths,
    }


def register_fitted(
    registry: Registry,
    task: TaskSpec,
    fitted: Fitted,
    result: RunResult,
    *,
    train_hash: str | None,
    examples: Sequence[Example] = (),
) -> tuple[int, int]:
    """Save ``fitted.artifact`` with the task definition and the evaluation reference (``examples``:
    the evaluated examples, for input lengths); returns (version, bytes on disk)."""
    art = fitted.artifact
    if art is None:
        raise ValueError("this route produced no artifact")
    json_files = {
        **(art.get("json_files") or {}),
        TASK_FILE: task.definition(),
        REFERENCE_FILE: evaluation_reference(result, examples),
    }
    metrics = {k: result.metrics[k] for k in SUMMARY_METRICS if k in result.metrics}
    metrics["split"] = result.info.split
    metrics["protocol"] = result.info.protocol
    identity = None
    if result.info.backbone is not None:
        from tasktune.backbones.identity import BackboneIdentity

        identity = BackboneIdentity.from_dict(result.info.backbone)
    # Learning curves and search tables stay in the results file; the manifest keeps the settings.
    route_config = {k: v for k, v in fitted.config.items() if k not in ("learning_curve", "search_top")}
    version = registry.save(
        task.name,
        art["kind"],
        backbone=identity,
        route=result.info.route,
        tensors=art.get("tensors"),
        json_files=json_files,
        route_config=route_config,
        metrics=metrics,
        task_hash=task.spec_hash(),
        data_hash=train_hash,
        seed=result.info.seed,
        run_id=result.info.run_id,
    )
    return version, registry.show(task.name, version).bytes


def candidate_result(
    results: list[RunResult], route: str, backbone: str | None, protocol: str
) -> RunResult | None:
    """The seed whose registered version to alias ``candidate`` for a recommended (route, backbone,
    protocol) cell: of its seeds, the one with the best *dev* score of the weights it stored (never
    chosen on test), else the first seed. After WiSE-FT the stored weights are the interpolated ones,
    so their dev score (``interpolated_dev``) counts, not the best training step's."""

    cell = [
        r
        for r in results
        if cell_group(r) == (route, backbone, protocol) and "registry_version" in r.info.route_config
    ]
    if not cell:
        return None

    def dev_score(r: RunResult) -> float:  # on the dev metric the seed's training selected by
        dev = r.info.route_config.get("interpolated_dev") or r.info.route_config.get("best_dev") or {}
        metric = r.info.route_config.get("selected_on") or "accuracy"
        return float(dev.get(metric, dev.get("accuracy", float("-inf"))))

    return max(sorted(cell, key=lambda r: r.info.seed), key=dev_score)


def candidate_version(
    results: list[RunResult], route: str, backbone: str | None, protocol: str
) -> int | None:
    """The registry version :func:`candidate_result` registered, or None."""
    chosen = candidate_result(results, route, backbone, protocol)
    return None if chosen is None else int(chosen.info.route_config["registry_version"])
