"""Choosing demonstrations for a prompt: K per class from the training pool only (never the split
being evaluated), at random (seeded) or as nearest neighbours of the query by sentence embedding."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np

from tasktune.task.data import Example

Embed = Callable[[Sequence[str]], np.ndarray]  # texts → (N, H) unit vectors


class DemoSelector:
    def __init__(
        self,
        pool: Sequence[Example],
        num_labels: int,
        per_class: int,
        *,
        selection: str = "random",
        order: str = "fixed",
        seed: int = 13,
        embed: Embed | None = None,
        fixed: Sequence[Example] | None = None,
    ):
        """``fixed``: the demonstrations drawn at fit time, in their order (a stored prompt being
        restored); they replace the seeded draw from ``pool``."""
        self.pool, self.per_class, self.selection, self.order, self.seed = (
            list(pool),
            per_class,
            selection,
            order,
            seed,
        )
        self.by_class = [[i for i, e in enumerate(self.pool) if e.label == c] for c in range(num_labels)]
        if per_class and any(len(ix) < per_class for ix in self.by_class):
            sizes = [len(ix) for ix in self.by_class]
            raise ValueError(
                f"{per_class} demonstrations per class requested but the pool has {sizes} per class"
            )
        if selection == "knn":
            if embed is None:
                raise ValueError("nearest-neighbour demonstrations need an embedding function")
            self.embed = embed
            self.pool_vectors = embed([e.text for e in self.pool]) if self.pool else None
        if fixed is None:
            rng = np.random.default_rng(seed)
            drawn = [i for ix in self.by_class for i in rng.permutation(ix)[:per_class]] if per_class else []
            fixed = [self.pool[i] for i in rng.permutation(drawn)] if drawn else []
        self.fixed = list(fixed)

    def for_queries(self, queries: Sequence[Example]) -> list[list[Example]]:
        if not self.per_class:
            return [[] for _ in queries]
        if self.selection == "knn":
            q = self.embed([e.text for e in queries])  # (B, H)
            sims = q @ self.pool_vectors.T  # (B, N)
            # A query that is itself in the pool (mean calibration scores the training texts, which are
            # the pool) must not be shown its own gold label as its nearest demonstration.
            texts = {(e.text, e.text_pair): i for i, e in enumerate(self.pool)}
            for b, e in enumerate(queries):
                same = texts.get((e.text, e.text_pair))
                if same is not None:
                    sims[b, same] = -np.inf
            out = []
            for row in sims:
                chosen = []
                for ix in self.by_class:
                    ix = np.asarray(ix)
                    chosen += ix[np.argsort(-row[ix], kind="stable")[: self.per_class]].tolist()
                # Most similar last, right before the query (as in Liu et al. 2022).
                out.append([self.pool[i] for i in sorted(chosen, key=lambda i: row[i])])
            return out
        if self.order == "sampled":
            # A per-query order, reproducible from the seed and the query's text: the same text gets
            # the same prompt (so the same answer) wherever it stands in a test file or a request.
            return [
                [
                    self.fixed[i]
                    for i in np.random.default_rng((self.seed, _text_key(e))).permutation(len(self.fixed))
                ]
                for e in queries
            ]
        return [list(self.fixed) for _ in queries]


def _text_key(example: Example) -> int:
    """A stable 64-bit number for the query's text (and pair): Python's hash() changes per process."""
    both = f"{example.text}\x00{example.text_pair or ''}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.sha256(both).digest()[:8], "little")
