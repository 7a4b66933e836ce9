"""Prometheus metrics with bounded label sets (R22): the ``task`` label only ever takes the name of a
task this server serves, or ``other`` — an unknown name in a request never creates a series."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

OTHER = "other"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self, known_tasks: Callable[[], list[str]]):
        self.known_tasks = known_tasks
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "tasktune_requests",
            "Prediction requests answered, by task and HTTP status",
            ["task", "status"],
            registry=r,
        )
        self.texts = Counter("tasktune_texts", "Texts classified, by task", ["task"], registry=r)
        self.latency = Histogram(
            "tasktune_request_latency_seconds",
            "Time from request to answer",
            ["task"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.feedback = Counter("tasktune_feedback", "True labels received, by task", ["task"], registry=r)
        self.batch_rows = Histogram(
            "tasktune_batch_rows",
            "Texts per micro-batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.queue_rows = Gauge("tasktune_queue_rows", "Texts waiting in the batch queue", registry=r)
        self.live_accuracy = Gauge(
            "tasktune_live_accuracy",
            "Accuracy on predictions with feedback, active version",
            ["task"],
            registry=r,
        )
        self.drift = Gauge(
            "tasktune_drift",
            "Drift state per signal: 1 drift, 0 ok, -1 insufficient data",
            ["task", "signal"],
            registry=r,
        )

    def task_label(self, task: str | None) -> str:
        return task if task is not None and task in self.known_tasks() else OTHER

    def render(self) -> bytes:
        return generate_latest(self.registry)
