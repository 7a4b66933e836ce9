"""The prompting route: adapt a frozen model with nothing but the prompt.

- causal LM, zero-shot: the task's own wording, first label words, calibrated on unlabelled
  training texts (mean) or content-free inputs (contextual) — no label is used;
- causal LM, few-shot / full data: :func:`~tasktune.routes.prompting.search.search` on dev;
- encoder: similarity with the label descriptions (zero-shot; with dev data the description style
  is chosen on dev).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from tasktune.errors import TaskTuneError
from tasktune.routes.base import FitContext, Fitted
from tasktune.routes.prompting import calibration
from tasktune.routes.prompting.config import PromptConfig
from tasktune.routes.prompting.demos import DemoSelector
from tasktune.routes.prompting.encoder import Embedder, SimilarityScorer
from tasktune.routes.prompting.predictor import CausalPromptScorer
from tasktune.routes.prompting.search import search, stratified_sample, zero_shot_config
from tasktune.routes.registry import register_route
from tasktune.task.data import Example
from tasktune.task.spec import TaskSpec

log = logging.getLogger(__name__)
SEARCH_DEV_LIMIT = 200  # dev examples scored per search trial (stratified sample when dev is larger)
SEARCH_UNLABELLED = 48  # unlabelled texts for mean calibration inside the search
FINAL_UNLABELLED = 400  # ... and for the chosen prompt


def _sample(items: tuple, n: int, seed: int) -> list:
    if len(items) <= n:
        return list(items)
    idx = np.random.default_rng(seed).permutation(len(items))[:n]
    return [items[i] for i in sorted(idx)]


KNN_ENCODER = "all-minilm-l6-v2"


def knn_embedder():
    """Sentence embeddings for nearest-neighbour demonstrations (all-MiniLM-L6-v2, loaded once)."""
    global _KNN_EMBEDDER
    if _KNN_EMBEDDER is None:
        from tasktune.backbones.loading import load_backbone

        _KNN_EMBEDDER = Embedder(load_backbone(KNN_ENCODER))
    return _KNN_EMBEDDER


_KNN_EMBEDDER = None


def demo_record(example: Example, task: TaskSpec) -> dict[str, str]:
    """A demonstration as stored in prompt.json; the pair too, as the prompt shows it."""
    record = {"text": example.text, "label": task.label_names[example.label]}
    if example.text_pair is not None:
        record["text_pair"] = example.text_pair
    return record


def fit_causal_prompt(ctx: FitContext, config: PromptConfig) -> tuple[CausalPromptScorer, dict[str, Any]]:
    """Build the scorer for ``config``: demonstrations from train, calibration bias estimated."""
    b = ctx.backbone
    selector = None
    if config.demos_per_class:
        selector = DemoSelector(
            ctx.train,
            ctx.task.num_labels,
            config.demos_per_class,
            selection=config.demo_selection,
            order=config.demo_order,
            seed=config.seed,
            embed=knn_embedder() if config.demo_selection == "knn" else None,
        )
    scorer = CausalPromptScorer(b, ctx.task, config, selector)
    bias = None
    if config.calibration == "contextual":
        bias = calibration.contextual_bias(
            scorer.scores_in_batches(calibration.content_free_inputs(ctx.task))
        )
    elif config.calibration == "mean":
        texts = _sample(ctx.unlabelled, min(config.calibration_texts, FINAL_UNLABELLED), config.seed)
        if not texts:
            raise TaskTuneError(
                "mean calibration needs unlabelled training texts; the task has no train split"
            )
        bias = calibration.mean_bias(scorer.scores_in_batches(texts))
    scorer.bias = bias
    artifact = {
        "config": config.model_dump(mode="json"),
        # Fixed demonstrations are the prompt; nearest-neighbour ones are chosen per input from the pool.
        "demonstrations": [
            demo_record(e, ctx.task)
            for e in (selector.fixed if selector and config.demo_selection == "random" else [])
        ],
        "demo_pool": [
            demo_record(e, ctx.task)
            for e in (ctx.train if selector and config.demo_selection == "knn" else [])
        ],
        "bias": None if bias is None else [float(x) for x in bias],
        "backbone": b.name,
    }
    return scorer, artifact


@dataclass
class PromptingRoute:
    name: str = "prompting"
    needs_backbone: bool = True

    def fit(self, ctx: FitContext) -> Fitted:
        if ctx.backbone is None:
            raise TaskTuneError("the prompting route needs a backbone")
        if ctx.backbone.kind == "encoder":
            return self._fit_encoder(ctx)
        search_summary: list[dict] = []
        decision: dict = {}
        if ctx.protocol == "zero" or not ctx.dev:
            config = zero_shot_config(ctx.task, has_unlabelled=bool(ctx.unlabelled)).model_copy(
                update={"seed": ctx.seed}
            )
        else:
            dev = stratified_sample(ctx.dev, SEARCH_DEV_LIMIT, ctx.seed, ctx.task.num_labels)
            unl = _sample(ctx.unlabelled, SEARCH_UNLABELLED, ctx.seed)
            result = search(
                ctx.backbone, ctx.task, ctx.train, dev, unl, seed=ctx.seed, metric=ctx.task.metric
            )
            config = result.best
            search_summary = result.table()[:10]
            decision = result.decision
        scorer, artifact = fit_causal_prompt(ctx, config)
        blob = json.dumps(artifact)
        return Fitted(
            scorer,
            config={
                "prompt": artifact["config"],
                "search_top": search_summary,
                "search_decision": decision,
                "bias": artifact["bias"],
            },
            trainable_parameters=0,
            artifact_bytes=len(blob.encode()),
            artifact={"kind": "prompt", "json_files": {"prompt.json": artifact}},
        )

    def _fit_encoder(self, ctx: FitContext) -> Fitted:
        """Label descriptions (the zero-shot choice) unless another label text wins significantly in the
        task's metric on dev + train (nothing here is shown to the model, so all labelled data can
        select)."""
        from tasktune.evaluation.metrics import macro_f1
        from tasktune.evaluation.significance import paired_gain

        style = "description"
        decision: dict = {}
        if ctx.dev and ctx.protocol != "zero":
            selection = [
                *stratified_sample(ctx.dev, SEARCH_DEV_LIMIT, ctx.seed, ctx.task.num_labels),
                *ctx.train[:SEARCH_DEV_LIMIT],
            ]
            y = np.array([e.label for e in selection])
            preds = {
                candidate: SimilarityScorer(ctx.backbone, ctx.task, candidate)
                .predict_proba(selection)
                .argmax(1)
                for candidate in ("description", "words", "name")
            }
            metric, n = ctx.task.metric, ctx.task.num_labels
            scores = {
                c: float((p == y).mean()) if metric == "accuracy" else macro_f1(y, p, n)
                for c, p in preds.items()
            }
            best = max(scores, key=lambda c: scores[c])  # the first (descriptions) on ties
            gain, p_value, test = paired_gain(y, preds[best], preds["description"], metric, n)
            if best != "description" and gain > 0 and p_value < 0.1:
                style = best
            decision = {
                "metric": metric,
                "scores": scores,
                "test": test,
                "p_value": p_value,
                "chosen": style,
            }
        scorer = SimilarityScorer(ctx.backbone, ctx.task, style)
        artifact = {"style": style, "temperature": scorer.temperature, "backbone": ctx.backbone.name}
        return Fitted(
            scorer,
            config={"label_text": style, "selection": decision},
            artifact_bytes=len(json.dumps(artifact).encode()),
            artifact={"kind": "prompt", "json_files": {"prompt.json": artifact}},
        )


register_route("prompting")(PromptingRoute)
