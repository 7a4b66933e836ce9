import pytest
import torch

from tasktune.backbones.catalog import EmbeddedBackbone
from tasktune.backbones.device import resolve_device
from tasktune.backbones.loading import load_backbone, load_tokenizer
from tasktune.errors import BackboneError
from tests.tiny_models import build_llama


def test_tiny_llama_loads_frozen_with_identity(tiny_llama_dir):
    b = load_backbone(str(tiny_llama_dir), device="cpu")
    assert b.kind == "causal" and b.identity.architecture == "LlamaForCausalLM"
    assert b.identity.hidden_size == 32 and b.identity.num_layers == 2
    assert b.identity.num_parameters == sum(p.numel() for p in b.model.parameters())
    assert not any(p.requires_grad for p in b.model.parameters())
    assert not b.model.training
    assert b.tokenizer.pad_token is not None
    assert b.device.compute_dtype == torch.float32


def test_tiny_bert_is_an_encoder(tiny_bert_dir):
    b = load_backbone(str(tiny_bert_dir), device="cpu")
    assert b.kind == "encoder" and b.identity.architecture == "BertModel"
    out = b.model(**b.tokenizer(["good food"], return_tensors="pt"))
    assert out.last_hidden_state.shape[-1] == 32


def test_identity_is_stable_and_tells_models_apart(tiny_llama_dir, tmp_path):
    a = load_backbone(str(tiny_llama_dir), device="cpu").identity
    again = load_backbone(str(tiny_llama_dir), device="cpu").identity
    other = load_backbone(str(build_llama(tmp_path / "wide", hidden_size=64)), device="cpu").identity
    assert a == again
    problems = a.mismatches(other)
    assert "hidden_size: 32 vs 64" in problems
    assert any(p.startswith("weights_hash") for p in problems)
    assert a.mismatches(again) == []


def test_same_architecture_other_weights_differ_only_in_weights(tmp_path):
    a = load_backbone(str(build_llama(tmp_path / "a", seed=0)), device="cpu").identity
    b = load_backbone(str(build_llama(tmp_path / "b", seed=1)), device="cpu").identity
    assert a.config_hash == b.config_hash and a.tokenizer_hash == b.tokenizer_hash
    assert a.weights_hash != b.weights_hash


def test_unknown_backbone_is_a_clear_offline_error():
    with pytest.raises(BackboneError) as err:
        load_backbone("some-org/some-model")
    msg = str(err.value)
    assert "unknown backbone 'some-org/some-model'" in msg and "--allow-hub" in msg
    assert "smollm2-135m-instruct" in msg


def test_folder_without_config(tmp_path):
    with pytest.raises(BackboneError, match=r"no config\.json"):
        load_backbone(str(tmp_path))


def test_tokenizer_only(tiny_bert_dir):
    tok = load_tokenizer(str(tiny_bert_dir))
    assert tok("good food")["input_ids"][0] == tok.cls_token_id


def test_missing_package_names_the_install_command():
    ghost = EmbeddedBackbone(
        name="ghost",
        kind="causal",
        description="",
        package="no_such_package_xyz",
        pip_spec="ghost==1",
        folder="m",
    )
    with pytest.raises(BackboneError, match="pip install ghost==1"):
        ghost.source_path()


def test_device_choice_is_explained():
    cpu = resolve_device("cpu")
    assert cpu.compute_dtype == torch.float32 and "CPU" in cpu.reason
    if not torch.cuda.is_available():
        assert resolve_device(None).device.type == "cpu"
        with pytest.raises(BackboneError, match="CUDA is not available"):
            resolve_device("cuda")


def test_input_limit_stays_inside_the_models_positions():
    from pathlib import Path
    from types import SimpleNamespace

    from tasktune.backbones.loading import Backbone

    def backbone(model_type, positions, pad=1, told=10**30):
        config = SimpleNamespace(model_type=model_type, max_position_embeddings=positions, pad_token_id=pad)
        tok = SimpleNamespace(model_max_length=told)
        return Backbone("b", "encoder", SimpleNamespace(config=config), tok, None, None, Path("."))

    assert backbone("bert", 512).input_limit(1024) == 512
    assert backbone("roberta", 514).input_limit(1024) == 512  # ids start after the padding index
    assert backbone("xlm-roberta", 514).input_limit(256, reserved=20) == 256
    assert backbone("roberta", 514).input_limit(600, reserved=20) == 492
    assert backbone("bert", 512, told=128).input_limit(256) == 128  # the tokenizer's own limit
