"""Export a registry artifact in PEFT's own adapter layout, so plain
``PeftModel.from_pretrained(base_model, out_dir)`` loads it: ``adapter_config.json`` (the PEFT
config) and ``adapter_model.safetensors`` (PEFT state-dict keys, adapter name stripped).

Supported kinds: ``soft-prompt`` (PromptTuningConfig), ``deep-prompt`` (PrefixTuningConfig) and
``lora`` (LoraConfig). The registry's tensor names already follow PEFT's, so tensors are written
unchanged; only the config is rebuilt from the artifact (backbone identity + stored config JSON).
"""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path
from typing import Any

from tasktune.registry.artifact import Artifact
from tasktune.registry.errors import RegistryError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
EXTRA_WEIGHTS = "tasktune_extras.safetensors"  # head / label offset of a LoRA adaptation (not PEFT's)
# Fields PEFT sets itself or that describe where the config came from, not the adapter.
_NOT_USER_FIELDS = {"peft_type", "base_model_name_or_path", "revision", "auto_mapping", "peft_version"}
# Per-process settings, not part of the adapter. ``peft_config_to_json`` (``dataclasses.asdict``) keeps
# LoraConfig's ``runtime_config`` as a plain dict, but LoraConfig would keep that dict as it is (it only
# rebuilds the sub-configs it saves itself), and ``get_peft_model`` then fails on
# ``runtime_config.ephemeral_gpu_offload``. PEFT never saves it (``LoraConfig.to_dict`` drops it) and drops
# it when reading an ``adapter_config.json`` that has one, so it is dropped here too: the rebuilt config
# gets PEFT's default ``LoraRuntimeConfig``, as ``PeftModel.from_pretrained`` would give it.
_RUNTIME_FIELDS = {"runtime_config"}
SOFT_PROMPT_META = "soft_prompt.json"  # the route's own description of a soft prompt
SOFT_PROMPT_USAGE = "tasktune_soft_prompt.json"  # written next to an exported soft prompt
ENSEMBLE_FILE = "ensemble.json"  # a prompt ensemble's members, concatenated in one prompt_embeddings


def peft_config_to_json(config: Any) -> dict[str, Any]:
    """A PEFT config as plain JSON data (sets → sorted lists, enums → values), for the
    ``lora_config.json`` / ``prefix_config.json`` / ``prompt_config.json`` artifact files."""

    def plain(value: Any) -> Any:
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, set | frozenset):
            return sorted(plain(v) for v in value)
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        return value

    data = plain(dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config))
    json.dumps(data, allow_nan=False)  # fail here, naming nothing hidden, if a field is not JSON
    return {k: v for k, v in data.items() if k not in _NOT_USER_FIELDS}


def _build(config_cls: type, fields: dict[str, Any], where: str) -> Any:
    known = {f.name for f in dataclasses.fields(config_cls)}
    skipped = _NOT_USER_FIELDS | _RUNTIME_FIELDS
    unknown = sorted(set(fields) - known - skipped)
    if unknown:
        raise RegistryError(f"{where}: {config_cls.__name__} has no field(s) {unknown}")
    kwargs = {k: v for k, v in fields.items() if k in known and k not in skipped}
    try:
        return config_cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise RegistryError(f"{where}: invalid {config_cls.__name__}: {err}") from err


def _default_task_type(artifact: Artifact) -> str:
    backbone = artifact.backbone
    return "CAUSAL_LM" if backbone is not None and backbone.kind == "causal" else "FEATURE_EXTRACTION"


def lora_config_from_json(fields: dict[str, Any], where: str) -> Any:
    """The LoraConfig a stored ``lora_config.json`` describes, in inference mode, ready for
    ``get_peft_model`` (runtime-only fields dropped; raises :class:`RegistryError` naming ``where``)."""
    from peft import LoraConfig

    return _build(LoraConfig, {**fields, "inference_mode": True}, where)


def build_peft_config(artifact: Artifact, base_model_name_or_path: str) -> Any:
    """The PEFT config object matching an artifact (raises for kinds PEFT cannot load)."""
    from peft import PrefixTuningConfig, PromptTuningConfig

    where = f"{artifact.task} v{artifact.version} ({artifact.kind})"
    backbone = artifact.backbone
    if artifact.kind == "soft-prompt" and ENSEMBLE_FILE in artifact.json_files:
        # prompt_embeddings holds the members one after the other: exported as is, PEFT would load them
        # as one long prompt, a model nobody trained.
        meta = artifact.json_files[ENSEMBLE_FILE]
        members = meta.get("members", "several") if isinstance(meta, dict) else "several"
        raise RegistryError(
            f"{where} is an ensemble of {members} soft prompts; PEFT has no ensemble format: export a "
            "single prompt_tuning adaptation instead"
        )
    if artifact.kind == "soft-prompt" and "head.weight" in artifact.tensors:
        # PEFT's prompt tuning for classification (SEQ_CLS) puts its classifier on BERT's pooler output
        # ([CLS] through a dense layer); this head reads the mean of the text's own tokens. Exported,
        # it would be a different model, so it is not.
        raise RegistryError(
            f"{where} is an encoder soft prompt with a trained head on its mean-pooled text; PEFT has no "
            "such model: export one trained with readout 'similarity', or serve this one with tasktune"
        )
    if artifact.kind in ("soft-prompt", "deep-prompt"):
        assert backbone is not None  # enforced at save time for these kinds
        num_tokens = int(artifact.tensors["prompt_embeddings"].shape[0])
        name = "prompt_config.json" if artifact.kind == "soft-prompt" else "prefix_config.json"
        fields = {"task_type": _default_task_type(artifact), **artifact.json_files.get(name, {})}
        fields.update(num_virtual_tokens=num_tokens, num_layers=backbone.num_layers, inference_mode=True)
        if artifact.kind == "soft-prompt":
            # The stored embedding is the trained prompt itself: no tokenizer-based init is needed.
            fields.update(token_dim=backbone.hidden_size, num_transformer_submodules=1)
            fields["prompt_tuning_init"] = "RANDOM"
            fields.pop("prompt_tuning_init_text", None)
            config = _build(PromptTuningConfig, fields, where)
        else:
            # Saved prefixes are already projected (PEFT saves the encoder's output), so the
            # exported adapter loads them directly without the projection MLP.
            fields["prefix_projection"] = False
            config = _build(PrefixTuningConfig, fields, where)
    elif artifact.kind == "lora":
        config = lora_config_from_json(artifact.json_files["lora_config.json"], where)
    else:
        raise RegistryError(
            f"{where}: PEFT export supports soft-prompt, deep-prompt and lora, not {artifact.kind!r}"
        )
    config.base_model_name_or_path = base_model_name_or_path
    return config


def export_peft(artifact: Artifact, out_dir: Path | str, base_model_name_or_path: str) -> Path:
    """Write ``adapter_config.json`` + ``adapter_model.safetensors`` into ``out_dir`` (new or empty)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RegistryError(f"{out}: export folder must be new or empty (refusing to overwrite files)")
    config = build_peft_config(artifact, base_model_name_or_path)
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(out))
    tensors = {k: v.contiguous() for k, v in artifact.tensors.items()}
    extras = {}
    if artifact.kind == "lora":
        # A LoRA adaptation may carry a classification head or a label offset besides the adapter:
        # PEFT would drop those keys with only a warning (and predict differently), so they go to a
        # file of their own, next to the adapter.
        extras = {k: v for k, v in tensors.items() if "lora_" not in k}
        tensors = {k: v for k, v in tensors.items() if "lora_" in k}
    save_file(tensors, str(out / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    if extras:
        save_file(extras, str(out / EXTRA_WEIGHTS), metadata={"format": "pt"})
    meta = artifact.json_files.get(SOFT_PROMPT_META)
    encoder = (
        artifact.kind == "soft-prompt"
        and artifact.backbone is not None
        and artifact.backbone.kind != "causal"
    )
    if encoder:
        # PEFT's prompt tuning puts the virtual tokens before [CLS] and has no similarity readout;
        # tasktune's encoder prompt sits right after [CLS] and is read by similarity. The tensors are the
        # trained ones, but loaded in PEFT they compute something else: say how they are meant to be read.
        (out / SOFT_PROMPT_USAGE).write_text(
            json.dumps(
                {
                    "input": "[CLS], then the virtual tokens, then the bare text and [SEP] (PEFT's "
                    "PromptTuning places them before [CLS]: its outputs differ from tasktune's)",
                    "readout": "mean of the states of [CLS] and the text's own tokens (not the virtual "
                    "tokens'), cosine similarity to the frozen backbone's mean-pooled embeddings of the "
                    "label descriptions",
                    "options": (meta or {}).get("options"),
                },
                indent=1,
            ),
            encoding="utf-8",
        )
    elif meta is not None:
        # PEFT's config cannot say what a soft prompt was trained in front of (a prompt-initialised one
        # stands for the zero-shot prompt's opening: the rest of that prompt follows as tokens) nor the
        # fixed label offset it is read with: written next to the adapter so the export is usable.
        (out / SOFT_PROMPT_USAGE).write_text(
            json.dumps(
                {
                    "input": "route 1's zero-shot prompt after its opening"
                    if meta.get("options", {}).get("init") == "prompt"
                    else "the task's input template and cue, no instruction, no chat template",
                    "label_token_ids": meta.get("label_token_ids"),
                    "label_bias": meta.get("label_bias"),
                    "options": meta.get("options"),
                },
                indent=1,
            ),
            encoding="utf-8",
        )
    return out
