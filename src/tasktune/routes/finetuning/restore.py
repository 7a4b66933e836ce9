"""Restoring fine-tuned classifiers: the route's own :class:`FinetunedClassifier` (a private copy of
the backbone, as fine-tuning needs) with the stored weights loaded back, then put through the same
:meth:`~FinetunedClassifier.finish` the route runs before evaluation (LoRA merged when the options
say so, label descriptions encoded once)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from tasktune.backbones.loading import Backbone
from tasktune.errors import TaskTuneError
from tasktune.evaluation.scorer import Scorer
from tasktune.registry.artifact import Artifact
from tasktune.registry.peft_export import lora_config_from_json
from tasktune.routes.finetuning.classifier import FinetunedClassifier
from tasktune.routes.finetuning.config import FinetuneOptions
from tasktune.routes.restore import check_label_tokens, freeze, json_file, register_restorer, where
from tasktune.task.spec import TaskSpec

if TYPE_CHECKING:
    from peft import LoraConfig

FINETUNE_FILE, LORA_FILE = "finetune.json", "lora_config.json"
HEAD, MODEL, LABEL_BIAS = "head.", "model.", "label_bias"


def _load_full(model: torch.nn.Module, weights: dict[str, torch.Tensor], name: str) -> None:
    """``artifact_tensors`` left out tied duplicates (lm_head = embed_tokens): only those may be missing."""
    result = model.load_state_dict(weights, strict=False)
    tied = set(dict(model.named_parameters(remove_duplicate=False))) - set(dict(model.named_parameters()))
    missing = set(result.missing_keys) - tied
    if missing or result.unexpected_keys:
        raise TaskTuneError(
            f"{name}: stored weights do not fit the model (missing {sorted(missing)[:3]}, unexpected "
            f"{sorted(result.unexpected_keys)[:3]})"
        )


def _lora_config(artifact: Artifact) -> LoraConfig:
    """The adapter's LoraConfig as stored, in inference mode (the registry's PEFT export builds the same)."""
    return lora_config_from_json(json_file(artifact, LORA_FILE), f"{where(artifact)}, {LORA_FILE}")


def _load_lora(clf: FinetunedClassifier, weights: dict[str, torch.Tensor], name: str) -> None:
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    expected = set(get_peft_model_state_dict(clf.peft_model))
    if set(weights) != expected:
        raise TaskTuneError(
            f"{name}: the stored LoRA tensors do not match the adapter {LORA_FILE} describes (missing "
            f"{sorted(expected - set(weights))[:3]}, unexpected {sorted(set(weights) - expected)[:3]})"
        )
    set_peft_model_state_dict(clf.peft_model, weights)


@register_restorer("finetune_head", "finetune_prompt", "lora")
def restore_finetuned(artifact: Artifact, backbone: Backbone, task: TaskSpec) -> Scorer:
    name = where(artifact)
    meta = json_file(artifact, FINETUNE_FILE)
    options = FinetuneOptions.model_validate(meta["options"])
    if (options.adapter == "lora") != (artifact.kind == "lora"):
        raise TaskTuneError(
            f"{name}: a {artifact.kind} artifact with adapter {options.adapter!r} in {FINETUNE_FILE}"
        )
    lora_config = _lora_config(artifact) if artifact.kind == "lora" else None
    clf = FinetunedClassifier(backbone, task, options, options.train.seed, lora_config=lora_config)
    tensors = dict(artifact.tensors)
    with torch.no_grad():
        if clf.head is not None:
            head = {k.removeprefix(HEAD): tensors.pop(k) for k in list(tensors) if k.startswith(HEAD)}
            clf.head.load_state_dict(head)
        if clf.inputs is not None:
            check_label_tokens(meta.get("label_token_ids"), clf.inputs.label_token_ids, name)
            clf.label_bias.copy_(tensors.pop(LABEL_BIAS))
    if lora_config is not None:
        _load_lora(clf, tensors, name)
    else:
        _load_full(clf.model, {k.removeprefix(MODEL): v for k, v in tensors.items()}, name)
    clf.finish()
    freeze(clf.model, clf.head, clf.label_bias if clf.inputs is not None else None)
    return clf
