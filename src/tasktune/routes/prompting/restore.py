"""Restoring the prompting route from its ``prompt.json``: on a causal LM the prompt config,
demonstrations and calibration bias exactly as :func:`~tasktune.routes.prompting.route.fit_causal_prompt`
built them; on an encoder the label-text style and temperature of the similarity scorer."""

from __future__ import annotations

import numpy as np

from tasktune.backbones.loading import Backbone
from tasktune.errors import TaskTuneError
from tasktune.evaluation.scorer import Scorer
from tasktune.registry.artifact import Artifact
from tasktune.routes.prompting.config import PromptConfig
from tasktune.routes.prompting.demos import DemoSelector
from tasktune.routes.prompting.encoder import SimilarityScorer
from tasktune.routes.prompting.predictor import CausalPromptScorer
from tasktune.routes.prompting.route import knn_embedder
from tasktune.routes.restore import json_file, register_restorer, where
from tasktune.task.data import Example
from tasktune.task.spec import TaskSpec

PROMPT_FILE = "prompt.json"


def _demos(records: list[dict], task: TaskSpec) -> list[Example]:
    index = task.label_index()
    return [Example(d["text"], index[d["label"]], d.get("text_pair")) for d in records]


def _selector(prompt: dict, config: PromptConfig, task: TaskSpec) -> DemoSelector | None:
    if not config.demos_per_class:
        return None
    shared = {"order": config.demo_order, "seed": config.seed}
    if config.demo_selection == "knn":
        # Neighbours are chosen per input from the stored pool, with the embedder the fit used.
        pool = _demos(prompt["demo_pool"], task)
        return DemoSelector(
            pool, task.num_labels, config.demos_per_class, selection="knn", embed=knn_embedder(), **shared
        )
    fixed = _demos(prompt["demonstrations"], task)
    return DemoSelector(fixed, task.num_labels, config.demos_per_class, fixed=fixed, **shared)


@register_restorer("prompting")
def restore_prompting(artifact: Artifact, backbone: Backbone, task: TaskSpec) -> Scorer:
    prompt = json_file(artifact, PROMPT_FILE)
    wanted = "config" if backbone.kind == "causal" else "style"
    if wanted not in prompt:
        raise TaskTuneError(
            f"{where(artifact)}: {PROMPT_FILE} is not a prompt for a {backbone.kind} backbone (no {wanted!r})"
        )
    if backbone.kind != "causal":
        return SimilarityScorer(backbone, task, prompt["style"], float(prompt["temperature"]))
    config = PromptConfig.model_validate(prompt["config"])
    bias = None if prompt.get("bias") is None else np.asarray(prompt["bias"], dtype=np.float64)
    return CausalPromptScorer(backbone, task, config, _selector(prompt, config, task), bias)
