"""Recent traffic in memory (what this process served in the last half hour): requests per minute
and latency percentiles per task for the dashboard. Exact, durable figures live in the prediction
log; this is the cheap live view, bounded in memory."""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

WINDOW_S = 30 * 60
MAX_EVENTS = 200_000


class Traffic:
    def __init__(self, window_s: float = WINDOW_S, max_events: int = MAX_EVENTS):
        self.window_s = window_s
        self._events: deque[tuple[float, str, float]] = deque(maxlen=max_events)  # (ts, task, latency ms)
        self._totals: dict[str, int] = {}
        self._lock = threading.Lock()

    def record(self, task: str, latency_ms: float, ts: float | None = None) -> None:
        with self._lock:
            self._events.append((time.time() if ts is None else ts, task, latency_ms))
            self._totals[task] = self._totals.get(task, 0) + 1

    def summary(self, task: str, now: float | None = None) -> tuple[dict, dict]:
        """(traffic, latency) in the shapes /v1/stats publishes."""
        now = time.time() if now is None else now
        with self._lock:
            events = [(t, ms) for t, name, ms in self._events if name == task and t >= now - self.window_s]
            total = self._totals.get(task, 0)
        per_minute: dict[int, list[float]] = {}
        for t, ms in events:
            per_minute.setdefault(int(t // 60) * 60, []).append(ms)
        minutes = sorted(per_minute)
        lat = np.array([ms for _, ms in events]) if events else np.array([])

        def pct(values: np.ndarray, q: float) -> float | None:
            return round(float(np.percentile(values, q)), 3) if values.size else None

        traffic = {"total": total, "per_minute": [{"t": m, "count": len(per_minute[m])} for m in minutes]}
        latency = {
            "p50": pct(lat, 50),
            "p95": pct(lat, 95),
            "p99": pct(lat, 99),
            "per_minute": [
                {"t": m, "p50": pct(np.array(per_minute[m]), 50), "p99": pct(np.array(per_minute[m]), 99)}
                for m in minutes
            ],
        }
        return traffic, latency
