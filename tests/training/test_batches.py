"""Length-grouped epoch order: a permutation, steps of similar lengths, seeded, last step last."""

from __future__ import annotations

import torch

from tasktune.backbones.device import resolve_device
from tasktune.task.data import Example
from tasktune.training import TrainConfig, train
from tasktune.training.batches import CHUNK_STEPS, epoch_order, text_sizes
from tests.training.helpers import LinearTrainable, features, make_examples


def _gen(seed: int = 5) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_without_sizes_the_order_is_the_plain_permutation():
    # Runs measured before grouping existed keep their exact order.
    assert torch.equal(epoch_order(100, 8, _gen()), torch.randperm(100, generator=_gen()))


def test_grouped_order_is_a_seeded_permutation_of_similar_length_steps():
    n, step = 1000, 8
    sizes = torch.randint(1, 300, (n,), generator=_gen(1))
    order = epoch_order(n, step, _gen(), sizes)
    assert sorted(order.tolist()) == list(range(n))
    assert torch.equal(order, epoch_order(n, step, _gen(), sizes))  # same generator state, same order
    assert not torch.equal(order, epoch_order(n, step, _gen(6), sizes))

    def padded(o: torch.Tensor) -> int:  # characters a batch padded to its longest text costs
        full = o[: n // step * step].view(-1, step)
        return int((sizes[full].max(dim=1).values * step).sum())

    needed = int(sizes[order[: n // step * step]].sum())
    assert padded(torch.randperm(n, generator=_gen())) > 1.5 * needed  # random steps: much padding
    assert padded(order) < 1.1 * needed
    # Steps are shuffled, not long-to-short: the first steps are not all the longest ones.
    step_max = sizes[order[: n // step * step].view(-1, step)].max(dim=1).values
    assert not torch.equal(step_max, step_max.sort(descending=True).values)


def test_the_short_last_step_keeps_the_leftovers():
    n, step = 8 * CHUNK_STEPS * 8 + 13, 8  # 8 whole chunks, 13 examples over whole steps
    sizes = torch.arange(n) % 37
    order = epoch_order(n, step, _gen(), sizes)
    assert sorted(order.tolist()) == list(range(n))
    tail = set(order[-(n % step) :].tolist())
    # The leftovers are the last chunk's shortest texts, after every whole step.
    last_chunk = set(torch.randperm(n, generator=_gen())[8 * CHUNK_STEPS * 8 :].tolist())
    assert tail <= last_chunk


def test_a_small_set_is_not_sorted_into_the_same_steps_every_epoch():
    n, step = 32, 8  # a few-shot set: 4 steps; sorting all 32 would fix every step's members
    sizes = torch.arange(n)
    g = _gen()
    epochs = [epoch_order(n, step, g, sizes).view(-1, step) for _ in range(3)]
    members = [{frozenset(s.tolist()) for s in e} for e in epochs]
    assert members[0] != members[1] or members[1] != members[2]


def test_text_sizes_count_both_texts():
    examples = [Example(text="abc", label=0), Example(text="ab", text_pair="xyz", label=1)]
    assert text_sizes(examples).tolist() == [3, 5]


def test_a_grouped_run_trains_and_differs_from_a_random_one():
    examples = make_examples(64)
    results = {}
    for grouped in (False, True):
        model = LinearTrainable(features(64))
        config = TrainConfig(epochs=2, batch_size=4, lr=0.1, seed=3, group_by_length=grouped)
        train(model, examples[:48], examples[48:], config, resolve_device("cpu"), progress=False)
        results[grouped] = torch.cat([p.detach().flatten() for _, p in model.parameters()])
    assert not torch.equal(results[False], results[True])  # the option is applied
