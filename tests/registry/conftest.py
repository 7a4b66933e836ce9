"""Registry fixtures: a fresh registry per test, backbone identities, and tiny in-memory models
(no tokenizer, no download) for the PEFT and CLI tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from tasktune.backbones.identity import BackboneIdentity
from tasktune.registry import Registry

TINY_LLAMA = dict(
    vocab_size=128,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
)


def identity(**overrides) -> BackboneIdentity:
    """A plausible identity for the tiny llama; override fields to fake another backbone."""
    base = BackboneIdentity(
        name="tiny-llama",
        kind="causal",
        architecture="LlamaForCausalLM",
        hidden_size=32,
        vocab_size=128,
        num_layers=2,
        num_parameters=20_000,
        config_hash="c" * 64,
        weights_hash="w" * 64,
        tokenizer_hash="t" * 64,
    )
    return dataclasses.replace(base, **overrides)


def make_tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**TINY_LLAMA)).eval()
    return model


def llama_identity(model) -> BackboneIdentity:
    return identity(num_parameters=sum(p.numel() for p in model.parameters()))


def save_soft_prompt(
    reg: Registry, task: str = "sentiment", *, hidden: int = 32, tokens: int = 20, **kw
) -> int:
    backbone = kw.pop("backbone", identity(hidden_size=hidden))
    tensor = torch.randn(tokens, hidden, generator=torch.Generator().manual_seed(tokens))
    return reg.save(
        task,
        "soft-prompt",
        backbone=backbone,
        route="prompt-tuning",
        tensors={"prompt_embeddings": tensor},
        metrics={"accuracy": 0.81},
        **kw,
    )


def save_prompt(reg: Registry, task: str = "sentiment", **kw) -> int:
    prompt = {"instruction": "Classify the review.", "template": "{text} It was", "words": ["bad", "good"]}
    return reg.save(
        task, "prompt", backbone=None, route="prompting", json_files={"prompt.json": prompt}, **kw
    )


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "reg")
    yield reg
    reg.close()


@pytest.fixture
def soft_prompt_factory(registry: Registry) -> Callable[..., int]:
    return lambda task="sentiment", **kw: save_soft_prompt(registry, task, **kw)


def write_tar(out: Path, members: dict[str, bytes]) -> Path:
    """A .tar.gz of ``members`` (name -> bytes) in the given order: hand-made archives for import tests."""
    import io
    import tarfile

    with tarfile.open(out, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out
