"""The loaded artifact and the per-kind content rules checked before anything is written."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasktune.backbones.identity import BackboneIdentity
from tasktune.registry.errors import BackboneMismatchError, RegistryError

if TYPE_CHECKING:
    import torch

from tasktune.registry.manifest import Manifest


@dataclass(frozen=True)
class Artifact:
    """One verified version: its manifest, tensors and JSON files (all hash-checked on load)."""

    task: str
    version: int
    manifest: Manifest
    path: Path
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    json_files: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.manifest.kind

    @property
    def backbone(self) -> BackboneIdentity | None:
        return self.manifest.backbone_identity


@dataclass(frozen=True)
class VersionInfo:
    """A registry row plus its aliases: what ``list``/``show`` return without touching the files."""

    task: str
    version: int
    kind: str
    created: str
    parent: int | None
    run_id: str | None
    bytes: int
    aliases: tuple[str, ...]
    manifest: Manifest
    manifest_sha256: str


def check_backbone(manifest: Manifest, expected: BackboneIdentity, where: str) -> None:
    """R8: refuse an adaptation made for another backbone, naming each differing field."""
    stored = manifest.backbone_identity
    if stored is None and manifest.kind == "prompt":  # a text prompt is not bound to weights
        return
    if stored is None:  # tensors without the backbone they fit (an archive imported before imports checked)
        raise BackboneMismatchError(
            f"{where} ({manifest.kind}) records no backbone, so nothing says its tensors fit "
            f"{expected.name!r}"
        )
    problems = stored.mismatches(expected)
    if problems:
        raise BackboneMismatchError(
            f"{where} ({manifest.kind}) was made for backbone {stored.name!r} and cannot be loaded onto "
            f"{expected.name!r}: " + "; ".join(f"{p} (artifact vs expected)" for p in problems)
        )


def check_contents(
    kind: str,
    tensors: dict[str, torch.Tensor],
    json_files: dict[str, Any],
    backbone: BackboneIdentity | None,
    where: str,
) -> None:
    """Enforce the conventions documented in :mod:`tasktune.registry.manifest`."""
    if kind != "prompt" and backbone is None:
        raise RegistryError(f"{where}: a {kind} artifact must record its backbone identity")
    import torch

    for name, value in tensors.items():
        if not isinstance(name, str) or not name:
            raise RegistryError(f"{where}: tensor names must be non-empty strings, got {name!r}")
        if not isinstance(value, torch.Tensor):
            raise RegistryError(f"{where}: tensor {name!r} is a {type(value).__name__}, not a torch.Tensor")
    if kind == "prompt":
        if tensors:
            raise RegistryError(f"{where}: a prompt artifact holds no tensors, got {sorted(tensors)[:5]}")
        if not json_files:
            raise RegistryError(f"{where}: a prompt artifact needs at least one JSON file (e.g. prompt.json)")
        return
    if not tensors:
        raise RegistryError(f"{where}: a {kind} artifact needs tensors")
    if kind in ("soft-prompt", "deep-prompt"):
        _check_prompt_embeddings(kind, tensors, backbone, where)
    if kind == "deep-prompt" and "prefix_config.json" not in json_files:
        raise RegistryError(f"{where}: a deep-prompt artifact needs prefix_config.json (PrefixTuningConfig)")
    if kind == "lora":
        if "lora_config.json" not in json_files:
            raise RegistryError(f"{where}: a lora artifact needs lora_config.json (LoraConfig fields)")
        if not any("lora_" in name for name in tensors):
            raise RegistryError(
                f"{where}: no LoRA tensors among {sorted(tensors)[:3]}...; expected keys from "
                "peft.get_peft_model_state_dict (e.g. '...q_proj.lora_A.weight')"
            )


# An encoder's soft prompt may carry the linear head that reads its pooled text (readout "head").
HEAD_TENSORS = frozenset({"head.weight", "head.bias"})


def _check_prompt_embeddings(kind: str, tensors: dict, backbone: BackboneIdentity | None, where: str) -> None:
    names = set(tensors)
    allowed_extra = HEAD_TENSORS if kind == "soft-prompt" else frozenset()
    if "prompt_embeddings" not in names or not names - {"prompt_embeddings"} <= allowed_extra:
        got = sorted(tensors)
        extra = (
            " (and, for an encoder's head readout, 'head.weight' and 'head.bias')" if allowed_extra else ""
        )
        raise RegistryError(f"{where}: a {kind} artifact holds only 'prompt_embeddings'{extra}, got {got}")
    emb = tensors["prompt_embeddings"]
    if emb.ndim != 2 or not emb.is_floating_point():
        raise RegistryError(
            f"{where}: prompt_embeddings must be a 2-D float tensor, got shape {tuple(emb.shape)} {emb.dtype}"
        )
    assert backbone is not None  # checked by the caller
    if kind == "soft-prompt" and emb.shape[1] != backbone.hidden_size:
        raise RegistryError(
            f"{where}: prompt_embeddings has width {emb.shape[1]} but backbone {backbone.name!r} has "
            f"hidden_size {backbone.hidden_size}; expected shape (num_virtual_tokens, {backbone.hidden_size})"
        )
    if names & HEAD_TENSORS:
        _check_head(tensors, backbone.hidden_size, where)
    if kind == "deep-prompt" and emb.shape[1] % (2 * backbone.num_layers):
        raise RegistryError(
            f"{where}: deep-prompt width {emb.shape[1]} is not a multiple of 2 * num_layers "
            f"({2 * backbone.num_layers}); expected PEFT's (num_virtual_tokens, num_layers * 2 * kv_dim)"
        )


def _check_head(tensors: dict, hidden_size: int, where: str) -> None:
    weight, bias = tensors.get("head.weight"), tensors.get("head.bias")
    if weight is None or bias is None:
        raise RegistryError(f"{where}: a soft prompt's head needs both 'head.weight' and 'head.bias'")
    if weight.ndim != 2 or weight.shape[1] != hidden_size or bias.shape != (weight.shape[0],):
        raise RegistryError(
            f"{where}: head.weight {tuple(weight.shape)} and head.bias {tuple(bias.shape)} do not fit "
            f"hidden_size {hidden_size}; expected (num_labels, {hidden_size}) and (num_labels,)"
        )


def prepare_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, detached; tensors sharing storage (tied weights) are cloned, since
    safetensors stores each tensor separately and refuses shared memory."""
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        key = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
        out[name] = tensor.clone() if key in seen else tensor
        seen.add(key)
    return out
