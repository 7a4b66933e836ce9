"""Majority baseline: predicts the training label distribution for every input.

Its probabilities are the class frequencies in the training examples (with add-one smoothing so no
class has probability 0); under the zero-shot protocol there are no labels, so it is the uniform
(chance) distribution. Accuracy therefore equals the test share of the most common training class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tasktune.routes.base import FitContext, Fitted
from tasktune.routes.registry import register_route
from tasktune.task.data import Example


@dataclass
class PriorScorer:
    prior: np.ndarray  # (L,)

    @property
    def num_labels(self) -> int:
        return len(self.prior)

    def predict_proba(self, batch: Sequence[Example]) -> np.ndarray:
        return np.tile(self.prior, (len(batch), 1))


@dataclass
class MajorityRoute:
    name: str = "majority"
    needs_backbone: bool = False

    def fit(self, ctx: FitContext) -> Fitted:
        counts = np.bincount([e.label for e in ctx.train], minlength=ctx.task.num_labels).astype(np.float64)
        prior = (counts + 1.0) / (counts.sum() + len(counts))
        # Break ties towards the lowest label index deterministically: argmax already does.
        return Fitted(
            PriorScorer(prior), config={"prior": prior.round(6).tolist(), "train_size": len(ctx.train)}
        )


register_route("majority")(MajorityRoute)
