"""Stub adaptations for server tests: deterministic scorers with no model, so the HTTP, batching and
monitoring machinery is tested in milliseconds. Real models are tested in test_mixed.py."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence

import numpy as np

from tasktune.serving.errors import ServingError
from tasktune.serving.pool import ModelPool, Served
from tasktune.task.data import Example
from tasktune.task.spec import parse_task

TOKEN = "s3cret-admin-token-for-tests"


def spec(name: str = "sentiment", labels: Sequence[str] = ("negative", "positive")):
    return parse_task(
        {"name": name, "labels": list(labels), "data": {"test": {"path": "unused.jsonl"}}}, source="<test>"
    )


class StubScorer:
    """Probabilities from a hash of the text (and the version, so versions differ); ``gate`` blocks
    every batch until set, ``delay`` sleeps per batch; ``calls`` counts batches."""

    def __init__(self, num_labels: int = 2, version: int = 1, delay: float = 0.0):
        self.num_labels, self.version, self.delay = num_labels, version, delay
        self.gate = threading.Event()
        self.gate.set()
        self.calls = 0

    def predict_proba(self, batch: Sequence[Example]) -> np.ndarray:
        self.calls += 1
        self.gate.wait(30)
        if self.delay:
            time.sleep(self.delay)
        out = []
        for e in batch:
            h = hashlib.sha256(f"{self.version}:{e.text}".encode()).digest()
            logits = np.frombuffer(h[: self.num_labels], dtype=np.uint8) / 64.0
            p = np.exp(logits - logits.max())
            out.append(p / p.sum())
        return np.array(out)


def reference(n: int = 400, num_labels: int = 2) -> dict:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, num_labels, size=n)
    return {
        "n": n,
        "label_counts": np.bincount(labels, minlength=num_labels).tolist(),
        "confidence": rng.uniform(0.5, 1.0, size=n).round(4).tolist(),
        "length": rng.integers(5, 60, size=n).tolist(),
    }


class StubLoader:
    """A registry stand-in: {(task, version): Served}; refs 'latest', N or 'vN'. ``fail`` makes the
    next load raise as a broken artifact would."""

    def __init__(self, served: list[Served]):
        self.versions = {s.key: s for s in served}
        self.fail: str | None = None
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, task: str, ref: str | int) -> Served:
        self.gate.wait(30)
        if self.fail:
            raise ServingError(409, "load_failed", self.fail)
        known = sorted(v for t, v in self.versions if t == task)
        if not known:
            raise ServingError(404, "load_failed", f"no task {task!r}")
        version = known[-1] if ref == "latest" else int(str(ref).lstrip("v"))
        if (task, version) not in self.versions:
            raise ServingError(404, "load_failed", f"{task} has no version {version}")
        return self.versions[(task, version)]


def served(task: str = "sentiment", version: int = 1, labels=("negative", "positive"), **kw) -> Served:
    scorer = kw.pop("scorer", None) or StubScorer(len(labels), version)
    return Served(
        task=task,
        version=version,
        route="stub",
        kind="prompt",
        spec=spec(task, labels),
        scorer=scorer,
        backbone="stub",
        reference=kw.pop("reference", None) or reference(num_labels=len(labels)),
    )


def stub_pool(*items: Served, active: dict[str, int] | None = None) -> tuple[ModelPool, StubLoader]:
    loader = StubLoader(list(items))
    pool = ModelPool(loader)
    for task in sorted({s.task for s in items}):
        pool.activate(task, (active or {}).get(task, min(v for t, v in loader.versions if t == task)))
    return pool, loader
