"""The training loop's own state and its checkpoints: what a run's future depends on, written
atomically every so often and read back on resume with every way it could fail to match named.

:class:`LoopState` is the loop's counters (JSON in ``state.json``); a checkpoint adds the trained
tensors, the best-so-far tensors, the weight average, optimizer, scheduler and RNG states
(training/checkpoint.py has the folder format). :func:`restore` refuses a checkpoint that would not
continue the same computation: another format, training config, route options, data or set of trained
tensors (ResumeMismatchError, and the runner then retrains the cell).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from tasktune.training.averaging import WeightAverage
from tasktune.training.checkpoint import (
    FORMAT_VERSION,
    flatten_optimizer_state,
    read_folder,
    unflatten_optimizer_state,
    write_folder_atomically,
)
from tasktune.training.config import TrainConfig
from tasktune.training.errors import ResumeMismatchError
from tasktune.training.rng import capture_rng, restore_rng

log = logging.getLogger(__name__)

# Settings that may change between a run and its resumption without changing what it computes.
RESUMABLE_CHANGES = frozenset({"checkpoint_every", "checkpoint_every_seconds", "keep_checkpoints"})


@dataclass
class LoopState:
    """The loop's own counters; JSON in ``state.json`` (the permutation goes to ``rng.safetensors``)."""

    step: int = 0  # optimizer steps completed
    epoch: int = 0  # index of the epoch the next step draws from
    position: int = 0  # examples of this epoch's permutation already consumed
    examples_seen: int = 0
    train_seconds: float = 0.0  # time in training steps (evaluation and checkpoints excluded)
    seconds: float = 0.0  # wall time of the run so far, across resumes
    best_step: int = 0
    best_metric: float | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    evals_without_improvement: int = 0  # the early-stopping counter
    last_eval_step: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    window_loss_sum: float = 0.0  # step losses since the last history entry
    window_steps: int = 0
    finished: str | None = None  # the stop reason once the run is over


def write_checkpoint(
    folder: Path,
    state: LoopState,
    named: list[tuple[str, torch.nn.Parameter]],
    best_tensors: dict[str, torch.Tensor],
    average: WeightAverage | None,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    data_order: torch.Generator,
    permutation: torch.Tensor | None,
    config: TrainConfig,
    fingerprint: dict[str, Any],
    total_steps: int,
) -> Path:
    optim_tensors, optim_meta = flatten_optimizer_state(optimizer.state_dict())
    rng_tensors, rng_meta = capture_rng(data_order)
    if permutation is not None:
        rng_tensors["permutation"] = permutation
    scheduler_state = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    data = {
        "format_version": FORMAT_VERSION,
        "loop": asdict(state),
        "has_permutation": permutation is not None,
        "optimizer": optim_meta,
        "scheduler": scheduler_state,
        "rng": rng_meta,
        "config": config.model_dump(mode="json"),
        "parameters": [{"name": n, "shape": list(p.shape), "dtype": str(p.dtype)} for n, p in named],
        "data": fingerprint,
        "total_steps": total_steps,
        "torch_version": torch.__version__,
    }
    tensor_files = {
        "trainable": {name: p for name, p in named},
        "best": dict(best_tensors),
        "optimizer": optim_tensors,
        "rng": rng_tensors,
    }
    if average is not None:
        tensor_files["average"] = average.tensors
    path = write_folder_atomically(folder, tensor_files, {"state": data})
    log.info("checkpoint written: %s", path)
    return path


def _changes(saved: dict[str, Any], current: dict[str, Any], ignore: frozenset[str] = frozenset()) -> str:
    """``"key: old -> new, ..."`` for the top-level keys that differ (empty when none do)."""
    keys = sorted(
        k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k) and k not in ignore
    )
    return ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys)


def restore(
    folder: Path,
    named: list[tuple[str, torch.nn.Parameter]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    data_order: torch.Generator,
    config: TrainConfig,
    fingerprint: dict[str, Any],
) -> tuple[LoopState, torch.Tensor | None, dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    tensors, json_files = read_folder(folder)
    data = json_files.get("state")
    # A run with averaging also wrote "average"; the training config (compared below) says whether it did.
    wanted = {"trainable", "best", "optimizer", "rng"} | (
        {"average"} if data and data["config"].get("ema_decay") else set()
    )
    missing = wanted - set(tensors)
    if data is None or missing:
        what = sorted(missing) or ["state.json"]
        raise ResumeMismatchError(f"checkpoint {folder} is incomplete (missing {what})")
    if data.get("format_version") != FORMAT_VERSION:
        found = data.get("format_version")
        raise ResumeMismatchError(f"checkpoint {folder} has format {found!r}, expected {FORMAT_VERSION}")
    details = _changes(data["config"], config.model_dump(mode="json"), ignore=RESUMABLE_CHANGES)
    if details:
        raise ResumeMismatchError(f"cannot resume {folder} with a different training config ({details})")
    details = _changes(data["data"].get("setup") or {}, fingerprint.get("setup") or {})
    if details:
        raise ResumeMismatchError(f"cannot resume {folder}: it was trained with other options ({details})")
    if data["data"] != fingerprint:
        which = [k for k in fingerprint if data["data"].get(k) != fingerprint[k]]
        raise ResumeMismatchError(
            f"cannot resume {folder}: the {' and '.join(which)} examples differ from the run's"
        )
    expected = [{"name": n, "shape": list(p.shape), "dtype": str(p.dtype)} for n, p in named]
    if data["parameters"] != expected:
        saved = [(d["name"], d["shape"]) for d in data["parameters"]]
        ours = [(d["name"], d["shape"]) for d in expected]
        raise ResumeMismatchError(
            f"cannot resume {folder}: its trained tensors {saved} do not match the trainable's {ours}"
        )
    with torch.no_grad():
        for name, p in named:
            p.copy_(tensors["trainable"][name])
    template = optimizer.state_dict()
    optimizer.load_state_dict(unflatten_optimizer_state(tensors["optimizer"], data["optimizer"], template))
    scheduler.load_state_dict({**data["scheduler"], "lr_lambdas": [None] * len(optimizer.param_groups)})
    restore_rng(data_order, tensors["rng"], data["rng"])
    permutation = tensors["rng"]["permutation"] if data["has_permutation"] else None
    device = named[0][1].device
    best = {name: t.to(device) for name, t in tensors["best"].items()}
    average = tensors.get("average")
    if average is not None and set(average) != {n for n, _ in named}:
        raise ResumeMismatchError(f"checkpoint {folder}: its weight average holds {sorted(average)}")
    return LoopState(**data["loop"]), permutation, best, average


def write_best(folder: Path, state: LoopState, best: dict[str, torch.Tensor], config: TrainConfig) -> None:
    meta = {
        "step": state.best_step,
        "metric": config.metric,
        "value": state.best_metric,
        "metrics": state.best_metrics,
        "config": config.model_dump(mode="json"),
    }
    write_folder_atomically(folder, {"trainable": best}, {"best": meta})
