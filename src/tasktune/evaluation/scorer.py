"""The one interface every route predicts through, so that all numbers are comparable.

A scorer turns a batch of examples into a probability for every label; the evaluator does the rest
(argmax, metrics, per-example records, timing). Routes implement :class:`Scorer`; nothing else about
them matters to evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from tasktune.task.data import Example


@runtime_checkable
class Scorer(Protocol):
    """Predicts label probabilities. ``predict_proba`` returns shape (B, num_labels), rows summing to 1."""

    num_labels: int

    def predict_proba(self, batch: Sequence[Example]) -> np.ndarray: ...


@runtime_checkable
class MemberScorer(Scorer, Protocol):
    """A scorer that averages members' probabilities can say what each member gave: the evaluator
    then scores the members on the same examples at no extra cost and reports the ensemble's gain.
    ``predict_proba`` must equal ``predict_member_proba(batch).mean(axis=1)``."""

    def predict_member_proba(self, batch: Sequence[Example]) -> np.ndarray:
        """(B, members, num_labels)."""
        ...


def check_probabilities(probs: np.ndarray, batch_size: int, num_labels: int, who: str) -> np.ndarray:
    """Guard against a route returning the wrong shape or non-probabilities (a bug, not user error)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (batch_size, num_labels):
        raise RuntimeError(
            f"{who} returned probabilities of shape {probs.shape}, expected {(batch_size, num_labels)}"
        )
    if (
        not np.all(np.isfinite(probs))
        or np.any(probs < -1e-6)
        or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    ):
        raise RuntimeError(
            f"{who} returned values that are not probabilities (non-finite, negative or not summing to 1)"
        )
    return probs
