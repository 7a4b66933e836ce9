"""The main job's core: run routes × backbones × seeds of a protocol on a task and keep every result.

Each cell fits a route on the protocol's training/dev examples, evaluates it on the test split through
the shared evaluator and writes ``<out>/<cell>.json``. A finished cell's file is reused unless
``fresh`` (so an interrupted run resumes), and a failure in one cell is recorded and the rest go on.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path
from typing import Any

from tasktune import routes, truncation
from tasktune.backbones.loading import Backbone, load_backbone
from tasktune.errors import TaskTuneError
from tasktune.evaluation.evaluator import build_result, evaluate, member_summary, single_example_latency
from tasktune.evaluation.results import RunInfo, RunResult, overrides_label, read_result, write_result
from tasktune.routes.base import FitContext
from tasktune.routes.overrides import flatten
from tasktune.task.data import Split, load_splits
from tasktune.task.protocols import (
    DEFAULT_K,
    FEW_SHOT_SEEDS,
    ProtocolSplits,
    few_shot,
    full_data,
    zero_shot,
)
from tasktune.task.spec import TaskSpec
from tasktune.training.clock import carried_seconds
from tasktune.training.errors import ResumeMismatchError

log = logging.getLogger(__name__)


@dataclass
class CellFailure:
    cell: str
    error: str


@dataclass
class RunOutcome:
    results: list[RunResult] = field(default_factory=list)
    failures: list[CellFailure] = field(default_factory=list)
    reused: int = 0
    # About the data or the run folder, not a cell's failure: imbalance, leakage, a corrupt cell file.
    warnings: list[str] = field(default_factory=list)


PROTOCOLS = ("zero", "few", "full")


def protocol_splits(
    spec: TaskSpec,
    splits: dict[str, Split],
    protocol: str,
    seed: int,
    *,
    k: int = DEFAULT_K,
    train_limit: int | None = None,
) -> ProtocolSplits:
    if protocol == "zero":
        return zero_shot(seed)
    if "train" not in splits:
        raise TaskTuneError(f"protocol {protocol!r} needs a 'train' split; task {spec.name!r} has none")
    if protocol == "few":
        return few_shot(splits["train"], spec.label_names, k=k, seed=seed)
    if protocol == "full":
        return full_data(
            splits["train"], spec.num_labels, seed=seed, dev=splits.get("dev"), train_limit=train_limit
        )
    raise TaskTuneError(f"unknown protocol {protocol!r}; expected {', '.join(PROTOCOLS)}")


def default_seeds(spec: TaskSpec, protocol: str) -> tuple[int, ...]:
    return FEW_SHOT_SEEDS if protocol == "few" else (spec.seed,)


def backbone_slug(backbone: str | None) -> str:
    """A file-name-safe name: a local folder's own name, a hub id with '/' as '__'."""
    if backbone is None:
        return "none"
    path = Path(backbone)
    name = path.name if path.is_dir() else backbone.replace("/", "__")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "backbone"


def cell_name(
    route: str,
    backbone: str | None,
    protocol: str,
    seed: int,
    train_limit: int | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> str:
    # A reduced full-data run is a different cell from the full one, and a route with the user's
    # settings a different cell from its defaults: neither must ever be reused as the other.
    if protocol == "full" and train_limit is not None:
        protocol = f"full-n{train_limit}"
    name = f"{route}--{backbone_slug(backbone)}--{protocol}--s{seed}"
    label = overrides_label(dict(overrides or {}))
    return f"{name}--o{hashlib.sha256(label.encode()).hexdigest()[:8]}" if label else name


RUN_MANIFEST = "run.json"
WORK_DIR = ".work"  # <out>/.work/<cell>/: checkpoints of cells not finished yet


def _reset_peak_memory() -> None:
    """CUDA's peak counter restarts per cell, so each cell reports its own. (CPU RSS peaks cannot be
    reset: on CPU a cell's figure is the process's peak so far, an upper bound — cells run in order.)"""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def is_main_process() -> bool:
    """False on the other ranks of a data-parallel launch (torchrun / accelerate set RANK, MPI its own)."""
    import os

    for var in ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK"):
        if var in os.environ:
            return os.environ[var] == "0"
    return True


def write_run_manifest(
    out_dir: Path,
    spec: TaskSpec,
    *,
    protocol: str,
    eval_split: str,
    k: int = DEFAULT_K,
    train_size: int | None = None,
    warnings: Sequence[str] = (),
    route_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """``<out>/run.json``: the task as run (labels, constraints, data sources), so that a report can be
    regenerated from the run folder alone, without the task file or the data."""
    import json

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RUN_MANIFEST
    data = {
        "task": spec.model_dump(mode="json"),
        "task_hash": spec.spec_hash(),
        "protocol": protocol,
        "eval_split": eval_split,
        "k": k,
        # Labelled examples a full-data cell uses (train + its dev), for the label budget.
        "train_size": train_size,
        "warnings": list(warnings),  # what `task check` would say about this data (imbalance, leakage)
        "route_options": {r: dict(o) for r, o in (route_options or {}).items()},  # the user's settings
    }
    from tasktune.fsutil import write_text_atomically

    write_text_atomically(path, json.dumps(data, indent=1))  # a report is rebuilt from this file alone
    return path


def check_backbone_name(name: str, *, allow_hub: bool = False) -> None:
    """Raise now for a backbone that is neither embedded, nor a model folder, nor an allowed hub id (the
    load itself, later, may take minutes)."""
    from tasktune.backbones.catalog import get_embedded
    from tasktune.backbones.loading import resolve_folder

    if get_embedded(name) is None and not allow_hub:
        resolve_folder(name)


def backbone_kind(name: str) -> str | None:
    """causal or encoder, without loading weights (an embedded entry, or a folder's config.json);
    None for a hub id, whose config is not fetched just for this."""
    from tasktune.backbones.catalog import get_embedded

    embedded = get_embedded(name)
    if embedded is not None:
        return embedded.kind
    folder = Path(name).expanduser()
    if not (folder / "config.json").is_file():
        return None
    from transformers import AutoConfig

    from tasktune.backbones.loading import infer_kind

    return infer_kind(AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False))


def resolve_route_options(
    route_objs: Sequence[Any],
    options: Mapping[str, Mapping[str, Any]],
    protocol: str,
    backbone_names: Sequence[str],
    n_train: int,
) -> dict[tuple[str, str | None], dict[str, Any]]:
    """The user's settings per (route, backbone), validated now against each backbone's kind, and as
    they take effect: values as the options model reads them (``1e-4`` and ``0.0001`` alike) and
    settings equal to the defaults left out — so equal settings make one cell, not two. Raises for
    options of a route that is not run or takes none, or that its options model refuses."""
    from tasktune.routes.overrides import effective

    names = {r.name: r for r in route_objs}
    resolved: dict[tuple[str, str | None], dict[str, Any]] = {}
    for route_name, overrides in options.items():
        route = names.get(route_name)
        if route is None:
            raise TaskTuneError(
                f"options given for route {route_name!r}, which this run does not include "
                f"(routes: {', '.join(names)})"
            )
        if not hasattr(route, "options"):
            raise TaskTuneError(f"route {route_name!r} takes no options")
        if protocol == "zero" or not overrides:
            continue
        for backbone in backbone_names if route.needs_backbone else [None]:
            kind = backbone_kind(backbone) if backbone else "causal"
            if kind is None:  # a hub model: validated when its cell runs
                resolved[(route_name, backbone)] = flatten(overrides)
                continue
            chosen = route.options(protocol, 13, n_train, kind, overrides)
            defaults = route.options(protocol, 13, n_train, kind, {})
            resolved[(route_name, backbone)] = effective(chosen, defaults, overrides)
    return resolved


def data_warnings(spec: TaskSpec, splits: dict[str, Split]) -> list[str]:
    """`task check`'s warnings for this data (class imbalance, a class absent, train/test overlap): a run
    prints them and keeps them in run.json, so a flattering accuracy is never unexplained."""
    from tasktune.task.check import check_task

    return check_task(spec, k=None, splits=splits).warnings


@dataclass(frozen=True)
class CellInputs:
    """What a cell's result depends on beyond its name (route, backbone, protocol, seed, settings): a
    finished cell is reused only when its result was measured with these same inputs."""

    split: str
    data_hashes: Mapping[str, str]
    labelled_examples: int
    inputs_hash: str

    def differences(self, info: RunInfo) -> list[str]:
        """How a finished cell's inputs differ from this run's (empty: it may be reused). Fields that an
        older result lacks are not compared."""
        found = []
        if info.split != self.split:
            found.append(f"it was evaluated on {info.split!r}, this run evaluates on {self.split!r}")
        # The splits this cell reads (train, dev, the evaluated one): a split added to the task for
        # something else leaves its results valid.
        changed = [n for n in sorted(self.data_hashes) if info.data_hashes.get(n) != self.data_hashes[n]]
        if changed:
            found.append(
                f"the data of {', '.join(repr(n) for n in changed)} differs (changed or added since)"
            )
        if info.labelled_examples is not None and info.labelled_examples != self.labelled_examples:
            found.append(
                f"it used {info.labelled_examples} labelled examples, this run {self.labelled_examples} "
                "(K or the train limit changed)"
            )
        if info.inputs_hash is not None and info.inputs_hash != self.inputs_hash:
            found.append("the task's fields, labels, metric or prompt hints changed since")
        return found


def keep_aside(path: Path, suffix: str) -> Path:
    """Rename ``<cell>.json`` to ``<cell>.json.<suffix>`` (``-2``, ``-3``, ... when that exists: an
    earlier copy kept aside is never overwritten)."""
    aside, n = path.with_name(f"{path.name}.{suffix}"), 2
    while aside.exists():
        aside, n = path.with_name(f"{path.name}.{suffix}-{n}"), n + 1
    path.replace(aside)
    return aside


def reuse_cell(path: Path, outcome: RunOutcome, expected: CellInputs | None = None) -> RunResult | None:
    """A finished cell's result, or None when its file cannot be read or was measured with other inputs
    than ``expected``: that file is kept aside (``.corrupt`` / ``.stale``; not deleted: it may be the only
    copy of hours of work) and the cell reruns."""
    try:
        result = read_result(path)
    except Exception as err:  # a truncated or hand-edited file: any parse or validation error
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return _rerun(path, outcome, "corrupt", f"could not be read ({first})")
    found = expected.differences(result.info) if expected is not None else []
    if found:
        return _rerun(path, outcome, "stale", f"was measured with other inputs ({'; '.join(found)})")
    return result


def _rerun(path: Path, outcome: RunOutcome, suffix: str, why: str) -> None:
    if not is_main_process():  # under a data-parallel launch rank 0 alone moves files
        return None
    aside = keep_aside(path, suffix)
    outcome.warnings.append(f"{path} {why}; kept as {aside.name}, cell rerun")
    log.warning(outcome.warnings[-1])
    return None


def _unique(kind: str, values: Sequence[Any], outcome: RunOutcome) -> tuple[Any, ...]:
    """``values`` in order without repeats: a seed given twice would enter the mean twice."""
    kept = tuple(dict.fromkeys(values))
    for value in dict.fromkeys(v for i, v in enumerate(values) if v in values[:i]):
        outcome.warnings.append(f"{kind} {value!r} was given more than once; it runs once")
    return kept


def run_matrix(
    spec: TaskSpec,
    *,
    route_names: Sequence[str],
    backbone_names: Sequence[str] = (),
    protocol: str = "full",
    seeds: Sequence[int] | None = None,
    out_dir: Path,
    eval_split: str = "test",
    k: int = DEFAULT_K,
    device: str | None = None,
    fresh: bool = False,
    batch_size: int = 32,
    train_limit: int | None = None,
    registry_root: Path | None = None,
    allow_hub: bool = False,
    route_options: Mapping[str, Mapping[str, Any]] | None = None,
    on_cell: Callable[[str, RunResult | None, str | None], None] | None = None,
    on_start: Callable[[str, int, int], None] | None = None,
) -> RunOutcome:
    # Everything a user can get wrong is checked here, before any model is loaded (R1): the data (every
    # row), the protocol, each seed's split (a class too small for K), the route and backbone names.
    splits = load_splits(spec, allow_hub=allow_hub)
    if protocol not in PROTOCOLS:
        raise TaskTuneError(f"unknown protocol {protocol!r}; expected {', '.join(PROTOCOLS)}")
    if train_limit is not None and (protocol != "full" or train_limit < 1):
        raise TaskTuneError(
            f"train limit {train_limit}: expected a positive number of examples, with the full protocol"
        )
    if eval_split in ("train", "dev"):
        # Routes select on dev carved from train (or the task's dev split): scoring there is not a test.
        raise TaskTuneError(
            f"cannot evaluate on {eval_split!r}: routes train or select on it; use a test split"
        )
    if eval_split not in splits:
        raise TaskTuneError(f"task {spec.name!r} has no {eval_split!r} split to evaluate on")
    test = splits[eval_split]
    outcome = RunOutcome()
    bad = [s for s in seeds or () if isinstance(s, bool) or not isinstance(s, Integral) or s < 0]
    if bad:
        raise TaskTuneError(f"seeds {bad}: expected whole numbers >= 0 (e.g. 13, 21, 42)")
    seeds = _unique("seed", seeds, outcome) if seeds else default_seeds(spec, protocol)
    route_names = _unique("route", route_names, outcome)
    backbone_names = _unique("backbone", backbone_names, outcome)
    route_objs = [routes.get_route(r) for r in route_names]
    if any(r.needs_backbone for r in route_objs) and not backbone_names:
        raise TaskTuneError("these routes need a backbone; give at least one (--backbones)")
    for name in backbone_names:
        check_backbone_name(name, allow_hub=allow_hub)
    per_seed = {
        seed: protocol_splits(spec, splits, protocol, seed, k=k, train_limit=train_limit) for seed in seeds
    }
    route_options = dict(route_options or {})
    n_train = len(next(iter(per_seed.values())).train) if per_seed else 0
    settings = resolve_route_options(route_objs, route_options, protocol, backbone_names, n_train)
    train_size = len(splits["train"].examples) if "train" in splits else None
    if protocol == "full":  # what the split uses (train + its dev), whatever the train limit's rounding
        first = next(iter(per_seed.values()))
        train_size = len(first.train) + len(first.dev)
    found_in_data = data_warnings(spec, splits)
    for w in found_in_data:
        log.warning("%s: %s", spec.name, w)
    outcome.warnings.extend(found_in_data)
    if is_main_process():
        write_run_manifest(
            out_dir,
            spec,
            protocol=protocol,
            eval_split=eval_split,
            k=k,
            train_size=train_size,
            warnings=found_in_data,
            route_options=route_options,
        )
    data_hashes = {n: s.content_hash() for n, s in splits.items()}
    used_hashes = {n: h for n, h in data_hashes.items() if n in ("train", "dev", eval_split)}
    inputs_hash = spec.inputs_hash()
    backbones: dict[str, Backbone] = {}
    total = sum(len(backbone_names) if r.needs_backbone else 1 for r in route_objs) * len(seeds)
    started = 0

    for route in route_objs:
        for backbone_name in backbone_names if route.needs_backbone else [None]:
            for seed in seeds:
                overrides = settings.get((route.name, backbone_name), {})
                name = cell_name(route.name, backbone_name, protocol, seed, train_limit, overrides)
                path = out_dir / f"{name}.json"
                # Training checkpoints of an unfinished cell: a rerun of the same command resumes there.
                work_dir = out_dir / WORK_DIR / name
                if fresh and is_main_process():
                    shutil.rmtree(work_dir, ignore_errors=True)
                if on_start:
                    on_start(name, started, total)
                started += 1
                ps = per_seed[seed]
                if path.is_file() and not fresh:
                    expected = CellInputs(eval_split, used_hashes, len(ps.train) + len(ps.dev), inputs_hash)
                    cached = reuse_cell(path, outcome, expected)
                    if cached is not None:
                        if is_main_process():  # checkpoints a crash left after the result was kept
                            shutil.rmtree(work_dir, ignore_errors=True)
                        outcome.results.append(cached)
                        outcome.reused += 1
                        if on_cell:
                            on_cell(name, cached, None)
                        continue
                # The last cell's model goes before this one loads its own: a fine-tuned classifier holds
                # a whole copy of the backbone, and each cell's peak memory must be its own.
                fitted = prediction = None
                try:
                    backbone = None
                    if backbone_name is not None:
                        if backbone_name not in backbones:
                            backbones[backbone_name] = load_backbone(
                                backbone_name, device=device, allow_hub=allow_hub
                            )
                        backbone = backbones[backbone_name]
                    ctx = FitContext(
                        task=spec,
                        train=ps.train,
                        dev=ps.dev,
                        protocol=ps.protocol,
                        seed=seed,
                        backbone=backbone,
                        unlabelled=splits["train"].examples if "train" in splits else (),
                        work_dir=work_dir,
                        options=overrides,
                    )
                    _reset_peak_memory()
                    start = time.perf_counter()
                    try:
                        with carried_seconds() as carried:
                            fitted = route.fit(ctx)
                    except ResumeMismatchError as err:
                        # Checkpoints of an earlier run of this cell with other settings or data
                        # (or from an older tasktune): useless here, so start the cell afresh.
                        outcome.warnings.append(
                            f"{name}: {err}; its checkpoints were removed, cell retrained"
                        )
                        log.warning(outcome.warnings[-1])
                        # Under a data-parallel launch every rank finds the same mismatch (same
                        # settings and data) and only rank 0 deletes. A rank that reads the folder
                        # mid-deletion sees it incomplete or gone and also starts at step 0; the loop
                        # checks that all ranks start from the same step, so no rank can resume alone.
                        if is_main_process():
                            shutil.rmtree(work_dir, ignore_errors=True)
                        start = time.perf_counter()
                        with carried_seconds() as carried:
                            fitted = route.fit(ctx)
                    # A resumed cell: this process's time plus the training its checkpoints hold.
                    fit_seconds = time.perf_counter() - start + carried.seconds
                    truncation.take()  # count only the test set's inputs from here
                    metrics, prediction = evaluate(
                        fitted.scorer, test.examples, batch_size=batch_size, seed=seed
                    )
                    cut = truncation.take()
                    latency = single_example_latency(fitted.scorer, test.examples)
                    result = build_result(
                        task=spec,
                        split_name=eval_split,
                        data_hashes=data_hashes,
                        examples=test.examples,
                        metrics=metrics,
                        prediction=prediction,
                        protocol=protocol,
                        seed=seed,
                        route=route.name,
                        route_config=fitted.config,
                        backbone=backbone.identity if backbone else None,
                        device=str(backbone.device.device) if backbone else "cpu",
                        dtype=backbone.device.dtype_name if backbone else "float64",
                        fit_seconds=fit_seconds,
                        trainable_parameters=fitted.trainable_parameters,
                        artifact_bytes=fitted.artifact_bytes,
                        latency_ms=latency,
                        labelled_examples=len(ps.train) + len(ps.dev),
                        train_limit=train_limit if protocol == "full" else None,
                    )
                    if overrides:
                        result.info.route_config["overrides"] = overrides
                    if prediction.members is not None:  # an ensemble: its gain over its own members
                        result.info.route_config["members_on_test"] = member_summary(
                            test.examples, prediction.members
                        )
                    if carried.loops:
                        result.info.route_config["resumed"] = {
                            "training_loops": carried.loops,
                            "seconds_from_checkpoints": round(carried.seconds, 2),
                        }
                    if cut:  # R2: over-long inputs were cut to the route's limit; say how many
                        result.info.route_config["truncated_test_inputs"] = cut
                        for where, n in cut.items():
                            outcome.warnings.append(
                                f"{name}: {n} of {len(test.examples)} test inputs cut to fit the {where}"
                            )
                    if not is_main_process():  # data-parallel training: rank 0 alone keeps results
                        outcome.results.append(result)
                        continue
                    if registry_root is not None and fitted.artifact is not None:
                        _register(registry_root, spec, splits, fitted, result, test, name, outcome)
                    write_result(result, path)
                    shutil.rmtree(work_dir, ignore_errors=True)  # the result is kept: checkpoints are done
                    outcome.results.append(result)
                except TaskTuneError as err:
                    outcome.failures.append(CellFailure(name, str(err)))
                    if on_cell:
                        on_cell(name, None, str(err))
                except Exception as err:  # one broken cell must not sink the others
                    log.debug("cell %s failed:\n%s", name, traceback.format_exc())
                    outcome.failures.append(CellFailure(name, f"{type(err).__name__}: {err}"))
                    if on_cell:
                        on_cell(name, None, f"{type(err).__name__}: {err}")
                else:  # outside the try: a failing callback is the caller's error, not the cell's
                    if on_cell:
                        on_cell(name, result, None)
    return outcome


def _register(
    registry_root: Path,
    spec: TaskSpec,
    splits: dict[str, Split],
    fitted: Any,
    result: RunResult,
    test: Split,
    name: str,
    outcome: RunOutcome,
) -> None:
    """Register a cell's adaptation. A registry that refuses (locked, disk full, a bad path) costs the
    adaptation, not the measurement: the result is still written, with a warning that says so."""
    from tasktune.adaptations import register_fitted
    from tasktune.registry import Registry

    try:
        with Registry(registry_root) as reg:
            train_hash = splits["train"].content_hash() if "train" in splits else None
            version, size = register_fitted(
                reg, spec, fitted, result, train_hash=train_hash, examples=test.examples
            )
    except Exception as err:
        log.debug("registering %s failed:\n%s", name, traceback.format_exc())
        outcome.warnings.append(
            f"{name}: measured but not registered ({type(err).__name__}: {err}); rerun it with --fresh "
            "once the registry is writable to keep its adaptation"
        )
        log.warning(outcome.warnings[-1])
        return
    result.timings.artifact_bytes = size
    result.info.route_config["registry_version"] = version
