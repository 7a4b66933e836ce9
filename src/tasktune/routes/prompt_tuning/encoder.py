"""A soft prompt on a frozen encoder (e.g. all-MiniLM-L6-v2): N trainable vectors inserted right after
[CLS]; the mean-pooled text embedding is compared with frozen label-description embeddings
(``similarity``: the label space keeps its meaning, nothing but the prompt is trained) or fed to a
small linear head trained with the prompt (``head``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from tasktune.backbones.loading import Backbone
from tasktune.routes.prompt_tuning.config import PromptTuningOptions
from tasktune.routes.prompting.encoder import TEMPERATURE, Embedder, label_descriptions
from tasktune.routes.trained import dev_accuracy, probabilities_in_batches
from tasktune.task.data import Example
from tasktune.task.spec import TaskSpec
from tasktune.truncation import tokenize_bounded


class EncoderSoftPrompt:
    def __init__(
        self,
        backbone: Backbone,
        task: TaskSpec,
        options: PromptTuningOptions,
        seed: int,
        objective: str = "similarity",
        *,
        prompt: torch.Tensor | None = None,
    ):
        """``prompt``: an already trained (N, H) prompt (a stored one being restored) in place of the
        seeded initialisation."""
        if options.depth != "shallow":
            raise ValueError("deep prompts on encoders are not supported yet; use depth: shallow")
        self.backbone, self.task, self.options, self.objective = backbone, task, options, objective
        self.num_labels = task.num_labels
        dev = backbone.device.device
        emb = backbone.model.get_input_embeddings().weight.detach().float()
        if prompt is None:
            g = torch.Generator().manual_seed(seed)
            # Initialise from the embeddings of the label descriptions' tokens (the encoder analogue of
            # Lester et al.'s label-word init).
            ids = backbone.tokenizer(" ".join(label_descriptions(task)), add_special_tokens=False)[
                "input_ids"
            ] or [0]
            n = options.num_virtual_tokens
            prompt = emb[torch.tensor([ids[i % len(ids)] for i in range(n)], device=emb.device)].cpu()
            prompt = prompt + 0.01 * emb.std() * torch.randn(prompt.shape, generator=g)
        self.prompt = torch.nn.Parameter(prompt.float().to(dev))
        self.label_vectors = torch.from_numpy(Embedder(backbone)(label_descriptions(task))).to(dev)  # (L, H)
        self.head = None
        if objective == "head":
            self.head = torch.nn.Linear(emb.shape[1], task.num_labels).to(dev)
            torch.nn.init.zeros_(self.head.weight)
            torch.nn.init.zeros_(self.head.bias)
        elif objective != "similarity":
            raise ValueError(f"unknown encoder objective {objective!r}; expected similarity or head")
        self._dropout = torch.nn.Dropout(options.prompt_dropout)

    def parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        params = [("prompt_embeddings", self.prompt)]
        if self.head is not None:
            params += [("head.weight", self.head.weight), ("head.bias", self.head.bias)]
        return params

    def train_mode(self, training: bool) -> None:
        self._dropout.train(training)

    def logits(self, batch: Sequence[Example]) -> torch.Tensor:
        b = self.backbone
        dev = b.device.device
        texts = [e.text for e in batch]
        pairs = [e.text_pair for e in batch] if batch and batch[0].text_pair is not None else None
        limit = b.input_limit(self.options.max_tokens, reserved=self.prompt.shape[0])
        enc = tokenize_bounded(
            b.tokenizer, texts, pairs, limit, "soft-prompt input", padding=True, return_tensors="pt"
        ).to(dev)
        B, N = len(batch), self.prompt.shape[0]
        with b.device.autocast():
            words = b.model.get_input_embeddings()(enc["input_ids"])  # (B, T, H)
            prompt = self._dropout(self.prompt)[None].expand(B, -1, -1).to(words.dtype)
            inputs = torch.cat([words[:, :1], prompt, words[:, 1:]], dim=1)  # [CLS] P1..PN tokens
            ones = torch.ones(B, N, dtype=enc["attention_mask"].dtype, device=dev)
            mask = torch.cat([enc["attention_mask"][:, :1], ones, enc["attention_mask"][:, 1:]], dim=1)
            extra = {}
            if "token_type_ids" in enc:
                tt = enc["token_type_ids"]
                extra["token_type_ids"] = torch.cat([tt[:, :1], torch.zeros_like(ones), tt[:, 1:]], dim=1)
            hidden = b.model(
                inputs_embeds=inputs, attention_mask=mask, **extra
            ).last_hidden_state  # (B, N+T, H)
        # Pool over the text's own tokens: the prompt steers them, it is not part of the sentence.
        text_mask = (
            torch.cat([mask[:, :1], torch.zeros_like(ones), mask[:, 1 + N :]], dim=1).unsqueeze(-1).float()
        )
        pooled = (hidden.float() * text_mask).sum(1) / text_mask.sum(1).clamp(min=1)
        if self.head is not None:
            return self.head(pooled)
        return torch.nn.functional.normalize(pooled, dim=-1) @ self.label_vectors.T / TEMPERATURE

    def loss(self, batch: Sequence[Example]) -> torch.Tensor:
        y = torch.tensor([e.label for e in batch], device=self.backbone.device.device)
        return torch.nn.functional.cross_entropy(self.logits(batch), y)

    @torch.no_grad()
    def predict_proba(self, batch: Sequence[Example]) -> np.ndarray:
        return self.logits(batch).softmax(-1).double().cpu().numpy()

    @torch.no_grad()
    def evaluate(self, examples: Sequence[Example]) -> dict[str, float]:
        probs = probabilities_in_batches(self.predict_proba, examples, self.options.eval_batch_size)
        return dev_accuracy(probs, examples)
