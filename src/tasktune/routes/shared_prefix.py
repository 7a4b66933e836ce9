"""A causal-LM pass over a batch whose token rows share an opening (a prompt's chat turn and
instruction): the opening runs once and its keys/values serve every row, so each row runs only its own
tokens — about half the work for prompt-based fine-tuning's prompts, whose opening is as long as a
sentence. Inference only (the weights must not change within the call); the hidden states equal the
whole pass's to float rounding. Route 1 keeps its own cache across batches
(:class:`~tasktune.routes.prompting.scoring.RankClassifier`); here the weights change between
evaluations during training, so the opening is recomputed per batch (one short pass against B)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache

from tasktune.routes.prompting.scoring import common_prefix_length

MIN_SHARED = 4  # tokens; a shorter opening saves less than the extra pass costs


def last_hidden_states(
    body, rows: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> torch.Tensor:
    """(B, H): the body's hidden state at each row's last token (call under the caller's autocast)."""
    B = len(rows)
    lengths = torch.tensor([len(r) for r in rows], device=device)
    # Every row keeps at least its last token out of the shared part: that is where it is read.
    k = min(common_prefix_length(rows), int(lengths.min()) - 1) if B > 1 else 0
    if k < MIN_SHARED:
        k = 0
    own = lengths - k
    S = int(own.max())
    ids = torch.full((B, S), pad_id, dtype=torch.long, device=device)
    for b, r in enumerate(rows):
        ids[b, : len(r) - k] = torch.tensor(list(r[k:]), device=device)
    own_mask = (torch.arange(S, device=device)[None, :] < own[:, None]).long()
    if k == 0:
        out = body(input_ids=ids, attention_mask=own_mask)
    else:
        opening = body(input_ids=torch.tensor([list(rows[0][:k])], device=device), use_cache=True)
        # expand() is a view: the cache's first update concatenates, nothing is copied B times here.
        layers = [
            (layer.keys.expand(B, -1, -1, -1), layer.values.expand(B, -1, -1, -1))
            for layer in opening.past_key_values.layers
        ]
        out = body(
            input_ids=ids,
            attention_mask=torch.cat([torch.ones(B, k, dtype=torch.long, device=device), own_mask], dim=1),
            position_ids=(k + torch.arange(S, device=device))[None, :].expand(B, -1),
            past_key_values=DynamicCache(layers, config=body.config),
        )
    return out.last_hidden_state[torch.arange(B, device=device), own - 1]
