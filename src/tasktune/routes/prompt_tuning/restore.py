"""Restoring soft prompts: the route's own :class:`CausalSoftPrompt` / :class:`EncoderSoftPrompt`
built around the stored prompt instead of a fresh initialisation. A restored prompt holds only its
(N, H) vectors and the task's inputs; it shares the loaded backbone, never copies it, so a server can
put many of them on one frozen backbone and mix their rows in one forward pass."""

from __future__ import annotations

import torch

from tasktune.backbones.loading import Backbone
from tasktune.errors import TaskTuneError
from tasktune.evaluation.scorer import Scorer
from tasktune.registry.artifact import Artifact
from tasktune.routes.prompt_tuning.causal import CausalSoftPrompt
from tasktune.routes.prompt_tuning.config import PromptTuningOptions
from tasktune.routes.prompt_tuning.encoder import EncoderSoftPrompt
from tasktune.routes.prompt_tuning.route import ENSEMBLE_FILE, SOFT_PROMPT_FILE, EnsembleScorer
from tasktune.routes.prompt_tuning.soft_prompt import deep_from_peft
from tasktune.routes.restore import check_label_tokens, freeze, json_file, register_restorer, where
from tasktune.task.spec import TaskSpec

PROMPT_TENSOR = "prompt_embeddings"


def _causal(
    backbone: Backbone,
    task: TaskSpec,
    options: PromptTuningOptions,
    prompt: torch.Tensor,
    label_token_ids: list[int] | None,
    name: str,
) -> CausalSoftPrompt:
    sp = CausalSoftPrompt(backbone, task, options, options.train.seed, prompt=prompt)
    sp.train_mode(False)
    freeze(sp.prompt)
    check_label_tokens(label_token_ids, sp.inputs.label_token_ids, name)
    return sp


def _encoder(
    artifact: Artifact, backbone: Backbone, task: TaskSpec, options: PromptTuningOptions, prompt: torch.Tensor
) -> EncoderSoftPrompt:
    has_head = "head.weight" in artifact.tensors
    if has_head != (options.readout == "head"):
        raise TaskTuneError(
            f"{where(artifact)}: readout {options.readout!r} but the artifact "
            f"{'holds' if has_head else 'has no'} head tensors"
        )
    sp = EncoderSoftPrompt(
        backbone, task, options, options.train.seed, objective=options.readout, prompt=prompt
    )
    if sp.head is not None:
        weight, bias = artifact.tensors["head.weight"], artifact.tensors["head.bias"]
        if weight.shape[0] != sp.num_labels:
            raise TaskTuneError(
                f"{where(artifact)}: the head has {weight.shape[0]} labels, the task {sp.num_labels}"
            )
        with torch.no_grad():
            sp.head.weight.copy_(weight)
            sp.head.bias.copy_(bias)
    sp.train_mode(False)
    for _, tensor in sp.parameters():
        freeze(tensor)
    return sp


def _deep_prefix(flat: torch.Tensor, backbone: Backbone, name: str) -> torch.Tensor:
    """PEFT's (N, layers*2*kv_dim) layout back to the route's (layers, 2, kv_heads, N, head_dim)."""
    cfg = backbone.model.config
    layers = backbone.identity.num_layers
    kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    if flat.shape[1] % (layers * 2 * kv_heads):
        raise TaskTuneError(
            f"{name}: deep prompt width {flat.shape[1]} does not split into {layers} layers x 2 x "
            f"{kv_heads} key/value heads"
        )
    return deep_from_peft(flat, layers, kv_heads)


@register_restorer("prompt_tuning", "deep_prompt_tuning")
def restore_soft_prompt(artifact: Artifact, backbone: Backbone, task: TaskSpec) -> Scorer:
    meta = json_file(artifact, SOFT_PROMPT_FILE)
    options = PromptTuningOptions.model_validate(meta["options"])
    prompt = artifact.tensors[PROMPT_TENSOR]
    if backbone.kind != "causal":
        return _encoder(artifact, backbone, task, options, prompt)
    if options.depth == "deep":
        prompt = _deep_prefix(prompt, backbone, where(artifact))
    sp = _causal(backbone, task, options, prompt, meta.get("label_token_ids"), where(artifact))
    _set_bias(sp, meta.get("label_bias"), where(artifact))
    return sp


def _set_bias(sp: CausalSoftPrompt, bias: list[float] | None, name: str) -> None:
    """The stored fixed label offset of a prompt-started soft prompt (absent: stays zeros)."""
    if bias is None:
        return
    if len(bias) != sp.num_labels:
        raise TaskTuneError(f"{name}: label_bias has {len(bias)} values for {sp.num_labels} labels")
    sp.label_bias.copy_(torch.tensor(bias, dtype=torch.float32))


@register_restorer("prompt_ensemble")
def restore_ensemble(artifact: Artifact, backbone: Backbone, task: TaskSpec) -> Scorer:
    meta = json_file(artifact, ENSEMBLE_FILE)
    options = PromptTuningOptions.model_validate(meta["options"])
    members, n = int(meta["members"]), int(meta["num_virtual_tokens"])
    stacked = artifact.tensors[PROMPT_TENSOR]
    if stacked.shape[0] != members * n:
        raise TaskTuneError(
            f"{where(artifact)}: {PROMPT_TENSOR} has {stacked.shape[0]} rows, expected {members} members "
            f"x {n} virtual tokens"
        )
    prompts = stacked.view(members, n, stacked.shape[1])
    restored = [_causal(backbone, task, options, p, None, where(artifact)) for p in prompts]
    biases = meta.get("label_bias")  # absent in ensembles stored before members could start calibrated
    if biases is not None:
        if len(biases) != members:
            raise TaskTuneError(
                f"{where(artifact)}: label_bias has {len(biases)} members, expected {members}"
            )
        for member, bias in zip(restored, biases, strict=True):
            _set_bias(member, bias, where(artifact))
    return EnsembleScorer(restored)
