"""The shared evaluator: runs any :class:`Scorer` over a split in batches, times it, computes the
metrics and keeps one record per example."""

from __future__ import annotations

import resource
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tasktune.evaluation.metrics import Metrics, compute_metrics
from tasktune.evaluation.results import Record, RunInfo, RunResult, Timings
from tasktune.evaluation.scorer import MemberScorer, Scorer, check_probabilities
from tasktune.provenance import git_revision, machine_info, package_versions, utc_now
from tasktune.task.data import Example, text_chars


@dataclass
class Prediction:
    probs: np.ndarray  # (N, L)
    seconds: float
    members: np.ndarray | None = None  # (N, M, L): an ensemble's members, each on every example

    @property
    def labels(self) -> np.ndarray:
        return self.probs.argmax(axis=1)


def length_order(examples: Sequence[Example]) -> np.ndarray:
    """Indices of ``examples``, longest text first: batches of similar lengths carry little padding
    (a third of the work on SST-2 sentences in arrival order). Characters stand in for tokens, so any
    scorer can be batched this way; each example's answer does not depend on its batch-mates."""
    sizes = np.array(text_chars(examples))
    return np.argsort(-sizes, kind="stable")


def predict(
    scorer: Scorer, examples: Sequence[Example], *, batch_size: int = 32, progress=None
) -> Prediction:
    """Probabilities for every example (in the given order), computed in length-sorted batches.
    ``progress(n_done)`` is called after each batch."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = length_order(examples)
    probs = np.zeros((len(examples), scorer.num_labels))
    members: np.ndarray | None = None
    who = type(scorer).__name__
    start = time.perf_counter()
    for i in range(0, len(examples), batch_size):
        idx = order[i : i + batch_size]
        batch = [examples[j] for j in idx]
        if isinstance(scorer, MemberScorer):  # the same pass, kept per member as well
            per_member = np.asarray(scorer.predict_member_proba(batch), dtype=np.float64)
            if members is None:
                members = np.zeros((len(examples), per_member.shape[1], scorer.num_labels))
            for m in range(per_member.shape[1]):
                check_probabilities(per_member[:, m], len(batch), scorer.num_labels, f"{who} member {m}")
            members[idx] = per_member
            probs[idx] = check_probabilities(per_member.mean(axis=1), len(batch), scorer.num_labels, who)
        else:
            probs[idx] = check_probabilities(scorer.predict_proba(batch), len(batch), scorer.num_labels, who)
        if progress is not None:
            progress(min(i + batch_size, len(examples)))
    return Prediction(probs, time.perf_counter() - start, members)


def member_summary(examples: Sequence[Example], members: np.ndarray) -> dict:
    """Each ensemble member's accuracy on ``examples`` beside the ensemble's (mean probability), and
    the gain over the members' mean and over the best member (chosen here, on these examples: an
    oracle, so the harder bar)."""
    y = np.array([e.label for e in examples], dtype=np.int64)
    each = [float((members[:, m].argmax(1) == y).mean()) for m in range(members.shape[1])]
    ensemble = float((members.mean(axis=1).argmax(1) == y).mean())
    return {
        "member_accuracy": [round(a, 6) for a in each],
        "ensemble_accuracy": round(ensemble, 6),
        "gain_over_member_mean": round(ensemble - float(np.mean(each)), 6),
        "gain_over_best_member": round(ensemble - max(each), 6),
    }


def peak_memory_mb() -> float:
    """Peak resident memory of this process (CPU), or peak CUDA allocation when on a GPU."""
    import torch

    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return torch.cuda.max_memory_allocated() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def single_example_latency(
    scorer: Scorer, examples: Sequence[Example], *, samples: int = 20
) -> tuple[float, float]:
    """(p50, p95) milliseconds of one-example calls over the first ``samples`` examples, after one
    warm-up call (first calls pay for lazy allocation and caches, which a long-running server does not)."""
    if not examples:
        raise ValueError("no examples to time")
    chosen = list(examples[: max(1, samples)])
    scorer.predict_proba(chosen[:1])
    times = []
    for e in chosen:
        start = time.perf_counter()
        scorer.predict_proba([e])
        times.append((time.perf_counter() - start) * 1000)
    p50, p95 = np.percentile(times, [50, 95])
    return float(p50), float(p95)


def evaluate(
    scorer: Scorer,
    examples: Sequence[Example],
    *,
    batch_size: int = 32,
    seed: int = 0,
    progress=None,
) -> tuple[Metrics, Prediction]:
    if not examples:
        raise ValueError("nothing to evaluate: the split is empty")
    pred = predict(scorer, examples, batch_size=batch_size, progress=progress)
    y_true = np.array([e.label for e in examples], dtype=np.int64)
    return compute_metrics(y_true, pred.probs, seed=seed), pred


def build_result(
    *,
    task,
    split_name: str,
    data_hashes: dict[str, str],
    examples: Sequence[Example],
    metrics: Metrics,
    prediction: Prediction,
    protocol: str,
    seed: int,
    route: str,
    route_config: dict | None = None,
    backbone=None,
    device: str = "cpu",
    dtype: str = "float32",
    fit_seconds: float = 0.0,
    trainable_parameters: int = 0,
    artifact_bytes: int = 0,
    latency_ms: tuple[float, float] | None = None,
    labelled_examples: int | None = None,
    train_limit: int | None = None,
) -> RunResult:
    n = len(examples)
    info = RunInfo(
        run_id=uuid.uuid4().hex[:12],
        created=utc_now(),
        task=task.name,
        task_hash=task.spec_hash(),
        inputs_hash=task.inputs_hash(),
        split=split_name,
        data_hashes=data_hashes,
        protocol=protocol,
        seed=seed,
        labelled_examples=labelled_examples,
        train_limit=train_limit,
        route=route,
        route_config=route_config or {},
        backbone=backbone.to_dict() if backbone is not None else None,
        device=device,
        dtype=dtype,
        versions=package_versions(),
        git=git_revision(),
        machine=machine_info(),
    )
    timings = Timings(
        fit_seconds=fit_seconds,
        predict_seconds=prediction.seconds,
        examples_per_second=n / prediction.seconds if prediction.seconds > 0 else float("inf"),
        peak_memory_mb=peak_memory_mb(),
        trainable_parameters=trainable_parameters,
        artifact_bytes=artifact_bytes,
        latency_p50_ms=round(latency_ms[0], 3) if latency_ms else None,
        latency_p95_ms=round(latency_ms[1], 3) if latency_ms else None,
    )
    records = [
        Record(row=e.row, label=e.label, pred=int(p.argmax()), probs=[round(float(x), 6) for x in p])
        for e, p in zip(examples, prediction.probs, strict=True)
    ]
    return RunResult(
        info=info, labels=task.label_names, metrics=metrics.to_dict(), timings=timings, records=records
    )
