"""The one training loop: prompt tuning and fine-tuning both come through :func:`train`.

Per optimizer step: the next ``batch_size * grad_accum_steps`` examples of this epoch's seeded
permutation (grouped by length when asked: training/batches.py; fewer at an epoch's end — a step never
spans epochs), split into micro-batches whose mean losses are weighted by their share of the step, so
that accumulation equals one big batch; forward under the device's autocast (bf16 on CUDA, fp32 on CPU;
the trained tensors stay fp32); one check that loss and gradient norm are finite (R4), clipping,
optimizer and scheduler step. Then, as due: a learning-curve entry, a dev evaluation (best tensors
kept, early stopping), an atomic checkpoint (R3).

Everything a run's future depends on lives in :class:`_LoopState` plus the optimizer, scheduler and RNG
states, and all of it goes into the checkpoint: resuming is "load, then run the same loop".

Under ``accelerate launch`` / torchrun the same loop runs on every rank through a :class:`Backend`
(:func:`select_backend` picks it): each rank draws the same permutation, trains on its slice of each
micro-batch, gradients are summed over ranks, and only the main process writes checkpoints and ``best/``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tasktune.backbones.device import DeviceChoice
from tasktune.task.data import Example, hash_examples
from tasktune.training.averaging import WeightAverage
from tasktune.training.backend import Backend, select_backend
from tasktune.training.batches import epoch_order, text_sizes
from tasktune.training.checkpoint import (
    FORMAT_VERSION,
    flatten_optimizer_state,
    latest_checkpoint,
    list_checkpoints,
    prune,
    read_folder,
    remove_leftovers,
    step_dir_name,
    unflatten_optimizer_state,
    write_folder_atomically,
)
from tasktune.training.clock import add_carried
from tasktune.training.config import TrainConfig
from tasktune.training.errors import DivergenceError, ResumeMismatchError, TrainingError
from tasktune.training.protocol import Trainable
from tasktune.training.result import HistoryEntry, StopReason, TrainResult
from tasktune.training.rng import capture_rng, restore_rng, seed_everything
from tasktune.training.schedule import build_optimizer, build_scheduler

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
BEST = "best"
# Settings that may change between a run and its resumption without changing what it computes.
_RESUMABLE_CHANGES = frozenset({"checkpoint_every", "checkpoint_every_seconds", "keep_checkpoints"})


@dataclass
class _LoopState:
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


def train(
    trainable: Trainable,
    train_examples: Sequence[Example],
    dev_examples: Sequence[Example],
    config: TrainConfig,
    device: DeviceChoice,
    *,
    output_dir: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    backend: Backend | None = None,
    setup: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``trainable``'s parameters; on return they hold the best (by the dev metric) tensors.

    ``output_dir`` receives ``checkpoints/step-N/`` every ``config.checkpoint_every`` steps and at the
    end, and ``best/`` at the end. ``resume=True`` continues from the latest checkpoint there (or starts
    afresh if there is none) and ends with the same tensors as an uninterrupted run. Raises
    :class:`DivergenceError` on a non-finite loss, gradient norm or dev metric, leaving the last
    checkpoint as it was. ``setup`` (JSON data) describes what built the trainable beyond its tensors'
    names and shapes — a route's options: a checkpoint written under another setup is not resumed.
    """
    backend = backend if backend is not None else select_backend(device)
    if len(train_examples) == 0:
        raise TrainingError("no training examples")
    named = _checked_parameters(trainable, device)
    params = [p for _, p in named]
    if (config.checkpoint_every or config.checkpoint_every_seconds) and output_dir is None:
        every = config.checkpoint_every or f"{config.checkpoint_every_seconds} s"
        raise TrainingError(f"checkpoints every {every} need an output_dir to write to")
    if resume and output_dir is None:
        raise TrainingError("resume=True needs the output_dir of the run to resume")
    ckpt_root = Path(output_dir) / CHECKPOINTS if output_dir is not None else None

    n = len(train_examples)
    examples_per_step = config.batch_size * config.grad_accum_steps
    steps_per_epoch = math.ceil(n / examples_per_step)
    total_steps = config.max_steps if config.max_steps is not None else config.epochs * steps_per_epoch
    warmup = config.warmup_for(total_steps)
    if warmup >= total_steps:
        raise TrainingError(f"warmup of {warmup} steps is not shorter than the run ({total_steps} steps)")
    fingerprint: dict[str, Any] = {"train": hash_examples(train_examples), "dev": hash_examples(dev_examples)}
    if setup is not None:
        fingerprint["setup"] = setup
    sizes = text_sizes(train_examples) if config.group_by_length else None

    seed_everything(config.seed)
    data_order = torch.Generator().manual_seed(config.seed)
    optimizer = build_optimizer(named, config)
    scheduler = build_scheduler(optimizer, config, total_steps)
    state = _LoopState()
    permutation: torch.Tensor | None = None
    best_tensors: dict[str, torch.Tensor] = {}
    saved_average: dict[str, torch.Tensor] | None = None
    last_checkpoint: Path | None = None
    resumed_from: int | None = None

    if ckpt_root is not None:
        if backend.is_main_process:  # the only writer; another rank must not delete its temp folders
            remove_leftovers(ckpt_root)
        latest = latest_checkpoint(ckpt_root)
        if latest is not None and not resume:
            raise TrainingError(
                f"{ckpt_root} already holds checkpoints of a run; pass resume=True to continue it "
                "or choose an empty output folder"
            )
        if latest is not None:
            state, permutation, best_tensors, saved_average = _restore(
                latest, named, optimizer, scheduler, data_order, config, fingerprint
            )
            last_checkpoint, resumed_from = latest, state.step
            add_carried(state.seconds)  # the runner's fit time starts at the resume
            log.info("resuming from %s (step %d of %d)", latest, state.step, total_steps)
        elif resume:
            log.info("no checkpoint in %s: starting from scratch", ckpt_root)
    # Data parallel training is only correct if every rank walks the same data from the same point.
    backend.check_same("the training and dev examples", f"{fingerprint['train']}/{fingerprint['dev']}")
    backend.check_same("the training config", config.model_dump_json())
    backend.check_same("the step to resume from (is the output folder shared?)", str(state.step))
    backend.broadcast_parameters(params)  # one start for all ranks (equal already when resumed)
    # Started after the broadcast, so it is the same on every rank.
    average = WeightAverage(named, config.ema_decay) if config.ema_decay is not None else None
    if average is not None and saved_average is not None:
        average.load(saved_average)

    last_saved_at = time.monotonic()  # for checkpoint_every_seconds: the run's start, or its resume

    def save_checkpoint() -> Path | None:
        if ckpt_root is None or not backend.is_main_process:
            return None
        path = _write_checkpoint(
            ckpt_root / step_dir_name(state.step),
            state,
            named,
            best_tensors,
            average,
            optimizer,
            scheduler,
            data_order,
            permutation,
            config,
            fingerprint,
            total_steps,
        )
        prune(ckpt_root, config.keep_checkpoints)
        return path

    def add_history(lr: float, dev: dict[str, float] | None = None) -> None:
        if state.history and state.history[-1]["step"] == state.step:
            if dev is not None:  # a log entry and an evaluation at the same step: one entry
                state.history[-1]["dev"] = dev
            return
        loss = state.window_loss_sum / state.window_steps if state.window_steps else None
        # The epoch this step drew from (state.epoch already points at the next one after an epoch's end).
        epoch = state.epoch - 1 if state.position == 0 and state.step > 0 else state.epoch
        entry = HistoryEntry(state.step, epoch, loss, lr, round(state.seconds, 3), dev)
        state.history.append(entry.to_dict())
        state.window_loss_sum, state.window_steps = 0.0, 0

    def evaluate(lr: float) -> None:
        # With averaging, the average is what is evaluated and kept; training goes on from its own tensors.
        with average.swapped_in(named) if average is not None else nullcontext():
            trainable.train_mode(False)
            with torch.no_grad(), device.autocast():
                metrics = {k: float(v) for k, v in trainable.evaluate(dev_examples).items()}
            metrics = backend.broadcast_metrics(metrics)
            trainable.train_mode(True)
            if config.metric not in metrics:
                raise TrainingError(
                    f"the trainable's evaluate() returned no {config.metric!r} (the config's metric); "
                    f"it returned {sorted(metrics)}"
                )
            value = metrics[config.metric]
            if not math.isfinite(value):
                raise DivergenceError(state.step, f"dev metric {config.metric!r}", value, last_checkpoint)
            state.last_eval_step = state.step
            if state.best_metric is None or value > state.best_metric:
                state.best_metric, state.best_step, state.best_metrics = value, state.step, metrics
                state.evals_without_improvement = 0
                best_tensors.clear()
                best_tensors.update({name: p.detach().clone() for name, p in named})
            else:
                state.evals_without_improvement += 1
        add_history(lr, metrics)

    stop_reason: StopReason = "epochs" if config.epochs is not None else "max_steps"
    has_dev = len(dev_examples) > 0
    lr = optimizer.param_groups[0]["lr"]
    clock = time.perf_counter()
    seconds_at_start = state.seconds

    def tick() -> None:
        state.seconds = seconds_at_start + time.perf_counter() - clock

    was_finished = state.finished is not None  # resumed from the end checkpoint of a finished run
    trainable.train_mode(True)
    with _progress_bar(progress and backend.is_main_process) as bar:
        task = bar.add_task("training", total=total_steps, completed=state.step, info="")
        if has_dev and config.eval_at_start and state.step == 0 and state.last_eval_step is None:
            # The untrained state competes for "best" too: when it starts from a working classifier
            # (a prompt, a calibrated verbalizer), training can then only be chosen if dev says it helps.
            evaluate(lr)
        while state.finished is None and state.step < total_steps:
            if permutation is None:  # a new order every epoch
                permutation = epoch_order(n, examples_per_step, data_order, sizes)
                state.position = 0
            take = min(examples_per_step, n - state.position)
            indices = permutation[state.position : state.position + take].tolist()
            lr = optimizer.param_groups[0]["lr"]
            started = time.perf_counter()
            backend.begin_step(config.seed, state.step)
            step_loss, grad_norm = _optimizer_step(
                trainable, [train_examples[i] for i in indices], params, optimizer, config, device, backend
            )
            # Checked before anything is applied: the trainable keeps the last good step's tensors.
            step_number = state.step + 1
            if not math.isfinite(step_loss):
                raise DivergenceError(step_number, "loss", step_loss, last_checkpoint)
            if not math.isfinite(grad_norm):
                raise DivergenceError(step_number, "gradient norm", grad_norm, last_checkpoint)
            optimizer.step()
            scheduler.step()
            if average is not None:
                average.update(named, step_number)
            state.train_seconds += time.perf_counter() - started
            state.step, state.position = step_number, state.position + take
            state.examples_seen += take
            state.window_loss_sum += step_loss
            state.window_steps += 1
            if state.position >= n:  # epoch done: the next step draws a new permutation
                permutation, state.position, state.epoch = None, 0, state.epoch + 1
            tick()
            if state.step % config.log_every == 0:
                add_history(lr)
                log.debug("step %d loss %.4f lr %.3g", state.step, state.history[-1]["train_loss"] or 0.0, lr)
            if has_dev and config.eval_every is not None and state.step % config.eval_every == 0:
                evaluate(lr)
                patience = config.early_stopping_patience
                if patience is not None and state.evals_without_improvement >= patience:
                    state.finished = stop_reason = "early_stopping"
            tick()
            due = config.checkpoint_every is not None and state.step % config.checkpoint_every == 0
            if config.checkpoint_every_seconds is not None:
                due = due or time.monotonic() - last_saved_at >= config.checkpoint_every_seconds
            if (
                due
                and state.finished is None
                and state.step < total_steps  # the end checkpoint follows the final evaluation
            ):
                last_checkpoint = save_checkpoint() or last_checkpoint
                last_saved_at = time.monotonic()
            info = f"loss {step_loss:.4f}"
            if state.best_metric is not None:
                info += f" | best {config.metric} {state.best_metric:.4f} @ {state.best_step}"
            bar.update(task, completed=state.step, info=info)

        if state.finished is None:  # ran its full length
            if has_dev and state.last_eval_step != state.step:
                evaluate(lr)
            if state.window_steps:  # the tail of the learning curve
                add_history(lr)
            state.finished = stop_reason
            tick()
        if not was_finished and ckpt_root is not None:  # the end state, so that resume=True is a no-op
            last_checkpoint = save_checkpoint() or last_checkpoint

    stop_reason = state.finished  # type: ignore[assignment]  # set above; restored runs carry theirs
    if not has_dev:  # nothing to choose by: the final tensors are the result
        state.best_step = state.step
        final = average.tensors if average is not None else {name: p.detach() for name, p in named}
        best_tensors = {name: t.clone() for name, t in final.items()}
    with torch.no_grad():
        for name, p in named:
            p.copy_(best_tensors[name])
    if output_dir is not None and backend.is_main_process:
        _write_best(Path(output_dir) / BEST, state, best_tensors, config)
    backend.barrier()  # on return, every rank finds the end checkpoint and best/ on disk

    return TrainResult(
        metric=config.metric,
        best_step=state.best_step,
        best_metric=state.best_metric,
        best_metrics=dict(state.best_metrics),
        final_step=state.step,
        stopped=stop_reason,
        history=tuple(HistoryEntry.from_dict(h) for h in state.history),
        seconds=state.seconds,
        examples_per_second=state.examples_seen / state.train_seconds if state.train_seconds > 0 else 0.0,
        trainable_parameter_count=sum(p.numel() for p in params),
        output_dir=Path(output_dir) if output_dir is not None else None,
        resumed_from_step=resumed_from,
    )


def _optimizer_step(
    trainable: Trainable,
    batch: list[Example],
    params: list[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    device: DeviceChoice,
    backend: Backend,
) -> tuple[float, float]:
    """Forward/backward over the step's micro-batches and clip; returns (step loss, gradient norm)
    with one host sync. Does not call ``optimizer.step()``: the caller checks the numbers first."""
    optimizer.zero_grad(set_to_none=True)
    step_loss = torch.zeros((), device=device.device)
    for start in range(0, len(batch), config.batch_size):
        micro = backend.shard(batch[start : start + config.batch_size])
        if not micro:  # a micro-batch smaller than the number of ranks: this rank's share is zero
            continue
        with device.autocast():
            loss = trainable.loss(micro)
        if loss.dim() != 0:
            raise TrainingError(f"the trainable's loss() must return a scalar, got shape {tuple(loss.shape)}")
        # Weighting each micro-batch mean by its share of the step makes the accumulated gradient that of
        # the mean over the whole step, even when the last micro-batch is smaller. ``len(batch)`` is the
        # global step: under data parallelism each rank's gradient is its part of a sum over ranks.
        weighted = loss.float() * (len(micro) / len(batch))
        backend.backward(weighted)
        step_loss += weighted.detach()
    backend.reduce_gradients(params)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        raise TrainingError("the loss does not depend on any trainable parameter (no gradients)")
    if config.max_grad_norm is not None:
        norm = torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
    else:  # no clipping, but the norm is still needed to catch a non-finite gradient (R4)
        norm = torch.nn.utils.get_total_norm(grads)
    step_loss = backend.reduce_sum(step_loss)  # each rank holds its share of the step's mean
    loss_value, norm_value = torch.stack([step_loss, norm.to(step_loss.device).float()]).tolist()
    return loss_value, norm_value


def _checked_parameters(trainable: Trainable, device: DeviceChoice) -> list[tuple[str, torch.nn.Parameter]]:
    named = list(trainable.parameters())
    if not named:
        raise TrainingError("the trainable has no parameters to train")
    names = [name for name, _ in named]
    if len(set(names)) != len(names):
        raise TrainingError(f"trainable parameter names are not unique: {sorted(names)}")
    for name, p in named:
        if not p.requires_grad:
            raise TrainingError(f"trainable parameter {name!r} has requires_grad=False")
        if p.dtype != torch.float32:
            # bf16 belongs in the forward pass (autocast); trained tensors kept in bf16 lose small updates.
            raise TrainingError(f"trainable parameter {name!r} is {p.dtype}; trained tensors must be float32")
        if p.device.type != device.device.type:
            raise TrainingError(
                f"trainable parameter {name!r} is on {p.device}, training runs on {device.device}"
            )
    return named


# --- checkpoints ------------------------------------------------------------------------------------
def _write_checkpoint(
    folder: Path,
    state: _LoopState,
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


def _restore(
    folder: Path,
    named: list[tuple[str, torch.nn.Parameter]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    data_order: torch.Generator,
    config: TrainConfig,
    fingerprint: dict[str, Any],
) -> tuple[_LoopState, torch.Tensor | None, dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
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
    details = _changes(data["config"], config.model_dump(mode="json"), ignore=_RESUMABLE_CHANGES)
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
    return _LoopState(**data["loop"]), permutation, best, average


def _write_best(folder: Path, state: _LoopState, best: dict[str, torch.Tensor], config: TrainConfig) -> None:
    meta = {
        "step": state.best_step,
        "metric": config.metric,
        "value": state.best_metric,
        "metrics": state.best_metrics,
        "config": config.model_dump(mode="json"),
    }
    write_folder_atomically(folder, {"trainable": best}, {"best": meta})


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(stderr=True),
        disable=not enabled,
    )


def checkpoints_of(output_dir: Path) -> list[Path]:
    """The complete checkpoints of a run's output folder, oldest first."""
    return [path for _, path in list_checkpoints(Path(output_dir) / CHECKPOINTS)]
