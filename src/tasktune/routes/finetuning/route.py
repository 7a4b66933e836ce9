"""Route 3: fine-tuning through the shared training loop. Three registered routes:

- ``finetune_head``: every weight trained, read out by a new linear head (the classic recipe; by
  default on a causal LM the head reads the task's template and starts as a probe, see config.py);
- ``finetune_prompt``: every weight trained through route 1's prompt and label words (causal LM) or
  the similarity to the label descriptions (encoder) — LM-BFF's prompt-based fine-tuning;
- ``lora``: LoRA matrices (PEFT) trained, the rest frozen; through the prompt on a causal LM, through
  a head on an encoder (encoders have no LM head to read label words from).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from tasktune.errors import TaskTuneError
from tasktune.registry.peft_export import peft_config_to_json
from tasktune.routes.base import FitContext, Fitted, route_options
from tasktune.routes.finetuning.classifier import FinetunedClassifier
from tasktune.routes.finetuning.config import FinetuneOptions, default_options
from tasktune.routes.overrides import apply_overrides
from tasktune.routes.registry import register_route
from tasktune.routes.trained import checkpointed, dev_sample, for_task, training_summary
from tasktune.training import train

CALIBRATION_TEXTS = 128  # unlabelled training texts for the starting calibration (prompt-based)
# Training examples the LP-FT probe is fitted on: all of a few-shot set; on full data a sample, as a
# probe's accuracy saturates long before the forward passes over all of train would pay off.
PROBE_EXAMPLES = 4096


def fit_finetuned(ctx: FitContext, options: FinetuneOptions, *, progress: bool = False):
    if ctx.protocol == "zero" or not ctx.train:
        raise TaskTuneError("fine-tuning trains on labelled examples: use the few or full protocol")
    if ctx.backbone is None:
        raise TaskTuneError("fine-tuning needs a backbone")
    clf = FinetunedClassifier(ctx.backbone, ctx.task, options, options.train.seed)
    texts = dev_sample(tuple(ctx.unlabelled), CALIBRATION_TEXTS, options.train.seed)
    clf.calibrate(texts)  # prompt-based only: start from the calibrated zero-shot prompt
    probe = clf.probe(dev_sample(ctx.train, PROBE_EXAMPLES, options.train.seed))  # head_init='probe' only
    dev = dev_sample(ctx.dev, options.train.dev_limit, options.train.seed)
    start = None
    if options.interpolate < 1:
        start = {name: p.detach().clone() for name, p in clf.parameters()}  # after calibration and probe
    config, resume = checkpointed(for_task(options.train, ctx.task.metric), ctx.work_dir, options)
    result = train(clf, ctx.train, dev, config, ctx.backbone.device, progress=progress, **resume)
    trained = sum(p.numel() for _, p in clf.parameters())  # counted before finish() freezes them
    if probe is not None:
        result.extra["probe"] = probe
    if start is not None:
        interpolate_weights(clf.parameters(), start, options.interpolate)
        result.extra["interpolated_dev"] = {k: float(v) for k, v in clf.evaluate(dev).items()}
    clf.finish()
    return clf, result, trained


@torch.no_grad()
def interpolate_weights(
    params: list[tuple[str, torch.nn.Parameter]], start: dict[str, torch.Tensor], alpha: float
) -> None:
    """In place: p = start + alpha * (p - start) (WiSE-FT's weight-space ensemble). Of a LoRA pair
    only the factor that started at zero is interpolated, the other stays as trained: the weight delta
    is B·A, so scaling the zero-started factor scales the delta by alpha, which interpolating both
    would not (roughly alpha²). That is B for linear layers but A for embeddings (PEFT initialises
    ``lora_embedding_A`` to zero and ``lora_embedding_B`` at random), hence the test on the start."""
    for name, p in params:
        if _LORA_FACTOR.search(name) and bool(start[name].any()):
            continue
        p.copy_(start[name].lerp(p, alpha))


_LORA_FACTOR = re.compile(r"lora_(?:embedding_)?[AB]\b")


@dataclass
class FinetuneRoute:
    name: str
    objective: str
    adapter: str
    needs_backbone: bool = True

    def options(
        self, protocol: str, seed: int, n_train: int, kind: str, overrides: Mapping[str, Any]
    ) -> FinetuneOptions:
        objective = self.objective
        if self.adapter == "lora" and kind != "causal":
            objective = "head"
        defaults = default_options(protocol, objective, self.adapter, kind, seed, n_train)
        options = apply_overrides(defaults, overrides, self.name, n_train=n_train)
        if (options.objective, options.adapter) != (defaults.objective, defaults.adapter):
            raise TaskTuneError(
                f"{self.name}: objective and adapter are what this route is; choose the route instead "
                "(finetune_head, finetune_prompt, lora)"
            )
        return options

    def fit(self, ctx: FitContext) -> Fitted:
        options = route_options(self, ctx)
        clf, result, n_params = fit_finetuned(ctx, options)
        tensors = clf.artifact_tensors()
        json_files = {
            "finetune.json": {
                "options": options.model_dump(mode="json"),
                "label_token_ids": clf.inputs.label_token_ids if clf.inputs is not None else None,
                "best_step": result.best_step,
                "best_dev": result.best_metrics,
            }
        }
        kind = "full"
        if clf.peft_config is not None:
            kind = "lora"
            json_files["lora_config.json"] = peft_config_to_json(clf.peft_config)
        return Fitted(
            clf,
            config=training_summary(options, result),
            trainable_parameters=n_params,
            artifact_bytes=sum(t.numel() * t.element_size() for t in tensors.values()),
            artifact={"kind": kind, "tensors": tensors, "json_files": json_files},
        )


register_route("finetune_head")(lambda: FinetuneRoute("finetune_head", "head", "full"))
register_route("finetune_prompt")(lambda: FinetuneRoute("finetune_prompt", "prompt", "full"))
register_route("lora")(lambda: FinetuneRoute("lora", "prompt", "lora"))
