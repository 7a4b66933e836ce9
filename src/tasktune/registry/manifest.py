"""The artifact manifest: what an adaptation is, what it was made from, and the hash of every file.

An artifact is one folder per version::

    artifacts/<task>/v<N>/
        manifest.json          this model, written last-but-one (before the folder is renamed in)
        weights.safetensors    all tensors of the artifact (absent for kind "prompt")
        <name>.json            any other data (configs, prompt text, label maps)

Tensor and JSON conventions per kind (``weights.safetensors`` keys):

- ``prompt``: no tensors; the prompt (instruction, template, label words, demonstrations) as JSON,
  by convention ``prompt.json``.
- ``soft-prompt``: ``prompt_embeddings`` of shape (num_virtual_tokens, hidden_size), i.e. PEFT's own
  prompt-tuning key and layout; optional ``prompt_config.json`` with PromptTuningConfig fields. An
  encoder's prompt read by a trained head (readout ``head``) adds ``head.weight`` (num_labels,
  hidden_size) and ``head.bias``; that one does not export to PEFT.
- ``deep-prompt``: ``prompt_embeddings`` in PEFT's prefix-tuning layout, shape
  (num_virtual_tokens, num_layers * 2 * kv_dim) with kv_dim = head_dim * num_key_value_heads — the
  ``past_key_values`` of every layer flattened per virtual token, as PEFT saves it;
  ``prefix_config.json`` holds the PrefixTuningConfig fields.
- ``lora``: the keys produced by ``peft.get_peft_model_state_dict`` (adapter name stripped, e.g.
  ``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight``); ``lora_config.json`` holds the
  LoraConfig fields (see :func:`tasktune.registry.peft_export.peft_config_to_json`).
- ``head``: the head's own tensors (e.g. ``score.weight``, ``classifier.bias``); optional
  ``head_config.json`` (labels, pooling).
- ``full``: the full model state dict (``model.state_dict()`` keys); optional ``config.json``.

The manifest is JSON only; it never names code to import.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
)

from tasktune.backbones.identity import BackboneIdentity
from tasktune.registry.errors import IntegrityError, RegistryError
from tasktune.registry.names import MANIFEST_NAME, check_file_name, check_name

ArtifactKind = Literal["prompt", "soft-prompt", "deep-prompt", "lora", "head", "full"]
KINDS: tuple[str, ...] = ("prompt", "soft-prompt", "deep-prompt", "lora", "head", "full")
FORMAT = "tasktune.artifact/1"
_HEX64 = r"^[0-9a-f]{64}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(_Strict):
    sha256: str = Field(pattern=_HEX64)
    bytes: int = Field(ge=0)


class Manifest(_Strict):
    format: Literal["tasktune.artifact/1"] = FORMAT
    kind: ArtifactKind
    task: str
    task_hash: str | None = None
    # BackboneIdentity.to_dict(); None only for kind "prompt" (text works on any backbone).
    backbone: dict[str, JsonValue] | None
    route: str
    route_config: dict[str, JsonValue] = Field(default_factory=dict)
    metrics: dict[str, JsonValue] = Field(default_factory=dict)
    data_hash: str | None = None
    seed: int | None = None
    package_versions: dict[str, str] = Field(default_factory=dict)
    git_revision: str | None = None
    created: str
    parent: int | None = Field(default=None, ge=1)
    # The parent's manifest sha256: version numbers belong to the registry that made them, so an import
    # keeps ``parent`` only where the version of that number here is this very parent.
    parent_sha256: str | None = None
    run_id: str | None = None
    files: dict[str, FileEntry]

    @field_validator("task")
    @classmethod
    def _task_name(cls, v: str) -> str:
        return check_name(v, "task name")

    @field_validator("backbone")
    @classmethod
    def _backbone_complete(cls, v: dict | None) -> dict | None:
        if v is not None:
            missing = [k for k in BackboneIdentity.__dataclass_fields__ if k not in v]
            if missing:
                raise ValueError(f"backbone identity lacks {missing}")
        return v

    @field_validator("files")
    @classmethod
    def _file_names(cls, v: dict[str, FileEntry]) -> dict[str, FileEntry]:
        for name in v:
            check_file_name(name)
            if name == MANIFEST_NAME:
                raise ValueError(f"{MANIFEST_NAME!r} cannot list itself")
        return v

    @property
    def backbone_identity(self) -> BackboneIdentity | None:
        return None if self.backbone is None else BackboneIdentity.from_dict(self.backbone)

    @property
    def total_bytes(self) -> int:
        return sum(entry.bytes for entry in self.files.values())

    def to_json_bytes(self) -> bytes:
        """Canonical bytes (sorted keys, no NaN) so identical manifests hash identically."""
        try:
            text = json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=2, allow_nan=False)
        except ValueError as err:  # NaN/inf in metrics or route_config: not JSON, refuse early
            raise RegistryError(f"manifest for task {self.task!r} is not valid JSON: {err}") from err
        return (text + "\n").encode()


def parse_manifest(data: bytes, where: str) -> Manifest:
    """Parse and validate manifest bytes; errors name ``where`` (a path or archive member)."""
    try:
        return Manifest.model_validate(json.loads(data))
    except (ValueError, ValidationError) as err:
        raise IntegrityError(f"{where}: invalid manifest: {err}") from err


def json_safe(value: Any, where: str) -> bytes:
    """Serialise user JSON data for an artifact file; NaN/inf and non-JSON types are refused."""
    try:
        return (json.dumps(value, sort_keys=True, indent=2, allow_nan=False) + "\n").encode()
    except (TypeError, ValueError) as err:
        raise RegistryError(f"{where}: cannot be stored as JSON: {err}") from err
