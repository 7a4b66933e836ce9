"""Layer-wise lr decay: which tensors a backbone's names put at which depth, the optimizer's groups,
and the loop training each group at its own lr."""

from __future__ import annotations

import pytest
import torch

from tasktune.backbones.device import resolve_device
from tasktune.training import TrainConfig, train
from tasktune.training.schedule import build_optimizer, layer_lr_scales, parameter_groups
from tests.training.helpers import LinearTrainable, features, make_examples, tensors_of


def test_bert_names_decay_from_the_head_down_to_the_embeddings():
    names = [
        "model.embeddings.word_embeddings.weight",
        "model.embeddings.LayerNorm.weight",
        "model.encoder.layer.0.attention.self.query.weight",
        "model.encoder.layer.1.output.dense.weight",
        "model.pooler.dense.weight",
        "head.1.weight",
    ]
    scales = layer_lr_scales(names, 0.5)
    # Two blocks: top is depth 3; block 1 at depth 2, block 0 at 1, embeddings at 0.
    assert scales == {
        names[0]: 0.125,
        names[1]: 0.125,
        names[2]: 0.25,
        names[3]: 0.5,
        names[4]: 1.0,
        names[5]: 1.0,
    }


def test_llama_and_lora_names_follow_their_block():
    names = [
        "model.model.embed_tokens.weight",
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight",
        "base_model.model.model.layers.11.self_attn.v_proj.lora_B.default.weight",
        "model.model.norm.weight",
    ]
    scales = layer_lr_scales(names, 0.9)
    assert scales[names[2]] == pytest.approx(0.9)  # the last block is one below the top
    assert scales[names[1]] == pytest.approx(0.9**12)
    assert scales[names[0]] == pytest.approx(0.9**13)
    assert scales[names[3]] == 1.0


def test_names_without_blocks_are_all_top():
    # A soft prompt's "prompt_embeddings" is not the backbone's embeddings.
    assert layer_lr_scales(["prompt_embeddings", "head.weight"], 0.5) == {
        "prompt_embeddings": 1.0,
        "head.weight": 1.0,
    }


def test_groups_put_the_schedules_lr_first():
    params = [(n, torch.nn.Parameter(torch.zeros(1))) for n in ("model.h.0.w", "model.h.1.w", "lm_head.w")]
    config = TrainConfig(max_steps=1, lr=1e-3, layer_lr_decay=0.5)
    groups = parameter_groups(params, config)
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 5e-4, 2.5e-4])
    assert [len(g["params"]) for g in groups] == [1, 1, 1]
    assert len(parameter_groups(params, config.model_copy(update={"layer_lr_decay": None}))) == 1
    assert len(parameter_groups(params, config.model_copy(update={"layer_lr_decay": 1.0}))) == 1
    optimizer = build_optimizer(params, config.model_copy(update={"optimizer": "adafactor"}))
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-3, 5e-4, 2.5e-4])


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.5, float("nan")])
def test_decay_outside_zero_to_one_is_refused(bad):
    with pytest.raises(ValueError, match="layer_lr_decay"):
        TrainConfig(max_steps=1, layer_lr_decay=bad)


def test_the_loop_trains_a_lower_block_at_its_decayed_lr():
    examples = make_examples(48)
    table = features(48)
    names = ("model.encoder.layer.0.weight", "head.bias")
    moved = {}
    for decay in (None, 1e-4):
        model = LinearTrainable(table, dropout=0.0, names=names)
        start = tensors_of(model)
        config = TrainConfig(max_steps=6, batch_size=8, lr=0.05, layer_lr_decay=decay, seed=3)
        train(model, examples[:32], examples[32:], config, resolve_device("cpu"), progress=False)
        end = tensors_of(model)
        moved[decay] = {n: (end[n] - start[n]).abs().max().item() for n in names}
    # Adam's step is lr times a unit-scale direction: the block's change shrinks with its lr; the
    # top tensor still trains at the full lr (it moves further, making up for the block).
    assert moved[1e-4][names[0]] < 1e-3 * moved[None][names[0]]
    assert moved[1e-4][names[1]] > 0.5 * moved[None][names[1]]


def test_weight_decay_spares_biases_and_norms_and_keeps_the_top_lr_first():
    named = [
        ("model.encoder.layer.0.attention.query.weight", torch.nn.Parameter(torch.ones(4, 4))),
        ("model.encoder.layer.0.attention.query.bias", torch.nn.Parameter(torch.ones(4))),
        ("model.encoder.layer.0.output.LayerNorm.weight", torch.nn.Parameter(torch.ones(4))),
        ("head.weight", torch.nn.Parameter(torch.ones(2, 4))),
        ("head.bias", torch.nn.Parameter(torch.ones(2))),
    ]
    config = TrainConfig(max_steps=1, lr=1e-2, weight_decay=0.1)
    groups = parameter_groups(named, config)
    assert [(len(g["params"]), g.get("weight_decay", "default")) for g in groups] == [
        (2, "default"),
        (3, 0.0),
    ]
    optimizer = build_optimizer(named, config)
    for p in (p for _, p in named):
        p.grad = torch.zeros_like(p)  # nothing to learn: only weight decay can move a tensor
    optimizer.step()
    after = {n: float(p.detach().flatten()[0]) for n, p in named}
    assert after["head.weight"] == pytest.approx(1 - 1e-2 * 0.1)
    assert after["head.bias"] == 1.0 and after["model.encoder.layer.0.output.LayerNorm.weight"] == 1.0
    # With layer-wise decay: per lr, decayed then not; the top lr's decayed group first.
    layered = parameter_groups(named, config.model_copy(update={"layer_lr_decay": 0.5}))
    assert [(g["lr"], "weight_decay" in g) for g in layered] == [
        (1e-2, False),
        (1e-2, True),
        (5e-3, False),
        (5e-3, True),
    ]
    # No weight decay: one group per lr, as before.
    assert len(parameter_groups(named, config.model_copy(update={"weight_decay": 0.0}))) == 1
