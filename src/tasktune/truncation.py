"""Inputs cut to fit a route's token limit: counted and reported, never silent (R2).

Every place that cuts an input records it here (per process, by what cut it and the limit); the main
job clears the count before scoring a cell's test set and reads it after, so each cell's result says
how many of its test inputs were cut, and the run prints it as a warning. The policies themselves
differ on purpose: a causal prompt loses the end of its text and keeps everything around it (chat
turns, instruction, template and the cue where the answer is read; ``encode_within``), a bare causal
text keeps its start, and encoders keep the start (tokenizers truncate from the end, keeping [CLS]).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence

_lock = threading.Lock()
_counts: Counter[str] = Counter()


def record(where: str, limit: int, cut: int) -> None:
    """``cut`` inputs were longer than ``limit`` tokens in ``where`` (e.g. "soft-prompt input")."""
    if cut:
        with _lock:
            _counts[f"{where} (limit {limit} tokens)"] += cut


def take() -> dict[str, int]:
    """The counts since the last call, cleared."""
    with _lock:
        out = dict(_counts)
        _counts.clear()
    return out


def tokenize_bounded(
    tokenizer, texts: Sequence[str], pairs: Sequence[str] | None, limit: int, where: str, **kw
):
    """``tokenizer(texts, pairs, truncation=True, max_length=limit, **kw)`` that also records how many
    rows were cut: only rows that came out at the limit are tokenized again in full to tell an input of
    exactly ``limit`` tokens from a longer one (tokenizers are fast next to the model)."""
    enc = tokenizer(list(texts), pairs, truncation=True, max_length=limit, **kw)
    mask = enc["attention_mask"]
    lengths = mask.sum(1).tolist() if hasattr(mask, "sum") else [sum(m) for m in mask]  # tensor or lists
    at_limit = [i for i, n in enumerate(lengths) if n >= limit]
    if at_limit:
        full = tokenizer(
            [texts[i] for i in at_limit], [pairs[i] for i in at_limit] if pairs is not None else None
        )["input_ids"]
        record(where, limit, sum(len(ids) > limit for ids in full))
    return enc
