"""The one training loop: prompt tuning and fine-tuning both come through :func:`train`.

Per optimizer step: the next ``batch_size * grad_accum_steps`` examples of this epoch's seeded
permutation (grouped by length when asked: training/batches.py; fewer at an epoch's end — a step never
spans epochs), split into micro-batches whose mean losses are weighted by their share of the step, so
that accumulation equals one big batch; forward under the device's autocast (bf16 on CUDA, fp32 on CPU;
the trained tensors stay fp32); one check that loss and gradient norm are finite (R4), clipping,
optimizer and scheduler step. Then, as due: a learning-curve entry, a dev evaluation (best tensors
kept, early stopping), an atomic checkpoint (R3).

Everything a run's future depends on lives in ``LoopState`` plus the optimizer, scheduler and RNG
states, and all of it goes into the checkpoint (training/resume.py): resuming is "load, then run the
same loop".

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
    latest_checkpoint,
    list_checkpoints,
    prune,
    remove_leftovers,
    step_dir_name,
)
from tasktune.training.clock import add_carried
from tasktune.training.config import TrainConfig
from tasktune.training.errors import DivergenceError, TrainingError
from tasktune.training.protocol import Trainable
from tasktune.training.result import HistoryEntry, StopReason, TrainResult
from tasktune.training.resume import LoopState, restore, write_best, write_checkpoint
from tasktune.training.rng import seed_everything
from tasktune.training.schedule import build_optimizer, build_scheduler

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
BEST = "best"


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
    """Train ``trainable``'s parameters; on return they hold the best (by the dev metric) tensors, and
    the trainable is in eval mode (``train_mode(False)``: what follows evaluates or predicts).

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
    total_steps = config.total_steps(n)
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
    state = LoopState()
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
            state, permutation, best_tensors, saved_average = restore(
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
        path = write_checkpoint(
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
                # At the last step the run ends anyway: it ran its full length, it did not stop early.
                if (
                    patience is not None
                    and state.evals_without_improvement >= patience
                    and state.step < total_steps
                ):
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
    trainable.train_mode(False)  # no dropout in whatever evaluates the result next
    if output_dir is not None and backend.is_main_process:
        write_best(Path(output_dir) / BEST, state, best_tensors, config)
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
