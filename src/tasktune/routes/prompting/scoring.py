"""Rank classification for causal LMs: log-probability of every label word after a prompt.

Two paths with the same definition — score(word | prompt) = Σ log p(word token i | prompt, earlier
word tokens), with prompt and word tokenised separately:

- :meth:`RankClassifier.word_logprobs_plain` — what a user writes: the full prompt + word through
  the model, once per example per word. The reference.
- :meth:`RankClassifier.word_logprobs` — the fast path. The part of the prompt shared by the batch
  (instruction, demonstrations) is run once and its key/value cache reused across batches; every
  example's own part runs once (not once per label); single-token words are read off that one
  forward pass; multi-token words run as one batched continuation over the example caches.

Written here rather than taken from a library: neither transformers nor PEFT offers prefix-cached
rank classification, and OpenPrompt / LM-BFF score only the first token of a multi-token word.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache

from tasktune.backbones.device import DeviceChoice

WordIds = tuple[int, ...]


def common_prefix_length(seqs: Sequence[Sequence[int]]) -> int:
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for i in range(n):
        t = first[i]
        if any(s[i] != t for s in seqs[1:]):
            return i
    return n


class RankClassifier:
    """Scores label words after prompts. ``words`` is a flat list of token-id tuples."""

    def __init__(self, model, device: DeviceChoice, words: Sequence[WordIds], pad_id: int = 0):
        if not words or any(len(w) == 0 for w in words):
            raise ValueError("every label word must have at least one token")
        self.model, self.device, self.words, self.pad_id = model, device, list(words), pad_id
        self._first = torch.tensor([w[0] for w in self.words], device=device.device)
        self._multi = [i for i, w in enumerate(self.words) if len(w) > 1]
        self._prefix_ids: list[int] | None = None
        self._prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    # --- the reference path ---------------------------------------------------------------------
    @torch.inference_mode()
    def word_logprobs_plain(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        out = torch.empty(len(prompts), len(self.words), dtype=torch.float64)
        for b, prompt in enumerate(prompts):
            for j, word in enumerate(self.words):
                ids = torch.tensor([list(prompt) + list(word)], device=self.device.device)
                with self.device.autocast():
                    logits = self.model(input_ids=ids).logits[0]  # (T, V)
                lp = logits[len(prompt) - 1 : -1].float().log_softmax(-1)  # rows predicting the word
                out[b, j] = lp.gather(1, torch.tensor(word, device=lp.device)[:, None]).sum().item()
        return out

    # --- the fast path --------------------------------------------------------------------------
    def _shared_prefix(self, prompts: Sequence[Sequence[int]]) -> int:
        """Length of the cached shared prefix to use for this batch (computing it when needed)."""
        k = min(common_prefix_length(prompts), min(len(p) for p in prompts) - 1)
        cached = self._prefix_ids
        if cached is not None and len(cached) <= k and list(prompts[0][: len(cached)]) == cached:
            return len(cached)
        if cached is not None:
            # A batch that does not start with the cached prefix: keep only what both share, so the
            # cache converges on the truly shared part (a chance overlap of one batch is dropped).
            k = min(k, common_prefix_length([cached, prompts[0]]))
        if k <= 0:
            self._prefix_ids, self._prefix_kv = None, None
            return 0
        ids = torch.tensor([list(prompts[0][:k])], device=self.device.device)
        with self.device.autocast():
            out = self.model(input_ids=ids, use_cache=True)
        self._prefix_ids = list(prompts[0][:k])
        self._prefix_kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        return k

    def _expanded_cache(self, batch: int) -> DynamicCache | None:
        if self._prefix_kv is None:
            return None
        # expand() is a view: the cache's first update concatenates, so nothing is copied B times here.
        layers = [(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in self._prefix_kv]
        return DynamicCache(layers, config=self.model.config)

    @torch.inference_mode()
    def word_logprobs(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        dev = self.device.device
        B = len(prompts)
        k = self._shared_prefix(prompts)
        lengths = torch.tensor([len(p) - k for p in prompts], device=dev)  # own-part lengths, >= 1
        S = int(lengths.max())
        suffix = torch.full((B, S), self.pad_id, dtype=torch.long, device=dev)
        for b, p in enumerate(prompts):
            suffix[b, : len(p) - k] = torch.tensor(p[k:], device=dev)
        own_mask = (torch.arange(S, device=dev)[None, :] < lengths[:, None]).long()  # (B, S)
        mask = torch.cat([torch.ones(B, k, dtype=torch.long, device=dev), own_mask], dim=1)
        positions = (k + torch.arange(S, device=dev))[None, :].expand(B, -1)
        cache = self._expanded_cache(B)
        with self.device.autocast():
            # The body only, then the vocabulary projection at each row's last position: projecting
            # every position onto a 49k vocabulary would cost a fifth of the forward pass for nothing.
            out = self.model.base_model(
                input_ids=suffix,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=bool(self._multi),
            )
            hidden = out.last_hidden_state[torch.arange(B, device=dev), lengths - 1]  # (B, H)
            logits = self.model.get_output_embeddings()(hidden)  # (B, V)
        last = logits.float().log_softmax(-1)
        scores = last[:, self._first].double()  # (B, W): the first token of every word
        if self._multi:
            scores += self._continuations(out.past_key_values, mask, k + lengths).to(scores.device)
        return scores.cpu()

    def _continuations(self, cache: DynamicCache, mask: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        """Log-prob of tokens 2..m of each multi-token word, all (example, word) pairs in one pass."""
        dev = self.device.device
        B, M = mask.shape[0], len(self._multi)
        rest = [self.words[j] for j in self._multi]
        C = max(len(w) for w in rest) - 1
        feed = torch.full((B * M, C), self.pad_id, dtype=torch.long, device=dev)
        target = torch.full((B * M, C), 0, dtype=torch.long, device=dev)
        valid = torch.zeros((B * M, C), dtype=torch.bool, device=dev)
        for r in range(B * M):
            w = rest[r % M]
            feed[r, : len(w) - 1] = torch.tensor(w[:-1], device=dev)
            target[r, : len(w) - 1] = torch.tensor(w[1:], device=dev)
            valid[r, : len(w) - 1] = True
        cache.batch_repeat_interleave(M)  # row b*M + m continues example b with word m
        full_mask = torch.cat([mask.repeat_interleave(M, dim=0), valid.long()], dim=1)
        positions = ends.repeat_interleave(M)[:, None] + torch.arange(C, device=dev)[None, :]
        with self.device.autocast():
            logits = self.model(
                input_ids=feed, attention_mask=full_mask, position_ids=positions, past_key_values=cache
            ).logits
        lp = logits.float().log_softmax(-1).gather(2, target[:, :, None])[:, :, 0]  # (B*M, C)
        lp = (lp * valid).sum(1).double().view(B, M)
        extra = torch.zeros(B, len(self.words), dtype=torch.float64, device=dev)
        extra[:, self._multi] = lp
        return extra


def label_scores(word_lp: torch.Tensor, groups: Sequence[Sequence[int]]) -> torch.Tensor:
    """(B, W) word log-probs → (B, L): a label's score is the log of the total probability of its words."""
    return torch.stack([torch.logsumexp(word_lp[:, list(g)], dim=1) for g in groups], dim=1)
