"""PEFT export: an artifact exported with ``export_peft`` loads with plain
``PeftModel.from_pretrained`` and gives the same logits as the PEFT model it was saved from."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from peft import (
    LoraConfig,
    PeftModel,
    PrefixTuningConfig,
    PromptTuningConfig,
    get_peft_model,
    get_peft_model_state_dict,
    set_peft_model_state_dict,
)
from peft.tuners.lora.config import LoraRuntimeConfig

from tasktune.registry import Registry, RegistryError, export_peft, peft_config_to_json
from tasktune.registry.peft_export import build_peft_config, lora_config_from_json
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


def test_stored_lora_config_rebuilds_into_a_config_get_peft_model_accepts(registry: Registry, tiny_llama_dir):
    """``lora_config.json`` holds PEFT's per-process ``runtime_config`` as a plain dict; the rebuilt
    LoraConfig must carry PEFT's own runtime type, or ``get_peft_model`` fails on it."""
    from transformers import AutoModelForCausalLM

    def load():
        return AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()

    config = LoraConfig(
        task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    trained = get_peft_model(load(), config).eval()
    stored = peft_config_to_json(config)
    assert isinstance(stored["runtime_config"], dict)  # what older and current artifacts hold
    registry.save(
        "sentiment", "lora", backbone=llama_identity(trained), route="lora",
        tensors=get_peft_model_state_dict(trained), json_files={"lora_config.json": stored},
    )  # fmt: skip
    artifact = registry.load("sentiment", 1)
    rebuilt = build_peft_config(artifact, str(tiny_llama_dir))
    model = get_peft_model(load(), rebuilt)  # failed on runtime_config.ephemeral_gpu_offload
    assert isinstance(rebuilt.runtime_config, LoraRuntimeConfig) and rebuilt.inference_mode
    assert isinstance(lora_config_from_json(stored, "here").runtime_config, LoraRuntimeConfig)
    set_peft_model_state_dict(model, artifact.tensors)
    assert set(get_peft_model_state_dict(model)) == set(artifact.tensors)
    ids = torch.tensor([[1, 5, 7, 9, 11]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, trained(input_ids=ids).logits, atol=0, rtol=0)


def test_a_soft_prompt_ensemble_is_refused(registry: Registry, tmp_path):
    """An ensemble keeps its members one after the other in one prompt_embeddings tensor: exported as
    is, PEFT would read them as one long prompt, which no one trained."""
    base = make_tiny_llama(seed=0)
    registry.save(
        "sentiment", "soft-prompt", backbone=llama_identity(base), route="prompt_ensemble",
        tensors={"prompt_embeddings": torch.randn(3 * 4, 32, generator=torch.Generator().manual_seed(4))},
        json_files={"ensemble.json": {"members": 3, "num_virtual_tokens": 4, "options": {}}},
    )  # fmt: skip
    message = "is an ensemble of 3 soft prompts; PEFT has no ensemble format: export a single prompt_tuning"
    with pytest.raises(RegistryError, match=message):
        export_peft(registry.load("sentiment", 1), tmp_path / "out", "tiny-llama")
    assert not (tmp_path / "out").exists()


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
    # PEFT places the tokens before [CLS] and has no similarity readout: the export says how tasktune
    # reads them, so nobody takes PEFT's outputs for the route's.
    usage = json.loads((out / "tasktune_soft_prompt.json").read_text())
    assert "before [CLS]" in usage["input"] and "similarity" in usage["readout"]


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


def test_a_route_soft_prompt_exports_how_it_is_read(registry: Registry, tmp_path):
    """PEFT's config cannot hold a prompt-initialised soft prompt's input format or its label offset:
    they travel in tasktune_soft_prompt.json next to the adapter."""
    import json

    base = make_tiny_llama(seed=0)
    meta = {"options": {"init": "prompt"}, "label_token_ids": [5, 9], "label_bias": [0.25, -0.25]}
    registry.save(
        "sentiment", "soft-prompt", backbone=llama_identity(base), route="prompt_tuning",
        tensors={"prompt_embeddings": torch.zeros(4, 32)}, json_files={"soft_prompt.json": meta},
    )  # fmt: skip
    out = export_peft(registry.load("sentiment", 1), tmp_path / "peft", base_model_name_or_path="tiny")
    usage = json.loads((out / "tasktune_soft_prompt.json").read_text())
    assert usage["label_bias"] == [0.25, -0.25] and usage["label_token_ids"] == [5, 9]
    assert "zero-shot prompt" in usage["input"]
    PeftModel.from_pretrained(make_tiny_llama(seed=0), str(out))  # the extra file does not disturb PEFT
