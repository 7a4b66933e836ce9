"""The prediction log and feedback (R20): one SQLite row per answered text, feedback keyed by the
request id and item, live accuracy computed from the log itself.

SQLite in WAL mode through the standard library: one writer at a time is all a single server needs,
readers (the dashboard, /metrics) never block it, and the file can be copied and queried offline.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    request_id TEXT NOT NULL,
    item INTEGER NOT NULL,
    ts REAL NOT NULL,
    task TEXT NOT NULL,
    version INTEGER NOT NULL,
    arm TEXT,
    input_sha256 TEXT NOT NULL,
    input_chars INTEGER NOT NULL,
    label INTEGER NOT NULL,
    confidence REAL NOT NULL,
    probs TEXT NOT NULL,
    latency_ms REAL NOT NULL,
    PRIMARY KEY (request_id, item)
);
CREATE INDEX IF NOT EXISTS predictions_task ON predictions (task, version, ts);
CREATE TABLE IF NOT EXISTS feedback (
    request_id TEXT NOT NULL,
    item INTEGER NOT NULL,
    label INTEGER NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (request_id, item),
    FOREIGN KEY (request_id, item) REFERENCES predictions (request_id, item)
);
"""


@dataclass(frozen=True)
class LoggedPrediction:
    item: int
    text: str
    label: int
    probs: Sequence[float]


@dataclass(frozen=True)
class FeedbackOutcome:
    recorded: int  # new feedback rows
    unchanged: int  # identical feedback sent again (idempotent)
    conflicts: list[int]  # items whose stored true label differs from the one sent now


def input_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class PredictionLog:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared under a lock: sqlite3 connections are not safe across threads otherwise.
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across crashes of the app
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def log(
        self,
        request_id: str,
        task: str,
        version: int,
        arm: str | None,
        rows: Sequence[LoggedPrediction],
        latency_ms: float,
        ts: float | None = None,
    ) -> None:
        ts = time.time() if ts is None else ts
        values = [
            (
                request_id,
                r.item,
                ts,
                task,
                version,
                arm,
                input_hash(r.text),
                len(r.text),
                int(r.label),
                float(max(r.probs)),
                json.dumps([round(float(p), 6) for p in r.probs]),
                float(latency_ms),
            )
            for r in rows
        ]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO predictions VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", values)
            self._db.execute("COMMIT")

    def prediction(self, request_id: str) -> tuple[str, int, int] | None:
        """(task, version, number of items) of a logged request, None if unknown."""
        with self._lock:
            row = self._db.execute(
                "SELECT task, version, COUNT(*) FROM predictions WHERE request_id = ? GROUP BY task, version",
                (request_id,),
            ).fetchone()
        return None if row is None else (row[0], int(row[1]), int(row[2]))

    def feedback(self, request_id: str, labels: dict[int, int], ts: float | None = None) -> FeedbackOutcome:
        """Record true labels per item; the same label again is a no-op, a different one a conflict
        (nothing is written then: the caller reports it and the first answer stands)."""
        ts = time.time() if ts is None else ts
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                stored = dict(
                    self._db.execute(
                        "SELECT item, label FROM feedback WHERE request_id = ?", (request_id,)
                    ).fetchall()
                )
                conflicts = [i for i, y in labels.items() if i in stored and stored[i] != y]
                if conflicts:
                    self._db.execute("ROLLBACK")
                    return FeedbackOutcome(0, 0, conflicts)
                new = [(request_id, i, y, ts) for i, y in labels.items() if i not in stored]
                self._db.executemany("INSERT INTO feedback VALUES (?,?,?,?)", new)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return FeedbackOutcome(len(new), len(labels) - len(new), [])

    def live_accuracy(self, task: str | None = None) -> list[dict]:
        """Per (task, version): predictions with feedback and how many were right."""
        sql = (
            "SELECT p.task, p.version, COUNT(*), SUM(p.label = f.label) FROM predictions p "
            "JOIN feedback f ON p.request_id = f.request_id AND p.item = f.item"
        )
        args: tuple = ()
        if task is not None:
            sql += " WHERE p.task = ?"
            args = (task,)
        sql += " GROUP BY p.task, p.version ORDER BY p.task, p.version"
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [
            {"task": t, "version": int(v), "n_feedback": int(n), "correct": int(c or 0)}
            for t, v, n, c in rows
        ]

    def recent(self, task: str, version: int, limit: int) -> dict[str, np.ndarray]:
        """The latest ``limit`` predictions of one version: labels, confidences, input lengths."""
        with self._lock:
            rows = self._db.execute(
                "SELECT label, confidence, input_chars FROM predictions WHERE task = ? AND version = ? "
                "ORDER BY ts DESC, request_id, item LIMIT ?",
                (task, version, limit),
            ).fetchall()
        arr = np.array(rows, dtype=np.float64).reshape(-1, 3)
        return {"labels": arr[:, 0].astype(int), "confidence": arr[:, 1], "length": arr[:, 2].astype(int)}

    def label_counts(self, task: str, version: int, num_labels: int) -> list[int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT label, COUNT(*) FROM predictions WHERE task = ? AND version = ? GROUP BY label",
                (task, version),
            ).fetchall()
        counts = [0] * num_labels
        for label, n in rows:
            if 0 <= label < num_labels:
                counts[label] = int(n)
        return counts

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])
