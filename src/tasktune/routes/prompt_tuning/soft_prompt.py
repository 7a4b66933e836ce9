"""Soft prompts on a frozen causal LM: N trainable vectors in front of the input embeddings (shallow,
Lester et al. 2021) or N trainable key/value pairs in front of every layer (deep: prefix tuning /
P-tuning v2). Label scores are the LM's logits for each label word's first token at the answer
position, so the soft prompt is trained through the same verbalizer route 1 uses.

Every function takes the prompt *per row* ((B, N, H) or per-row prefixes), which is what makes
mixed-task batches possible: each row of one forward pass can carry its own task's soft prompt over
one frozen backbone. PEFT's prompt-learning models hold one prompt per model and cannot do this,
and PEFT's left-padding handling of prompt tuning has been buggy (peft#1093) — so this is our own
code; PEFT is used for the export format (see ``tasktune.registry.peft_export``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache


@dataclass
class Encoded:
    """A batch of right-padded token ids with their lengths."""

    ids: torch.Tensor  # (B, T)
    lengths: torch.Tensor  # (B,)

    @classmethod
    def of(cls, rows: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> Encoded:
        lengths = torch.tensor([len(r) for r in rows], device=device)
        ids = torch.full((len(rows), int(lengths.max())), pad_id, dtype=torch.long, device=device)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(list(r), device=device)
        return cls(ids, lengths)

    def mask(self) -> torch.Tensor:
        T = self.ids.shape[1]
        return (torch.arange(T, device=self.ids.device)[None, :] < self.lengths[:, None]).long()


def shallow_label_logits(
    model,
    batch: Encoded,
    prompts: torch.Tensor,
    label_token_ids: torch.Tensor,
    autocast,
    prompt_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, L) logits of the label tokens at each row's answer position.

    ``prompts`` is (B, N, H): row b's soft prompt goes before row b's tokens. ``label_token_ids`` is
    (B, L): row b's task's label tokens (rows of different tasks may have different label sets; pad
    unused columns with any id and ignore them). ``prompt_lengths`` (B,): prompts of different lengths
    in one batch, row b's in the *last* ``prompt_lengths[b]`` of the N slots; the slots before are
    masked and positions count from the row's first real vector, so each row computes what it would
    alone.
    """
    B, N = prompts.shape[0], prompts.shape[1]
    embed = model.get_input_embeddings()
    with autocast:
        tokens = embed(batch.ids)  # (B, T, H)
        dev = tokens.device
        inputs = torch.cat([prompts.to(tokens.dtype), tokens], dim=1)  # (B, N+T, H)
        if prompt_lengths is None:
            front = torch.ones(B, N, dtype=torch.long, device=dev)
            positions = None  # the model's default 0..N+T-1
        else:
            front = (torch.arange(N, device=dev)[None, :] >= (N - prompt_lengths.to(dev))[:, None]).long()
        mask = torch.cat([front, batch.mask()], dim=1)
        if prompt_lengths is not None:
            positions = (mask.cumsum(1) - 1).clamp(min=0)
        out = model.base_model(inputs_embeds=inputs, attention_mask=mask, position_ids=positions)
        last = out.last_hidden_state[torch.arange(B, device=dev), N + batch.lengths - 1]  # (B, H)
        logits = model.get_output_embeddings()(last)  # (B, V)
    return logits.float().gather(1, label_token_ids)


def deep_label_logits(
    model,
    batch: Encoded,
    prefixes: torch.Tensor,
    label_token_ids: torch.Tensor,
    autocast,
    prefix_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Like :func:`shallow_label_logits` with a key/value prefix at every layer.

    ``prefixes`` is (B, layers, 2, kv_heads, N, head_dim) — PEFT's prefix-tuning layout per row.
    ``prefix_lengths`` (B,): prefixes of different lengths in one batch, row b's in the *last*
    ``prefix_lengths[b]`` of the N slots (the slots before are masked, and row b's tokens take positions
    ``prefix_lengths[b]``.., as they would alone).
    """
    B, N = prefixes.shape[0], prefixes.shape[4]
    dev = batch.ids.device
    with autocast:
        # The prefix stays fp32 (it is what is trained); the cache concatenates it with the layer's own
        # keys/values and autocast runs attention in the compute dtype.
        layers = [(prefixes[:, i, 0], prefixes[:, i, 1]) for i in range(prefixes.shape[1])]
        cache = DynamicCache(layers, config=model.config)
        if prefix_lengths is None:
            front = torch.ones(B, N, dtype=torch.long, device=dev)
            # Tokens take positions N.. after the prefix (the model's default with a cache), as in PEFT's
            # prefix tuning, so an exported prefix gives the same logits there.
            positions = None
        else:
            n = prefix_lengths.to(dev)
            front = (torch.arange(N, device=dev)[None, :] >= (N - n)[:, None]).long()
            positions = n[:, None] + torch.arange(batch.ids.shape[1], device=dev)[None, :]
        mask = torch.cat([front, batch.mask()], dim=1)
        out = model.base_model(
            input_ids=batch.ids, attention_mask=mask, past_key_values=cache, position_ids=positions
        )
        last = out.last_hidden_state[torch.arange(B, device=dev), batch.lengths - 1]
        logits = model.get_output_embeddings()(last)
    return logits.float().gather(1, label_token_ids)


def shallow_to_prefix(model, prompt: torch.Tensor, autocast) -> torch.Tensor:
    """The keys/values a frozen causal LM computes for a shallow soft prompt (N, H), as a deep prefix
    (layers, 2, kv_heads, N, head_dim).

    In a causal LM nothing before a position depends on what follows it, so a shallow prompt's states
    are the same for every input: computed once, they turn an (N + T)-token pass into a T-token pass
    over this prefix with the same answers (to float rounding), and let shallow and deep prompts share
    one mixed-task pass. Inference only: training needs the gradient through the whole pass.
    """
    with torch.no_grad(), autocast:
        out = model.base_model(inputs_embeds=prompt[None].to(model.dtype), use_cache=True)
    kv = [torch.stack([layer.keys[0], layer.values[0]]) for layer in out.past_key_values.layers]
    return torch.stack(kv).float()


def init_shallow(
    model, n: int, how: str, *, label_ids: Sequence[int], text_ids: Sequence[int], generator: torch.Generator
) -> torch.Tensor:
    """(N, H) initial soft prompt: ``random``, ``vocab`` (sampled from the 5,000 most frequent-looking
    low ids, Lester et al.), ``text`` (the instruction's token embeddings, cycled), ``labels``
    (the label words' embeddings, cycled — Lester et al.'s best) or ``prompt`` (``text_ids`` are then
    the zero-shot prompt's opening and ``n`` its length: the prompt itself, as vectors)."""
    weight = model.get_input_embeddings().weight.detach().float()
    V = weight.shape[0]
    if how == "random":
        return torch.randn(n, weight.shape[1], generator=generator) * weight.std()
    if how == "vocab":
        ids = torch.randint(0, min(V, 5000), (n,), generator=generator)
    elif how in ("text", "labels", "prompt"):
        source = list(label_ids if how == "labels" else text_ids)
        if not source:
            raise ValueError(f"initialisation {how!r} needs at least one token")
        ids = torch.tensor([source[i % len(source)] for i in range(n)])
    else:
        raise ValueError(f"unknown initialisation {how!r}")
    return weight[ids.to(weight.device)].cpu().clone()


def init_deep(model, n: int, generator: torch.Generator, text_ids: Sequence[int] = ()) -> torch.Tensor:
    """(layers, 2, kv_heads, N, head_dim) initial prefix: the keys/values the frozen model itself
    computes for a real text (cycled to N tokens) — a far better start than noise, as P-tuning v2's
    reparameterisation-free variant needs a sensible scale at every layer."""
    cfg = model.config
    source = list(text_ids) or torch.randint(0, min(cfg.vocab_size, 5000), (n,), generator=generator).tolist()
    ids = torch.tensor([[source[i % len(source)] for i in range(n)]], device=model.device)
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
    kv = [torch.stack([layer.keys[0], layer.values[0]]) for layer in out.past_key_values.layers]
    return torch.stack(kv).float().cpu()  # (layers, 2, kv_heads, N, head_dim)


def deep_to_peft(prefix: torch.Tensor) -> torch.Tensor:
    """(layers, 2, kv_heads, N, head_dim) → PEFT's prefix-tuning embedding (N, layers*2*kv_heads*head_dim):
    PEFT views each row as (layers*2, kv_heads, head_dim) with index 2*layer + {0: key, 1: value}."""
    L, two, H, N, D = prefix.shape
    return prefix.permute(3, 0, 1, 2, 4).reshape(N, L * two * H * D)


def deep_from_peft(flat: torch.Tensor, layers: int, kv_heads: int) -> torch.Tensor:
    N, width = flat.shape
    D = width // (layers * 2 * kv_heads)
    return flat.reshape(N, layers, 2, kv_heads, D).permute(1, 2, 3, 0, 4).contiguous()
