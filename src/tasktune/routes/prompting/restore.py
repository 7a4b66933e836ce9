"""Restoring the prompting route from its ``prompt.json``: on a causal LM the prompt config,
demonstrations and calibration bias exactly as :func:`~tasktune.routes.prompting.route.fit_causal_prompt`
built them; on an encoder the label-text style and temperature of the similarity scorer. On another
causal model than the one it was made on, the wording is kept and the calibration re-estimated."""

from __future__ import annotations

import logging

import numpy as np

from tasktune.backbones.loading import Backbone
from tasktune.errors import TaskTuneError
from tasktune.evaluation.scorer import Scorer
from tasktune.registry.artifact import Artifact
from tasktune.routes.prompting import calibration
from tasktune.routes.prompting.config import PromptConfig
from tasktune.routes.prompting.demos import DemoSelector
from tasktune.routes.prompting.encoder import SimilarityScorer
from tasktune.routes.prompting.predictor import CausalPromptScorer
from tasktune.routes.prompting.route import knn_embedder
from tasktune.routes.restore import json_file, register_restorer, where
from tasktune.task.data import Example
from tasktune.task.spec import TaskSpec

PROMPT_FILE = "prompt.json"
log = logging.getLogger(__name__)


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
    scorer = CausalPromptScorer(backbone, task, config, _selector(prompt, config, task), bias)
    stored = artifact.backbone
    if bias is not None and stored is not None and stored.mismatches(backbone.identity):
        _recalibrate(scorer, config, where(artifact), stored.name, backbone.name)
    return scorer


def _recalibrate(
    scorer: CausalPromptScorer, config: PromptConfig, name: str, made_on: str, now_on: str
) -> None:
    """A prompt's wording is portable to another causal model; its calibration bias is not (it is that
    model's own prior over the label words). Contextual calibration needs no data and is re-estimated
    here exactly as the fit did; mean calibration averaged the user's unlabelled texts, which are not
    stored, so the data-free contextual estimate replaces it and the log says so."""
    content_free = calibration.content_free_inputs(scorer.task)
    scorer.bias = calibration.contextual_bias(scorer.scores_in_batches(content_free))
    if config.calibration == "mean":
        log.warning(
            "%s: its mean calibration was measured on %s; on %s it is re-estimated with content-free "
            "inputs (contextual calibration). Re-run the prompting route on %s to calibrate it on your "
            "unlabelled texts.",
            name,
            made_on,
            now_on,
            now_on,
        )
    else:
        log.info("%s: contextual calibration re-estimated on %s (made on %s)", name, now_on, made_on)
