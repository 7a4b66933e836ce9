"""A prompt applied to a causal LM as a :class:`~tasktune.evaluation.scorer.Scorer`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tasktune.backbones.loading import Backbone
from tasktune.errors import DataError
from tasktune.routes.prompting import calibration
from tasktune.routes.prompting.config import PromptConfig
from tasktune.routes.prompting.demos import DemoSelector
from tasktune.routes.prompting.scoring import RankClassifier, label_scores
from tasktune.routes.prompting.template import PromptRenderer, answer_ids, encode
from tasktune.task.data import Example
from tasktune.task.spec import TaskSpec


class CausalPromptScorer:
    """Renders, encodes and rank-classifies a batch; ``bias`` is the calibration (None: none).

    ``extra_words`` lets a search score several label-word sets in one pass: the scorer's words are
    the union, and :meth:`word_scores` returns every word's log-probability.
    """

    def __init__(
        self,
        backbone: Backbone,
        task: TaskSpec,
        config: PromptConfig,
        demos: DemoSelector | None = None,
        bias: np.ndarray | None = None,
        *,
        words: Sequence[Sequence[str]] | None = None,
    ):
        self.backbone, self.task, self.config, self.bias = backbone, task, config, bias
        self.num_labels = task.num_labels
        self.tokenizer = backbone.tokenizer
        self.renderer = PromptRenderer(config, task, self.tokenizer)
        self.demos = demos
        words = [list(w) for w in (words or self.renderer.words)]
        probe = self.renderer.render(Example("probe", 0)).text
        self.answer_prefix = self.renderer.answer_prefix(probe)
        self.word_strings = [w for ws in words for w in ws]
        self.groups: list[list[int]] = []
        flat: list[tuple[int, ...]] = []
        for ws in words:
            self.groups.append(list(range(len(flat), len(flat) + len(ws))))
            flat += [tuple(answer_ids(self.tokenizer, probe, self.answer_prefix + w)) for w in ws]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.engine = RankClassifier(backbone.model, backbone.device, flat, pad_id=pad)

    def prompt_ids(self, batch: Sequence[Example]) -> list[list[int]]:
        demo_lists = self.demos.for_queries(batch) if self.demos else [[] for _ in batch]
        ids = [
            encode(self.tokenizer, self.renderer.render(e, d)) for e, d in zip(batch, demo_lists, strict=True)
        ]
        # Over-long input (R2): a clear refusal naming the example, never a position-embedding crash.
        # Truncating would silently cut the review or the cue; the user decides (fewer demonstrations,
        # a shorter template, or shorter texts).
        limit = self.max_prompt_tokens
        for e, row in zip(batch, ids, strict=True):
            if len(row) > limit:
                raise DataError(
                    f"the rendered prompt has {len(row)} tokens, more than the {limit} this backbone takes "
                    "(keeping room for the label word)",
                    row=e.row,
                    field="text",
                    expected="a shorter input, fewer demonstrations or a shorter template",
                )
        return ids

    @property
    def max_prompt_tokens(self) -> int:
        positions = getattr(self.backbone.model.config, "max_position_embeddings", None) or 1_000_000
        return positions - max(len(w) for w in self.engine.words)

    def word_scores(self, batch: Sequence[Example], *, plain: bool = False) -> np.ndarray:
        ids = self.prompt_ids(batch)
        lp = self.engine.word_logprobs_plain(ids) if plain else self.engine.word_logprobs(ids)
        return lp.numpy()

    def raw_scores(self, batch: Sequence[Example], *, plain: bool = False) -> np.ndarray:
        import torch

        return label_scores(torch.from_numpy(self.word_scores(batch, plain=plain)), self.groups).numpy()

    def predict_proba(self, batch: Sequence[Example]) -> np.ndarray:
        return calibration.apply(self.raw_scores(batch), self.bias)

    def scores_in_batches(self, examples: Sequence[Example], batch_size: int = 16) -> np.ndarray:
        return np.concatenate(
            [self.raw_scores(examples[i : i + batch_size]) for i in range(0, len(examples), batch_size)]
        )
