"""The computed key/value prefixes of shallow soft prompts: valid only for the prompt's current values,
and held within a byte budget."""

from __future__ import annotations

import gc

import torch

from tasktune.routes.prompt_tuning.prefix_cache import PrefixCache


def _counting(cache: PrefixCache, prompt: torch.Tensor, calls: list[int]) -> torch.Tensor:
    def compute() -> torch.Tensor:
        calls.append(1)
        return prompt.detach() * 2

    return cache.get(prompt, compute)


def test_hit_until_the_prompt_changes_in_place():
    cache, calls = PrefixCache(), []
    prompt = torch.nn.Parameter(torch.ones(3, 4))
    first = _counting(cache, prompt, calls)
    assert _counting(cache, prompt, calls) is first and len(calls) == 1
    opt = torch.optim.AdamW([prompt], lr=0.1)
    prompt.sum().backward()
    opt.step()  # an optimiser step updates the prompt in place: the prefix must be recomputed
    again = _counting(cache, prompt, calls)
    assert len(calls) == 2 and torch.equal(again, prompt.detach() * 2) and not torch.equal(again, first)
    with torch.no_grad():
        prompt.copy_(torch.zeros(3, 4))  # a restore
    assert torch.equal(_counting(cache, prompt, calls), torch.zeros(3, 4)) and len(calls) == 3


def test_least_recently_used_go_past_the_budget():
    one = 3 * 4 * 4  # bytes of one (3, 4) fp32 prefix
    cache, calls = PrefixCache(budget_bytes=2 * one), []
    a, b, c = (torch.nn.Parameter(torch.full((3, 4), float(i))) for i in range(3))
    _counting(cache, a, calls)
    _counting(cache, b, calls)
    _counting(cache, a, calls)  # a is now the most recent
    _counting(cache, c, calls)  # b goes
    assert len(cache) == 2 and cache.bytes == 2 * one and len(calls) == 3
    _counting(cache, a, calls)
    assert len(calls) == 3  # still held
    _counting(cache, b, calls)
    assert len(calls) == 4  # recomputed


def test_a_collected_prompt_frees_its_entry():
    cache, calls = PrefixCache(), []
    prompt = torch.nn.Parameter(torch.ones(3, 4))
    _counting(cache, prompt, calls)
    assert len(cache) == 1
    del prompt
    gc.collect()
    assert len(cache) == 0 and cache.bytes == 0


def test_a_prefix_larger_than_the_budget_is_not_kept():
    cache, calls = PrefixCache(budget_bytes=8), []
    prompt = torch.nn.Parameter(torch.ones(3, 4))
    _counting(cache, prompt, calls)
    _counting(cache, prompt, calls)
    assert len(calls) == 2 and len(cache) == 0


def test_a_smaller_budget_drops_the_oldest_at_once():
    one = 3 * 4 * 4
    cache, calls = PrefixCache(budget_bytes=3 * one), []
    held = [torch.nn.Parameter(torch.full((3, 4), float(i))) for i in range(3)]
    for p in held:
        _counting(cache, p, calls)
    cache.resize(one)
    assert len(cache) == 1 and cache.bytes == one
    _counting(cache, held[2], calls)
    assert len(calls) == 3  # the newest stayed
