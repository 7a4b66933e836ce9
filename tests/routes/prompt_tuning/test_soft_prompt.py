import pytest
import torch

from tasktune.backbones.loading import load_backbone
from tasktune.routes.prompt_tuning.soft_prompt import (
    Encoded,
    deep_label_logits,
    init_deep,
    init_shallow,
    shallow_label_logits,
)

ROWS = [[5, 9, 13, 40, 41], [7, 8], [100, 3, 4, 5, 6, 7, 8, 9], [60]]


@pytest.fixture(scope="module")
def llama(tiny_llama_dir):
    return load_backbone(str(tiny_llama_dir), device="cpu")


def _labels(b):
    return torch.tensor([[10, 11]] * b)


def test_mixed_shallow_batch_equals_one_row_at_a_time(llama):
    g = torch.Generator().manual_seed(0)
    prompts = torch.randn(4, 6, 32, generator=g) * 0.02  # a different soft prompt per row (per task)
    ac = llama.device.autocast()
    batch = shallow_label_logits(
        llama.model, Encoded.of(ROWS, 0, torch.device("cpu")), prompts, _labels(4), ac
    )
    for i, row in enumerate(ROWS):
        single = shallow_label_logits(
            llama.model, Encoded.of([row], 0, torch.device("cpu")), prompts[i : i + 1], _labels(1), ac
        )
        torch.testing.assert_close(batch[i : i + 1], single, atol=1e-4, rtol=1e-4)


def test_shallow_matches_peft_prompt_tuning(llama):
    from peft import PromptTuningConfig, TaskType, get_peft_model

    n = 5
    prompt = torch.randn(n, 32, generator=torch.Generator().manual_seed(1)) * 0.02
    peft_model = get_peft_model(
        llama.model, PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=n)
    )
    with torch.no_grad():
        peft_model.prompt_encoder["default"].embedding.weight.copy_(prompt)
    ids = torch.tensor([ROWS[0]])
    expected = peft_model(input_ids=ids).logits[0, -1, [10, 11]]
    got = shallow_label_logits(
        llama.model,
        Encoded.of([ROWS[0]], 0, torch.device("cpu")),
        prompt[None],
        _labels(1),
        llama.device.autocast(),
    )[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_mixed_deep_batch_equals_one_row_at_a_time(llama):
    g = torch.Generator().manual_seed(2)
    prefix = init_deep(llama.model, 3, g, text_ids=[5, 6, 7])  # (layers, 2, kv_heads, N, head_dim)
    prefixes = torch.stack([prefix, prefix * 0.5, prefix + 0.01, prefix])  # per-row prefixes
    ac = llama.device.autocast()
    batch = deep_label_logits(llama.model, Encoded.of(ROWS, 0, torch.device("cpu")), prefixes, _labels(4), ac)
    for i, row in enumerate(ROWS):
        single = deep_label_logits(
            llama.model, Encoded.of([row], 0, torch.device("cpu")), prefixes[i : i + 1], _labels(1), ac
        )
        torch.testing.assert_close(batch[i : i + 1], single, atol=1e-4, rtol=1e-4)


def test_gradients_reach_only_the_prompt(llama):
    prompt = torch.nn.Parameter(torch.randn(1, 4, 32) * 0.02)
    logits = shallow_label_logits(
        llama.model,
        Encoded.of([ROWS[0]], 0, torch.device("cpu")),
        prompt,
        _labels(1),
        llama.device.autocast(),
    )
    torch.nn.functional.cross_entropy(logits, torch.tensor([1])).backward()
    assert prompt.grad is not None and prompt.grad.abs().sum() > 0
    assert all(p.grad is None for p in llama.model.parameters())


@pytest.mark.parametrize("how", ["random", "vocab", "text", "labels"])
def test_initialisations(llama, how):
    p = init_shallow(
        llama.model,
        7,
        how,
        label_ids=[10, 11],
        text_ids=[5, 6, 7],
        generator=torch.Generator().manual_seed(0),
    )
    assert p.shape == (7, 32) and torch.isfinite(p).all()
    if how == "labels":
        emb = llama.model.get_input_embeddings().weight
        torch.testing.assert_close(p[2], emb[10])  # cycled label tokens: 10, 11, 10, ...


def test_deep_prefix_round_trips_through_peft_layout_and_matches_peft(llama):
    from peft import PrefixTuningConfig, TaskType, get_peft_model

    from tasktune.routes.prompt_tuning.soft_prompt import deep_from_peft, deep_to_peft

    prefix = init_deep(llama.model, 3, torch.Generator().manual_seed(3), text_ids=[5, 6, 7])
    flat = deep_to_peft(prefix)
    cfg = llama.model.config
    assert torch.equal(deep_from_peft(flat, cfg.num_hidden_layers, cfg.num_key_value_heads), prefix)
    peft_model = get_peft_model(
        llama.model,
        PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=3, prefix_projection=False),
    )
    with torch.no_grad():
        peft_model.prompt_encoder["default"].embedding.weight.copy_(flat)
    expected = peft_model(input_ids=torch.tensor([ROWS[0]])).logits[0, -1, [10, 11]]
    got = deep_label_logits(
        llama.model,
        Encoded.of([ROWS[0]], 0, torch.device("cpu")),
        prefix[None],
        _labels(1),
        llama.device.autocast(),
    )[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_shallow_prompt_as_a_computed_prefix_gives_the_same_logits(llama):
    from tasktune.routes.prompt_tuning.soft_prompt import shallow_to_prefix

    prompts = torch.randn(2, 6, 32, generator=torch.Generator().manual_seed(4)) * 0.5
    ac = llama.device.autocast()
    enc = Encoded.of(ROWS, 0, torch.device("cpu"))
    full = shallow_label_logits(llama.model, enc, prompts[[0, 1, 0, 1]], _labels(4), ac)
    prefixes = torch.stack([shallow_to_prefix(llama.model, p, ac) for p in prompts])
    assert prefixes.shape[1:] == (2, 2, 2, 6, 8)  # layers, k/v, kv_heads, N, head_dim of the tiny llama
    via_prefix = deep_label_logits(llama.model, enc, prefixes[[0, 1, 0, 1]], _labels(4), ac)
    torch.testing.assert_close(via_prefix, full, atol=1e-5, rtol=1e-5)


def test_prefixes_of_different_lengths_share_a_batch(llama):
    g = torch.Generator().manual_seed(5)
    short = init_deep(llama.model, 2, g, text_ids=[5, 6])
    long = init_deep(llama.model, 5, g, text_ids=[7, 8, 9, 10, 11])
    ac, cpu = llama.device.autocast(), torch.device("cpu")
    padded = torch.zeros(4, *long.shape)
    padded[:, ..., -2:, :] = short  # every row left-padded to 5 slots...
    padded[1] = padded[3] = long  # ...rows 1 and 3 really use all five
    lengths = torch.tensor([2, 5, 2, 5])
    batch = deep_label_logits(
        llama.model, Encoded.of(ROWS, 0, cpu), padded, _labels(4), ac, prefix_lengths=lengths
    )
    for i, row in enumerate(ROWS):
        own = (short if lengths[i] == 2 else long)[None]
        single = deep_label_logits(llama.model, Encoded.of([row], 0, cpu), own, _labels(1), ac)
        torch.testing.assert_close(batch[i : i + 1], single, atol=1e-5, rtol=1e-5)
