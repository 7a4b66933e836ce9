"""Prompting an encoder (e.g. all-MiniLM-L6-v2): zero-shot classification by similarity between the
input's sentence embedding and the embeddings of the label descriptions ("A positive review.")."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from tasktune.backbones.loading import Backbone
from tasktune.task.data import Example
from tasktune.task.spec import TaskSpec
from tasktune.truncation import tokenize_bounded

# Cosine similarities of sentence embeddings sit in a narrow band; dividing by a temperature turns
# their differences into usable probabilities (0.05 is the SimCSE / sentence-transformers scale).
TEMPERATURE = 0.05


class Embedder:
    """Mean-pooled, L2-normalised sentence embeddings from an encoder backbone."""

    def __init__(self, backbone: Backbone, batch_size: int = 64, max_length: int = 256):
        self.backbone, self.batch_size, self.max_length = backbone, batch_size, max_length

    @torch.inference_mode()
    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        b = self.backbone
        out = []
        for i in range(0, len(texts), self.batch_size):
            batch = tokenize_bounded(
                b.tokenizer,
                list(texts[i : i + self.batch_size]),
                None,
                b.input_limit(self.max_length),
                "encoder embedding",
                padding=True,
                return_tensors="pt",
            ).to(b.device.device)
            with b.device.autocast():
                hidden = b.model(**batch).last_hidden_state  # (B, T, H)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out.append(torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, b.hidden_size), dtype=np.float32)


def label_descriptions(task: TaskSpec, style: str = "description") -> list[str]:
    """What each label is compared with: its description, or its words joined ("positive, good")."""
    if style == "description":
        return [label.description or label.name for label in task.labels]
    if style == "words":
        return [", ".join(label.label_words) for label in task.labels]
    if style == "name":
        return [label.name for label in task.labels]
    raise ValueError(f"unknown label description style {style!r}")


class SimilarityScorer:
    def __init__(
        self, backbone: Backbone, task: TaskSpec, style: str = "description", temperature: float = TEMPERATURE
    ):
        self.embed = Embedder(backbone)
        self.num_labels = task.num_labels
        self.style, self.temperature = style, temperature
        self.label_vectors = self.embed(label_descriptions(task, style))  # (L, H)

    def predict_proba(self, batch: Sequence[Example]) -> np.ndarray:
        texts = [e.text if e.text_pair is None else f"{e.text} {e.text_pair}" for e in batch]
        logits = self.embed(texts) @ self.label_vectors.T / self.temperature  # (B, L)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)
