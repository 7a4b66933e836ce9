"""``tasktune task check``: everything worth knowing about a task's data before training on it.

Counts per split and label, length statistics, class-imbalance warnings, train/test overlap
(leakage) and whether the few-shot protocol is possible. Loading validates every row, so a bad file
fails here with its file, row and field, long before any model is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from tasktune.task.data import Split, load_splits
from tasktune.task.protocols import DEFAULT_K, check_few_shot
from tasktune.task.spec import TaskSpec

# A class this many times rarer than the most common one is worth a warning (and is recorded).
IMBALANCE_RATIO = 3.0
EVAL_SPLIT_PREFIXES = ("test", "eval")

LengthFn = Callable[[Sequence[str]], Sequence[int]]


def word_lengths(texts: Sequence[str]) -> list[int]:
    return [len(t.split()) for t in texts]


@dataclass
class LengthStats:
    unit: str
    min: int
    mean: float
    median: float
    p95: float
    max: int

    @classmethod
    def of(cls, lengths: Sequence[int], unit: str) -> LengthStats:
        a = np.asarray(lengths, dtype=np.int64)
        return cls(
            unit,
            int(a.min()),
            float(a.mean()),
            float(np.median(a)),
            float(np.percentile(a, 95)),
            int(a.max()),
        )


@dataclass
class SplitReport:
    name: str
    source: str
    size: int
    label_counts: dict[str, int]
    lengths: LengthStats
    imbalance_ratio: float | None  # most common / least common class; None when a class is absent


@dataclass
class Overlap:
    train_split: str
    eval_split: str
    count: int
    examples: list[str]


@dataclass
class CheckReport:
    task: str
    task_hash: str
    splits: list[SplitReport]
    overlaps: list[Overlap] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    few_shot_k: int | None = None

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Case- and whitespace-insensitive form used to find the same text in two splits."""
    return _SPACE.sub(" ", text.casefold()).strip()


def _is_eval_split(name: str) -> bool:
    return name.startswith(EVAL_SPLIT_PREFIXES)


def check_task(
    spec: TaskSpec,
    *,
    k: int | None = DEFAULT_K,
    lengths: LengthFn = word_lengths,
    length_unit: str = "words",
    allow_hub: bool = False,
    splits: dict[str, Split] | None = None,
) -> CheckReport:
    """Load every split (validating each row) and build the report. Raises on any data error."""
    splits = splits if splits is not None else load_splits(spec, allow_hub=allow_hub)
    names = spec.label_names
    report = CheckReport(task=spec.name, task_hash=spec.spec_hash(), splits=[], few_shot_k=k or None)
    for split in splits.values():
        counts = split.label_counts(len(names))
        ratio = float(counts.max() / counts.min()) if counts.min() > 0 else None
        texts = [e.text if e.text_pair is None else f"{e.text} {e.text_pair}" for e in split]
        report.splits.append(
            SplitReport(
                name=split.name,
                source=split.source,
                size=len(split),
                label_counts={n: int(c) for n, c in zip(names, counts, strict=True)},
                lengths=LengthStats.of(lengths(texts), length_unit),
                imbalance_ratio=ratio,
            )
        )
        missing = [n for n, c in zip(names, counts, strict=True) if c == 0]
        if missing:
            report.warnings.append(f"split {split.name!r} has no examples of {missing}")
        elif ratio is not None and ratio >= IMBALANCE_RATIO:
            report.warnings.append(
                f"split {split.name!r} is imbalanced: the most common class is {ratio:.1f}x the rarest "
                "(accuracy will flatter a majority guess; watch macro-F1)"
            )

    # Leakage: the same (normalised) text in a training split and an evaluation split.
    train_like = [s for s in splits.values() if not _is_eval_split(s.name)]
    eval_like = [s for s in splits.values() if _is_eval_split(s.name)]
    for tr in train_like:
        seen = {normalise(e.text if e.text_pair is None else e.text + "\x00" + e.text_pair) for e in tr}
        for ev in eval_like:
            dup = [
                e.text
                for e in ev
                if normalise(e.text if e.text_pair is None else e.text + "\x00" + e.text_pair) in seen
            ]
            report.overlaps.append(Overlap(tr.name, ev.name, len(dup), dup[:5]))
            if dup:
                report.warnings.append(
                    f"{len(dup)} text(s) of {ev.name!r} also appear in {tr.name!r} "
                    "(leakage inflates test scores)"
                )

    if k and "train" in splits:
        check_few_shot(splits["train"], names, k)
    return report
