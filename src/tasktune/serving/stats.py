"""What the dashboard and /metrics show per task: traffic, latency, live accuracy per version, the
label mix against the evaluation reference, drift and the A/B verdict — computed on request from the
prediction log (exact) and the in-memory traffic window (cheap)."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime
from typing import Any

from tasktune.serving.abtest import ab_verdict
from tasktune.serving.drift import check_drift
from tasktune.serving.metrics import Metrics
from tasktune.serving.monitor import PredictionLog
from tasktune.serving.pool import ModelPool
from tasktune.serving.settings import ServeSettings
from tasktune.serving.traffic import Traffic


def task_stats(
    task: dict[str, Any], log: PredictionLog, traffic: Traffic, pool: ModelPool, settings: ServeSettings
) -> dict[str, Any]:
    name, active = task["task"], task["active_version"]
    served = pool.active(name)
    num_labels = len(served.labels)
    accuracy = {row["version"]: row for row in log.live_accuracy(name)}
    live_accuracy = []
    for version in task["loaded_versions"]:
        row = accuracy.get(version, {"n_feedback": 0, "correct": 0})
        n = row["n_feedback"]
        live_accuracy.append(
            {"version": version, "n_feedback": n, "accuracy": round(row["correct"] / n, 4) if n else None}
        )
    recent = log.recent(name, active, settings.drift_window)
    drift = check_drift(
        served.reference,
        recent["labels"].tolist(),
        recent["confidence"].tolist(),
        recent["length"].tolist(),
        num_labels,
        alpha=settings.drift_alpha,
        min_live=settings.drift_min_live,
        label_names=list(served.labels),
    )
    ab = None
    if task["ab"] is not None:
        a, b = task["ab"]["a"], task["ab"]["b"]
        arms = log.ab_accuracy(name, a, b, task["ab"]["started"])
        ra, rb = arms["A"], arms["B"]
        verdict = ab_verdict(ra["correct"], ra["n_feedback"], rb["correct"], rb["n_feedback"])
        ab = {**task["ab"], "verdict": verdict.to_dict()}
    traffic_summary, latency = traffic.summary(name)
    return {
        "task": name,
        "backbone": task["backbone"],
        "route": task["route"],
        "active_version": active,
        "labels": task["labels"],
        "traffic": traffic_summary,
        "latency_ms": latency,
        "live_accuracy": live_accuracy,
        "label_mix": {
            "live": [int(c) for c in _bincount(recent["labels"].tolist(), num_labels)],
            "reference": list(served.reference.get("label_counts") or [0] * num_labels),
        },
        "drift": {
            "state": drift.state,
            "alpha": drift.alpha,
            "signals": [x.to_dict() for x in drift.signals],
        },
        "ab": ab,
    }


def _bincount(labels: list[int], n: int) -> list[int]:
    counts = [0] * n
    for y in labels:
        if 0 <= y < n:
            counts[y] += 1
    return counts


def build_stats(
    *,
    pool: ModelPool,
    log: PredictionLog,
    traffic: Traffic,
    settings: ServeSettings,
    started: float,
    queue_depth: int,
    metrics: Metrics | None = None,
) -> dict[str, Any]:
    tasks = [task_stats(t, log, traffic, pool, settings) for t in pool.snapshot()]
    if metrics is not None:  # gauges follow what the dashboard shows
        for t in tasks:
            active = next(a for a in t["live_accuracy"] if a["version"] == t["active_version"])
            if active["accuracy"] is not None:
                metrics.live_accuracy.labels(t["task"]).set(active["accuracy"])
            else:  # no feedback on the version now active: no figure, not the previous version's
                with contextlib.suppress(KeyError):
                    metrics.live_accuracy.remove(t["task"])
            for signal in t["drift"]["signals"]:
                value = {"drift": 1, "ok": 0}.get(signal["state"], -1)
                metrics.drift.labels(t["task"], signal["name"]).set(value)
    return {
        "generated": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "uptime_s": round(time.time() - started, 1),
        "queue": {"depth": queue_depth, "capacity": settings.queue_rows},
        "tasks": tasks,
    }
