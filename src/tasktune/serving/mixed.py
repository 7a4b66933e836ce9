"""Rows of different tasks in one forward pass.

Soft prompts on a causal LM are the case that matters (hundreds of tasks on one backbone): each row
carries its own task's key/value prefix (a deep prompt, or a shallow prompt's computed states, see
:meth:`~tasktune.routes.prompt_tuning.causal.CausalSoftPrompt.kv_prefix`), template and label tokens,
and one frozen-backbone pass answers them all, shallow and deep tasks together (one pass per length
bucket where padding would cost more than another pass). LoRA adaptations
restored on a shared host mix the same way, each row running its own adapter
(:func:`~tasktune.serving.shared_lora.mixed_lora_proba`). Rows of every other kind are grouped by
adaptation and go through that adaptation's own scorer, in length buckets as well.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import torch

from tasktune.routes.prompt_tuning.causal import CausalSoftPrompt
from tasktune.routes.prompt_tuning.soft_prompt import Encoded, deep_label_logits
from tasktune.serving.passes import in_passes
from tasktune.serving.shared_lora import SharedLoraScorer
from tasktune.task.data import Example


def mix_key(scorer: object) -> Hashable | None:
    """Scorers with equal keys can share a forward pass; None: this scorer runs alone."""
    if isinstance(scorer, CausalSoftPrompt):
        # Same model object; prefixes of different lengths are left-padded into one tensor.
        return ("causal-soft-prompt", id(scorer.backbone.model))
    if isinstance(scorer, SharedLoraScorer):
        return ("shared-lora", id(scorer.host))  # any adapters on one host: one pass, adapter per row
    return None


@torch.inference_mode()
def mixed_soft_prompt_proba(
    rows: Sequence[tuple[CausalSoftPrompt, Example]], max_rows: int | None = None
) -> list[np.ndarray]:
    """Probabilities of each row under its own soft prompt, in one pass per length bucket of at most
    ``max_rows`` rows (see :mod:`tasktune.serving.passes`); rows must share a mix key."""
    ids = [sp.inputs.encode([e])[0] for sp, e in rows]
    return in_passes(
        [len(r) for r in ids],
        rows[0][0].backbone.device.device.type,
        lambda idx: _one_pass([rows[i][0] for i in idx], [ids[i] for i in idx]),
        max_rows,
    )


def _one_pass(scorers: Sequence[CausalSoftPrompt], ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
    first = scorers[0]
    backbone = first.backbone
    dev = backbone.device.device
    enc = Encoded.of(ids, first._pad, dev)
    distinct = {id(sp): sp for sp in scorers}
    prefix = {key: sp.kv_prefix() for key, sp in distinct.items()}  # (layers, 2, kv_heads, n, head_dim)
    lengths = torch.tensor([prefix[id(sp)].shape[3] for sp in scorers], device=dev)
    N = int(lengths.max())
    shape = prefix[id(first)].shape
    prefixes = torch.zeros(len(scorers), *shape[:3], N, shape[4], device=dev)  # left-padded, masked
    for i, sp in enumerate(scorers):
        prefixes[i, ..., N - int(lengths[i]) :, :] = prefix[id(sp)]
    widths = [len(sp._labels) for sp in scorers]
    L = max(widths)
    labels = torch.zeros(len(scorers), L, dtype=torch.long, device=dev)
    for i, sp in enumerate(scorers):
        labels[i, : widths[i]] = sp._labels  # unused columns are read and ignored below
    logits = deep_label_logits(
        backbone.model, enc, prefixes, labels, backbone.device.autocast(), prefix_lengths=lengths
    )
    return [
        (logits[i, : widths[i]] + sp.label_bias).softmax(-1).double().cpu().numpy()
        for i, sp in enumerate(scorers)
    ]
