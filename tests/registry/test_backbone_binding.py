"""R8: an adaptation only loads onto the backbone it was made for, and says why not otherwise."""

from __future__ import annotations

import pytest

from tasktune.registry import BackboneMismatchError, Registry
from tests.registry.conftest import identity, save_prompt, save_soft_prompt


def test_soft_prompt_for_hidden_64_refused_on_hidden_32(registry: Registry):
    save_soft_prompt(registry, hidden=64, backbone=identity(hidden_size=64, name="wide"))
    with pytest.raises(BackboneMismatchError) as err:
        registry.load("sentiment", 1, expect_backbone=identity(hidden_size=32))
    message = str(err.value)
    assert "hidden_size: 64 vs 32" in message
    assert "'wide'" in message and "'tiny-llama'" in message and "sentiment v1" in message


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("vocab_size", 999, "vocab_size: 128 vs 999"),
        ("num_layers", 4, "num_layers: 2 vs 4"),
        ("weights_hash", "x" * 64, "weights_hash: " + "w" * 64 + " vs " + "x" * 64),
        ("tokenizer_hash", "y" * 64, "tokenizer_hash"),
    ],
)
def test_each_identity_field_is_named(registry: Registry, field, value, expected):
    save_soft_prompt(registry)
    with pytest.raises(BackboneMismatchError, match=expected):
        registry.load("sentiment", 1, expect_backbone=identity(**{field: value}))


def test_same_backbone_loads_and_text_prompts_are_unbound(registry: Registry):
    save_soft_prompt(registry)
    save_prompt(registry)
    assert registry.load("sentiment", 1, expect_backbone=identity()).backbone == identity()
    assert registry.load("sentiment", 2, expect_backbone=identity(hidden_size=7)).backbone is None


def test_mismatch_is_refused_before_tensors_are_read(registry: Registry, monkeypatch):
    save_soft_prompt(registry)
    import safetensors.torch

    def boom(*a, **k):
        raise AssertionError("tensors were read before the backbone check")

    monkeypatch.setattr(safetensors.torch, "load_file", boom)
    with pytest.raises(BackboneMismatchError):
        registry.load("sentiment", 1, expect_backbone=identity(hidden_size=16))


def test_tensors_that_record_no_backbone_are_refused_where_one_is_expected():
    """Such a manifest can only come from an import made before imports were checked; the registry must
    still list it (reads of every version parse it), and loading it onto a backbone is refused."""
    from tasktune.registry.artifact import check_backbone
    from tasktune.registry.manifest import Manifest

    files = {"weights.safetensors": {"sha256": "0" * 64, "bytes": 1}}
    bare = Manifest(kind="soft-prompt", task="t", backbone=None, route="r", created="now", files=files)
    with pytest.raises(BackboneMismatchError, match="records no backbone"):
        check_backbone(bare, identity(), "t v1")
    text = bare.model_copy(update={"kind": "prompt", "files": {"p.json": {"sha256": "0" * 64, "bytes": 1}}})
    check_backbone(text, identity(), "t v1")  # a text prompt fits any backbone
