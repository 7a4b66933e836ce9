"""PEFT export: an artifact exported with ``export_peft`` loads with plain
``PeftModel.from_pretrained`` and gives the same logits as the PEFT model it was saved from."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from peft import (
    LoraConfig,
    PeftModel,
    PrefixTuningConfig,
    PromptTuningConfig,
    get_peft_model,
    get_peft_model_state_dict,
)

from tasktune.registry import Registry, RegistryError, export_peft, peft_config_to_json
from tests.registry.conftest import llama_identity, make_tiny_llama

INPUT_IDS = torch.tensor([[5, 17, 42, 99, 3, 64], [7, 8, 9, 10, 11, 12]])


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=INPUT_IDS, attention_mask=torch.ones_like(INPUT_IDS)).logits


def _reload(tmp_path, artifact) -> torch.Tensor:
    out = export_peft(artifact, tmp_path / "peft", base_model_name_or_path="tiny-llama")
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    reloaded = PeftModel.from_pretrained(make_tiny_llama(seed=0), str(out)).eval()
    return _logits(reloaded)


def test_soft_prompt_round_trips_through_peft(registry: Registry, tmp_path):
    base = make_tiny_llama(seed=0)
    identity = llama_identity(base)
    model = get_peft_model(base, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=6)).eval()
    with torch.no_grad():
        emb = model.prompt_encoder["default"].embedding.weight
        emb.copy_(torch.randn(emb.shape, generator=torch.Generator().manual_seed(1)))
    state = get_peft_model_state_dict(model)
    assert set(state) == {"prompt_embeddings"} and state["prompt_embeddings"].shape == (6, 32)
    registry.save("sentiment", "soft-prompt", backbone=identity, route="prompt-tuning", tensors=state)
    expected = _logits(model)
    got = _reload(tmp_path, registry.load("sentiment", 1, expect_backbone=identity))
    assert expected.shape == (2, 6 + 6, 128)  # virtual tokens are prepended
    base_logits = _logits(make_tiny_llama(seed=0))
    assert not torch.allclose(expected[:, 6:], base_logits, atol=1e-3)  # the prompt changes predictions
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_lora_round_trips_through_peft(registry: Registry, tmp_path):
    base = make_tiny_llama(seed=0)
    identity = llama_identity(base)
    config = LoraConfig(
        task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    model = get_peft_model(base, config).eval()
    state = get_peft_model_state_dict(model)
    assert all(".lora_" in key for key in state)
    registry.save(
        "sentiment", "lora", backbone=identity, route="lora", tensors=state,
        json_files={"lora_config.json": peft_config_to_json(config)},
    )  # fmt: skip
    artifact = registry.load("sentiment", 1, expect_backbone=identity)
    assert artifact.json_files["lora_config.json"]["target_modules"] == ["q_proj", "v_proj"]
    expected = _logits(model)
    assert not torch.allclose(expected, _logits(make_tiny_llama(seed=0)), atol=1e-3)  # non-zero B
    torch.testing.assert_close(_reload(tmp_path, artifact), expected, atol=1e-6, rtol=0)


def test_deep_prompt_round_trips_through_peft(registry: Registry, tmp_path):
    base = make_tiny_llama(seed=0)
    identity = llama_identity(base)
    config = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)
    model = get_peft_model(base, config).eval()
    with torch.no_grad():
        emb = model.prompt_encoder["default"].embedding.weight
        emb.copy_(torch.randn(emb.shape, generator=torch.Generator().manual_seed(2)))
    state = get_peft_model_state_dict(model)
    assert state["prompt_embeddings"].shape == (4, 2 * 2 * 16)  # layers * (k, v) * kv_dim (GQA: 2 heads of 8)
    registry.save(
        "sentiment", "deep-prompt", backbone=identity, route="prefix-tuning", tensors=state,
        json_files={"prefix_config.json": peft_config_to_json(config)},
    )  # fmt: skip
    expected = _logits(model)
    assert not torch.allclose(expected, _logits(make_tiny_llama(seed=0)), atol=1e-3)  # the prefix matters
    torch.testing.assert_close(_reload(tmp_path, registry.load("sentiment", 1)), expected, atol=1e-6, rtol=0)


def _tiny_bert(seed: int = 0):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
    )
    return BertModel(config).eval()


def test_encoder_soft_prompt_exports_as_feature_extraction(registry: Registry, tmp_path):
    base = _tiny_bert()
    identity = dataclasses.replace(llama_identity(base), kind="encoder", architecture="BertModel")
    model = get_peft_model(
        base, PromptTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=5)
    ).eval()
    with torch.no_grad():
        emb = model.prompt_encoder["default"].embedding.weight
        emb.copy_(torch.randn(emb.shape, generator=torch.Generator().manual_seed(3)))
        expected = model(input_ids=INPUT_IDS, attention_mask=torch.ones_like(INPUT_IDS)).last_hidden_state
    registry.save(
        "enc", "soft-prompt", backbone=identity, route="pt", tensors=get_peft_model_state_dict(model)
    )
    out = export_peft(registry.load("enc", 1), tmp_path / "peft", base_model_name_or_path="tiny-bert")
    reloaded = PeftModel.from_pretrained(_tiny_bert(), str(out)).eval()
    assert reloaded.peft_config["default"].task_type == "FEATURE_EXTRACTION"
    with torch.no_grad():
        got = reloaded(input_ids=INPUT_IDS, attention_mask=torch.ones_like(INPUT_IDS)).last_hidden_state
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_full_and_head_artifacts_are_not_peft_adapters(registry: Registry, tmp_path):
    base = make_tiny_llama(seed=0)
    registry.save("t", "full", backbone=llama_identity(base), route="full-ft", tensors=base.state_dict())
    with pytest.raises(RegistryError, match="PEFT export supports soft-prompt, deep-prompt and lora"):
        export_peft(registry.load("t", 1), tmp_path / "out", "tiny-llama")
    assert not (tmp_path / "out").exists()


def test_export_refuses_to_overwrite(registry: Registry, tmp_path):
    base = make_tiny_llama(seed=0)
    registry.save(
        "t", "soft-prompt", backbone=llama_identity(base), route="pt",
        tensors={"prompt_embeddings": torch.zeros(3, 32)},
    )  # fmt: skip
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(RegistryError, match="must be new or empty"):
        export_peft(registry.load("t", 1), tmp_path / "out", "tiny-llama")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
