"""A sweep of soft-prompt lengths (``tasktune prompt-tune sweep``): the same protocol cells trained at
several prompt lengths, each scored on its own dev sample (what a length should be chosen on) and on
the test split (what it then gives). Lester et al. found length matters less as models grow; on a
135M model it is worth measuring rather than assuming 20."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from tasktune.backbones.loading import Backbone
from tasktune.errors import TaskTuneError
from tasktune.evaluation.evaluator import evaluate
from tasktune.routes.base import FitContext
from tasktune.routes.prompt_tuning.config import default_options
from tasktune.routes.prompt_tuning.route import fit_soft_prompt
from tasktune.runner import protocol_splits
from tasktune.task.data import Split
from tasktune.task.spec import TaskSpec


@dataclass(frozen=True)
class SweepCell:
    length: int
    seed: int
    dev_accuracy: float | None  # the dev-selected checkpoint's score on the cell's dev sample
    test_accuracy: float
    trainable_parameters: int
    fit_seconds: float


@dataclass(frozen=True)
class SweepRow:
    length: int
    seeds: list[int]
    dev_mean: float | None
    test_mean: float
    test_std: float
    trainable_parameters: int
    fit_seconds_mean: float


def sweep_lengths(
    spec: TaskSpec,
    splits: dict[str, Split],
    backbone: Backbone,
    *,
    lengths: Sequence[int],
    seeds: Sequence[int],
    protocol: str = "few",
    depth: str = "shallow",
    init: str = "labels",
    train_limit: int | None = None,
    on_cell: Callable[[SweepCell], None] | None = None,
) -> tuple[list[SweepRow], list[SweepCell]]:
    """Train a soft prompt per (length, seed) with the route's defaults otherwise; ``init="prompt"``
    fixes the length to the zero-shot prompt's, so it cannot be swept."""
    if protocol not in ("few", "full"):
        raise TaskTuneError(f"a length sweep trains prompts: protocol must be few or full, not {protocol!r}")
    if init == "prompt":
        raise TaskTuneError("init 'prompt' has the zero-shot prompt's length; sweep another init")
    if not lengths or min(lengths) < 1:
        raise TaskTuneError(f"lengths must be positive integers, got {list(lengths)}")
    if "test" not in splits:
        raise TaskTuneError(f"task {spec.name!r} has no 'test' split to score the sweep on")
    test = splits["test"].examples
    cells: list[SweepCell] = []
    for length in lengths:
        for seed in seeds:
            ps = protocol_splits(spec, splits, protocol, seed, train_limit=train_limit)
            n_train = len(ps.train)
            # The route's defaults for this start: a causal LM's defaults assume the prompt start (lr 3e-3,
            # start evaluated), which a label/vocab/text/random start must not inherit.
            options = default_options(protocol, depth, seed, n_train, backbone.kind, from_prompt=False)
            options = options.model_copy(update={"num_virtual_tokens": int(length), "init": init})
            ctx = FitContext(spec, ps.train, ps.dev, protocol, seed, backbone)
            t0 = time.perf_counter()
            trainable, result = fit_soft_prompt(ctx, options, seed)
            fit_seconds = time.perf_counter() - t0
            metrics, _ = evaluate(trainable, test, batch_size=options.eval_batch_size)
            cell = SweepCell(
                length=int(length),
                seed=seed,
                dev_accuracy=result.best_metrics.get("accuracy"),
                test_accuracy=float(metrics.accuracy),
                trainable_parameters=sum(p.numel() for _, p in trainable.parameters()),
                fit_seconds=round(fit_seconds, 2),
            )
            cells.append(cell)
            if on_cell is not None:
                on_cell(cell)
    return rows_of(cells), cells


def rows_of(cells: Sequence[SweepCell]) -> list[SweepRow]:
    """One row per length (in the order the lengths first appear), over the cells of that length; also
    merges the cells of several sweeps of one backbone (bench/length_sweep.py --collect)."""
    lengths = list(dict.fromkeys(c.length for c in cells))
    return [
        _row(length, sorted((c for c in cells if c.length == length), key=lambda c: c.seed))
        for length in lengths
    ]


def _row(length: int, cells: list[SweepCell]) -> SweepRow:
    test = np.array([c.test_accuracy for c in cells])
    dev = [c.dev_accuracy for c in cells if c.dev_accuracy is not None]
    return SweepRow(
        length=int(length),
        seeds=[c.seed for c in cells],
        dev_mean=float(np.mean(dev)) if dev else None,
        test_mean=float(test.mean()),
        test_std=float(test.std(ddof=1)) if len(test) > 1 else 0.0,
        trainable_parameters=cells[0].trainable_parameters,
        fit_seconds_mean=float(np.mean([c.fit_seconds for c in cells])),
    )


def to_json(rows: list[SweepRow], cells: list[SweepCell]) -> dict:
    return {"rows": [asdict(r) for r in rows], "cells": [asdict(c) for c in cells]}
