"""Evaluation protocols: which examples a route may train and select on.

- ``zero``: no labelled data at all (only content-free inputs for calibration).
- ``few`` (LM-BFF, Gao et al. 2021): K examples per class for training and another, disjoint K per
  class for development, both drawn from train with one of the seeds 13, 21, 42, 87, 100.
- ``full``: all of train, with a seeded, stratified 10 % held out as dev (or the task's own dev split).

Nothing here ever looks at the test split: selection data always comes from train.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from tasktune.errors import DataError
from tasktune.task.data import Example, Split

Protocol = Literal["zero", "few", "full"]
FEW_SHOT_SEEDS: tuple[int, ...] = (13, 21, 42, 87, 100)
DEFAULT_K = 16
DEFAULT_DEV_FRACTION = 0.1


@dataclass(frozen=True)
class ProtocolSplits:
    """The training and development examples one (protocol, seed) cell may use."""

    protocol: Protocol
    seed: int
    train: tuple[Example, ...]
    dev: tuple[Example, ...]
    k: int | None = None


def _by_class(split: Split, num_labels: int) -> list[np.ndarray]:
    labels = split.labels
    return [np.flatnonzero(labels == c) for c in range(num_labels)]


def check_few_shot(split: Split, label_names: list[str], k: int = DEFAULT_K) -> None:
    """Raise naming the class if any class has fewer than 2K examples (K to train, K for dev)."""
    counts = split.label_counts(len(label_names))
    short = [(label_names[c], int(n)) for c, n in enumerate(counts) if n < 2 * k]
    if short:
        detail = ", ".join(f"{name!r} has {n}" for name, n in short)
        raise DataError(
            f"class too small for the few-shot protocol with K={k}: {detail}",
            source=split.source,
            expected=f"at least {2 * k} examples per class ({k} to train + {k} for dev)",
        )


def few_shot(split: Split, label_names: list[str], *, k: int = DEFAULT_K, seed: int = 13) -> ProtocolSplits:
    check_few_shot(split, label_names, k)
    rng = np.random.default_rng(seed)
    ex = split.examples
    train_idx, dev_idx = [], []
    seen: set[tuple[str, str | None]] = set()
    for c, idx in enumerate(_by_class(split, len(label_names))):
        # The first 2K texts of the seeded order not drawn already: a text repeated in the split must
        # not be in both train and dev (it would inflate the dev score that selects the checkpoint).
        # Without repeats this is the first 2K, as it always was.
        chosen = []
        for i in rng.permutation(idx):
            text = (ex[i].text, ex[i].text_pair)
            if text not in seen:
                seen.add(text)
                chosen.append(i)
                if len(chosen) == 2 * k:
                    break
        if len(chosen) < 2 * k:
            raise DataError(
                f"class too small for the few-shot protocol with K={k}: {label_names[c]!r} has "
                f"{len(chosen)} distinct texts",
                source=split.source,
                expected=f"at least {2 * k} distinct texts per class ({k} to train + {k} for dev)",
            )
        train_idx.append(np.array(chosen[:k], dtype=np.int64))
        dev_idx.append(np.array(chosen[k:], dtype=np.int64))
    # Shuffle so that training batches mix classes; a fixed seed keeps the order reproducible.
    tr = rng.permutation(np.concatenate(train_idx))
    dv = rng.permutation(np.concatenate(dev_idx))
    return ProtocolSplits("few", seed, tuple(ex[i] for i in tr), tuple(ex[i] for i in dv), k=k)


def full_data(
    split: Split,
    num_labels: int,
    *,
    seed: int = 13,
    dev_fraction: float = DEFAULT_DEV_FRACTION,
    dev: Split | None = None,
    train_limit: int | None = None,
) -> ProtocolSplits:
    """All of train; dev is the task's own dev split when given, else a stratified seeded fraction.

    ``train_limit`` keeps a seeded random subset of that many training examples (a stated, reduced
    run when the full one does not fit the machine); dev is drawn from the whole train as before."""
    if train_limit is not None and train_limit < 1:
        raise ValueError(f"train_limit must be >= 1, got {train_limit}")
    if dev is not None:
        train = split.examples
        if train_limit is not None and train_limit < len(train):
            keep = np.sort(np.random.default_rng(seed).permutation(len(train))[:train_limit])
            train = tuple(train[i] for i in keep)
        return ProtocolSplits("full", seed, train, dev.examples)
    if not 0 < dev_fraction < 1:
        raise ValueError(f"dev_fraction must be in (0, 1), got {dev_fraction}")
    rng = np.random.default_rng(seed)
    train_idx, dev_idx = [], []
    for idx in _by_class(split, num_labels):
        perm = rng.permutation(idx)
        n_dev = round(len(perm) * dev_fraction) if len(perm) > 1 else 0
        dev_idx.append(perm[:n_dev])
        train_idx.append(perm[n_dev:])
    tr = rng.permutation(np.concatenate(train_idx))[:train_limit]  # shuffled, so the subset is random
    dv = rng.permutation(np.concatenate(dev_idx))
    ex = split.examples
    return ProtocolSplits("full", seed, tuple(ex[i] for i in tr), tuple(ex[i] for i in dv))


def zero_shot(seed: int = 13) -> ProtocolSplits:
    return ProtocolSplits("zero", seed, (), ())
