"""Rows of different tasks in one forward pass.

Shallow soft prompts on a causal LM are the case that matters (hundreds of tasks on one backbone):
each row carries its own task's prompt, template and label tokens, and one frozen-backbone pass
answers them all (:func:`~tasktune.routes.prompt_tuning.soft_prompt.shallow_label_logits` takes the
prompt per row). LoRA adaptations restored on a shared host mix the same way, each row running its own
adapter (:func:`~tasktune.serving.shared_lora.mixed_lora_proba`). Rows of every other kind are grouped
by adaptation and go through that adaptation's own scorer, one pass per group.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import torch

from tasktune.routes.prompt_tuning.causal import CausalSoftPrompt
from tasktune.routes.prompt_tuning.soft_prompt import Encoded, shallow_label_logits
from tasktune.serving.shared_lora import SharedLoraScorer
from tasktune.task.data import Example


def mix_key(scorer: object) -> Hashable | None:
    """Scorers with equal keys can share a forward pass; None: this scorer runs alone."""
    if isinstance(scorer, CausalSoftPrompt) and scorer.options.depth == "shallow":
        # Same model object; prompts of different lengths are left-padded into one tensor.
        return ("shallow-soft-prompt", id(scorer.backbone.model))
    if isinstance(scorer, SharedLoraScorer):
        return ("shared-lora", id(scorer.host))  # any adapters on one host: one pass, adapter per row
    return None


@torch.inference_mode()
def mixed_soft_prompt_proba(rows: Sequence[tuple[CausalSoftPrompt, Example]]) -> list[np.ndarray]:
    """Probabilities of each row under its own soft prompt, in one pass; rows must share a mix key."""
    first = rows[0][0]
    backbone = first.backbone
    dev = backbone.device.device
    ids = [sp.inputs.encode([e])[0] for sp, e in rows]
    enc = Encoded.of(ids, first._pad, dev)
    lengths = torch.tensor([sp.prompt.shape[0] for sp, _ in rows], device=dev)
    N = int(lengths.max())
    prompts = torch.zeros(len(rows), N, first.prompt.shape[1], device=dev)  # (B, N, H), left-padded
    for i, (sp, _) in enumerate(rows):
        prompts[i, N - sp.prompt.shape[0] :] = sp.prompt
    widths = [len(sp._labels) for sp, _ in rows]
    L = max(widths)
    labels = torch.zeros(len(rows), L, dtype=torch.long, device=dev)
    for i, (sp, _) in enumerate(rows):
        labels[i, : widths[i]] = sp._labels  # unused columns are read and ignored below
    logits = shallow_label_logits(
        backbone.model, enc, prompts, labels, backbone.device.autocast(), prompt_lengths=lengths
    )
    return [
        (logits[i, : widths[i]] + sp.label_bias).softmax(-1).double().cpu().numpy()
        for i, (sp, _) in enumerate(rows)
    ]
