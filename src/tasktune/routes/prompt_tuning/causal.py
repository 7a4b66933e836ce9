"""A soft prompt (shallow or deep) on a frozen causal LM, as a training-loop :class:`Trainable` and as
an evaluation :class:`Scorer`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from tasktune.backbones.loading import Backbone
from tasktune.routes.prompt_tuning.config import PromptTuningOptions
from tasktune.routes.prompt_tuning.inputs import SoftPromptInputs
from tasktune.routes.prompt_tuning.prefix_cache import PREFIXES
from tasktune.routes.prompt_tuning.soft_prompt import (
    Encoded,
    deep_label_logits,
    init_deep,
    init_shallow,
    shallow_label_logits,
    shallow_to_prefix,
)
from tasktune.routes.trained import dev_accuracy, mean_calibration_offset, probabilities_in_batches
from tasktune.task.data import Example
from tasktune.task.spec import TaskSpec


class CausalSoftPrompt:
    def __init__(
        self,
        backbone: Backbone,
        task: TaskSpec,
        options: PromptTuningOptions,
        seed: int,
        *,
        prompt: torch.Tensor | None = None,
    ):
        """``prompt``: an already trained prompt (a stored one being restored) in place of the
        seeded initialisation; (N, H) shallow, (layers, 2, kv_heads, N, head_dim) deep."""
        self.backbone, self.task, self.options = backbone, task, options
        self.num_labels = task.num_labels
        tok = backbone.tokenizer
        if options.init == "prompt":  # the zero-shot prompt's constant opening becomes the soft prompt
            self.inputs = SoftPromptInputs.zero_shot(task, tok, options.max_tokens, split_prefix=True)
        else:
            self.inputs = SoftPromptInputs(task, tok, options.max_tokens)
        if prompt is None:
            g = torch.Generator().manual_seed(seed)
            text = task.prompt.instruction or task.description or " ".join(task.label_names)
            text_ids = tok(text, add_special_tokens=False)["input_ids"]
            n = options.num_virtual_tokens
            if options.init == "prompt":
                # The prompt's own token embeddings (shallow) or the keys/values the frozen model computes
                # for them (deep): step 0 scores exactly as route 1's zero-shot prompt does.
                text_ids, n = self.inputs.prefix_ids, len(self.inputs.prefix_ids)
            if options.depth == "shallow":
                prompt = init_shallow(
                    backbone.model,
                    n,
                    options.init,
                    label_ids=self.inputs.label_token_ids,
                    text_ids=text_ids,
                    generator=g,
                )
            else:
                prompt = init_deep(backbone.model, n, g, text_ids=text_ids)
        self.prompt = torch.nn.Parameter(prompt.float().to(backbone.device.device))  # fp32, trained
        # A fixed per-label offset: route 1's mean calibration of the starting prompt (init "prompt"),
        # so step 0 is the *calibrated* zero-shot classifier; zeros otherwise. Not trained (the prompt
        # can move the label scores itself); stored with the artifact.
        self.label_bias = torch.zeros(task.num_labels, device=backbone.device.device)
        self._labels = torch.tensor(self.inputs.label_token_ids, device=backbone.device.device)
        self._dropout = torch.nn.Dropout(options.prompt_dropout)
        self._pad = tok.pad_token_id if tok.pad_token_id is not None else 0

    # --- Trainable ------------------------------------------------------------------------------
    def parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        return [("prompt_embeddings", self.prompt)]

    def train_mode(self, training: bool) -> None:
        self._dropout.train(training)  # the backbone stays in eval mode: it is frozen

    def label_logits(self, batch: Sequence[Example], prompt: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) logits; ``prompt`` overrides the trained one (an ensemble member, say)."""
        p = self._dropout(self.prompt if prompt is None else prompt)
        enc = Encoded.of(self.inputs.encode(batch), self._pad, self.backbone.device.device)
        labels = self._labels[None, :].expand(len(batch), -1)
        rows = p[None].expand(len(batch), *p.shape)
        fn = shallow_label_logits if self.options.depth == "shallow" else deep_label_logits
        return fn(self.backbone.model, enc, rows, labels, self.backbone.device.autocast()) + self.label_bias

    @torch.no_grad()
    def calibrate(self, texts: Sequence[Example | str]) -> None:
        """Set the offset to minus the mean log label distribution of the current prompt over unlabelled
        texts (route 1's ``mean`` calibration)."""
        if not texts:
            return
        self.label_bias.zero_()
        was_training = self._dropout.training
        self.train_mode(False)
        self.label_bias.copy_(mean_calibration_offset(self.predict_proba_all, texts))
        self.train_mode(was_training)

    def loss(self, batch: Sequence[Example]) -> torch.Tensor:
        y = torch.tensor([e.label for e in batch], device=self.backbone.device.device)
        return torch.nn.functional.cross_entropy(self.label_logits(batch), y)

    @torch.no_grad()
    def evaluate(self, examples: Sequence[Example]) -> dict[str, float]:
        return dev_accuracy(self.predict_proba_all(examples), examples)

    # --- Scorer ---------------------------------------------------------------------------------
    def kv_prefix(self) -> torch.Tensor:
        """(layers, 2, kv_heads, N, head_dim): the deep prompt itself, or the keys/values of the shallow
        one (computed once per prompt version, kept in the process-wide :data:`PREFIXES` budget)."""
        if self.options.depth == "deep":
            return self.prompt.detach()
        model, autocast = self.backbone.model, self.backbone.device.autocast()
        # Normal (not inference-mode) tensors, so a prefix made while serving is usable everywhere.
        with torch.inference_mode(False):
            return PREFIXES.get(self.prompt, lambda: shallow_to_prefix(model, self.prompt.detach(), autocast))

    @torch.no_grad()
    def predict_proba(self, batch: Sequence[Example]) -> np.ndarray:
        # Inference reads the prompt as a key/value prefix: T tokens per row instead of N + T, same answers.
        enc = Encoded.of(self.inputs.encode(batch), self._pad, self.backbone.device.device)
        prefix = self.kv_prefix()
        logits = deep_label_logits(
            self.backbone.model,
            enc,
            prefix[None].expand(len(batch), *prefix.shape),
            self._labels[None, :].expand(len(batch), -1),
            self.backbone.device.autocast(),
        )
        return (logits + self.label_bias).softmax(-1).double().cpu().numpy()

    def predict_proba_all(self, examples: Sequence[Example]) -> np.ndarray:
        return probabilities_in_batches(self.predict_proba, examples, self.options.eval_batch_size)
