"""The prediction log and feedback (R20): one row per answered text, feedback keyed by the request id
and item, live accuracy computed from the log itself.

Through SQLAlchemy Core, like the registry: by default a SQLite file in WAL mode (one writer at a time
is all a single server needs; readers such as the dashboard and /metrics never block it, and the file
can be copied and queried offline), or any database URL — e.g. one PostgreSQL database shared by
several replicas behind a load balancer, so that feedback sent to any of them finds the prediction and
live accuracy and A/B statistics cover all traffic.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import (
    Column,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    case,
    func,
    select,
)
from sqlalchemy.exc import IntegrityError

from tasktune.errors import TaskTuneError
from tasktune.registry import db

# A database URL for the log, shared by several servers (postgresql+psycopg://user@host/tasktune, its
# driver installed); unset: the SQLite file of --log-db.
URL_ENV = "TASKTUNE_LOG_URL"

tables = MetaData()
predictions = Table(
    "predictions",
    tables,
    Column("request_id", String(64), primary_key=True),
    Column("item", Integer, primary_key=True, autoincrement=False),
    Column("ts", Float, nullable=False),
    Column("task", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("arm", String(64), nullable=True),
    Column("input_sha256", String(64), nullable=False),
    Column("input_chars", Integer, nullable=False),
    Column("label", Integer, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("probs", Text, nullable=False),  # JSON list, 6 decimals
    Column("latency_ms", Float, nullable=False),
    Index("predictions_task", "task", "version", "ts"),
)
feedback = Table(
    "feedback",
    tables,
    Column("request_id", String(64), primary_key=True),
    Column("item", Integer, primary_key=True, autoincrement=False),
    Column("label", Integer, nullable=False),
    Column("ts", Float, nullable=False),
    ForeignKeyConstraint(["request_id", "item"], ["predictions.request_id", "predictions.item"]),
)


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


def log_url(path: Path | str | None = None, url: str | None = None) -> str:
    """The log's database: ``url``, else $TASKTUNE_LOG_URL, else the SQLite file at ``path``."""
    if url or os.environ.get(URL_ENV):
        return url or os.environ[URL_ENV]
    if path is None:
        raise ValueError("a prediction log needs a SQLite path or a database URL")
    return f"sqlite:///{Path(path).absolute()}"


class PredictionLog:
    def __init__(self, target: Path | str):
        """``target``: a database URL (``scheme://...``) or the path of a SQLite file."""
        url = str(target) if "://" in str(target) else log_url(target)
        try:
            if url.startswith("sqlite:///"):
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self.engine = db.make_engine(url, tables, synchronous="NORMAL")
        except Exception as err:  # a bad URL or folder, a missing driver, a server that does not answer
            raise TaskTuneError(f"cannot open the prediction log at {db.redact(url)}: {err}") from err

    def close(self) -> None:
        self.engine.dispose()

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
            {
                "request_id": request_id,
                "item": r.item,
                "ts": ts,
                "task": task,
                "version": version,
                "arm": arm,
                "input_sha256": input_hash(r.text),
                "input_chars": len(r.text),
                "label": int(r.label),
                "confidence": float(max(r.probs)),
                "probs": json.dumps([round(float(p), 6) for p in r.probs]),
                "latency_ms": float(latency_ms),
            }
            for r in rows
        ]
        with db.write_tx(self.engine, serialise=False) as conn:
            conn.execute(predictions.insert(), values)

    def prediction(self, request_id: str) -> tuple[str, int, int] | None:
        """(task, version, number of items) of a logged request, None if unknown."""
        query = (
            select(predictions.c.task, predictions.c.version, func.count())
            .where(predictions.c.request_id == request_id)
            .group_by(predictions.c.task, predictions.c.version)
        )
        with db.read_tx(self.engine) as conn:
            row = conn.execute(query).first()
        return None if row is None else (row[0], int(row[1]), int(row[2]))

    def feedback(self, request_id: str, labels: dict[int, int], ts: float | None = None) -> FeedbackOutcome:
        """Record true labels per item; the same label again is a no-op, a different one a conflict
        (nothing is written then: the caller reports it and the first answer stands)."""
        ts = time.time() if ts is None else ts
        try:
            return self._feedback(request_id, labels, ts)
        except IntegrityError:
            # Another server recorded feedback for one of these items between our read and our
            # insert (PostgreSQL; SQLite's write lock serialises this): read again and decide.
            return self._feedback(request_id, labels, ts)

    def _feedback(self, request_id: str, labels: dict[int, int], ts: float) -> FeedbackOutcome:
        with db.write_tx(self.engine, serialise=False) as conn:
            stored = dict(
                conn.execute(
                    select(feedback.c.item, feedback.c.label).where(feedback.c.request_id == request_id)
                ).all()
            )
            conflicts = [i for i, y in labels.items() if i in stored and stored[i] != y]
            if conflicts:
                return FeedbackOutcome(0, 0, conflicts)
            new = [
                {"request_id": request_id, "item": i, "label": y, "ts": ts}
                for i, y in labels.items()
                if i not in stored
            ]
            if new:
                conn.execute(feedback.insert(), new)
        return FeedbackOutcome(len(new), len(labels) - len(new), [])

    def live_accuracy(self, task: str | None = None) -> list[dict]:
        """Per (task, version): predictions with feedback and how many were right."""
        p, f = predictions.c, feedback.c
        query = (
            select(p.task, p.version, func.count(), func.sum(case((p.label == f.label, 1), else_=0)))
            .select_from(predictions.join(feedback, (p.request_id == f.request_id) & (p.item == f.item)))
            .group_by(p.task, p.version)
            .order_by(p.task, p.version)
        )
        if task is not None:
            query = query.where(p.task == task)
        with db.read_tx(self.engine) as conn:
            rows = conn.execute(query).all()
        return [
            {"task": t, "version": int(v), "n_feedback": int(n), "correct": int(c or 0)}
            for t, v, n, c in rows
        ]

    def ab_accuracy(self, task: str, a: int, b: int, since: float) -> dict[str, dict[str, int]]:
        """Per arm of an A/B test: feedback and correct answers on the requests the test routed (arm
        recorded, at or after ``since``, to that arm's version): not the versions' earlier or pinned
        traffic."""
        p, f = predictions.c, feedback.c
        arm_version = ((p.arm == "A") & (p.version == a)) | ((p.arm == "B") & (p.version == b))
        query = (
            select(p.arm, func.count(), func.sum(case((p.label == f.label, 1), else_=0)))
            .select_from(predictions.join(feedback, (p.request_id == f.request_id) & (p.item == f.item)))
            .where((p.task == task) & (p.ts >= since) & arm_version)
            .group_by(p.arm)
        )
        with db.read_tx(self.engine) as conn:
            rows = conn.execute(query).all()
        out = {arm: {"n_feedback": 0, "correct": 0} for arm in ("A", "B")}
        for arm, n, c in rows:
            out[arm] = {"n_feedback": int(n), "correct": int(c or 0)}
        return out

    def recent(self, task: str, version: int, limit: int) -> dict[str, np.ndarray]:
        """The latest ``limit`` predictions of one version: labels, confidences, input lengths."""
        p = predictions.c
        query = (
            select(p.label, p.confidence, p.input_chars)
            .where((p.task == task) & (p.version == version))
            .order_by(p.ts.desc(), p.request_id, p.item)
            .limit(limit)
        )
        with db.read_tx(self.engine) as conn:
            rows = [tuple(r) for r in conn.execute(query).all()]
        arr = np.array(rows, dtype=np.float64).reshape(-1, 3)
        return {"labels": arr[:, 0].astype(int), "confidence": arr[:, 1], "length": arr[:, 2].astype(int)}

    def label_counts(self, task: str, version: int, num_labels: int) -> list[int]:
        p = predictions.c
        query = (
            select(p.label, func.count()).where((p.task == task) & (p.version == version)).group_by(p.label)
        )
        with db.read_tx(self.engine) as conn:
            rows = conn.execute(query).all()
        counts = [0] * num_labels
        for label, n in rows:
            if 0 <= label < num_labels:
                counts[label] = int(n)
        return counts

    def prune(self, before: float) -> int:
        """Delete the predictions logged before ``before`` (a Unix time) and the feedback on them;
        returns how many predictions went. In one transaction, so a reader never sees feedback
        without its prediction."""
        p, f = predictions.c, feedback.c
        old = select(p.request_id).where(p.ts < before)
        with db.write_tx(self.engine, serialise=False) as conn:
            # By request: a request's items share one ts, so all of a request goes or none.
            conn.execute(feedback.delete().where(f.request_id.in_(old)))
            return int(conn.execute(predictions.delete().where(p.ts < before)).rowcount or 0)

    def count(self) -> int:
        with db.read_tx(self.engine) as conn:
            return int(conn.execute(select(func.count()).select_from(predictions)).scalar_one())
