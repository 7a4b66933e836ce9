"""Readout of a learned soft prompt: the vocabulary tokens nearest (by cosine) to each virtual token.

Learned prompts rarely sit on real words (Lester et al. 2021 found label-like neighbours for some
tokens); the readout shows how far training moved them from their initialisation."""

from __future__ import annotations

import torch


def nearest_tokens(
    prompt: torch.Tensor, embeddings: torch.Tensor, tokenizer, k: int = 5
) -> list[list[tuple[str, float]]]:
    """For each row of ``prompt`` (N, H): the ``k`` nearest rows of ``embeddings`` (V, H), as
    (token, cosine) pairs."""
    if prompt.shape[1] != embeddings.shape[1]:
        raise ValueError(
            f"prompt width {prompt.shape[1]} differs from the embedding width {embeddings.shape[1]}"
        )
    p = torch.nn.functional.normalize(prompt.float(), dim=-1)
    e = torch.nn.functional.normalize(embeddings.float(), dim=-1)
    sims, ids = (p @ e.T).topk(k, dim=-1)  # (N, k)
    return [
        [
            (tokenizer.convert_ids_to_tokens(int(i)), round(float(s), 3))
            for i, s in zip(row_ids, row_sims, strict=True)
        ]
        for row_ids, row_sims in zip(ids, sims, strict=True)
    ]
