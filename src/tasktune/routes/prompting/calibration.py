"""Calibration of label scores: a per-label bias subtracted in log space.

- contextual (Zhao et al. 2021): the bias is the log of the mean label distribution the prompt gives
  to content-free inputs ("N/A", "", "[MASK]") — probabilities become p(y|x) / p(y|content-free).
- mean: the bias is the mean log label distribution over unlabelled training texts: it removes the
  prompt's preference for one label as seen on real inputs (never estimated on test).
"""

from __future__ import annotations

import numpy as np

CONTENT_FREE = ("N/A", "", "[MASK]")


def content_free_inputs(task) -> list:
    """The content-free inputs as examples; a pair task gets the content-free string in both slots
    (as Zhao et al. do for NLI), so the prompt keeps the structure of every real input."""
    from tasktune.task.data import Example

    pair = task.text_pair_field is not None
    return [Example(t, 0, t if pair else None) for t in CONTENT_FREE]


def log_normalise(scores: np.ndarray) -> np.ndarray:
    """(B, L) scores → (B, L) log-probabilities over labels."""
    m = scores.max(axis=1, keepdims=True)
    return scores - (m + np.log(np.exp(scores - m).sum(axis=1, keepdims=True)))


def contextual_bias(content_free_scores: np.ndarray) -> np.ndarray:
    p = np.exp(log_normalise(content_free_scores)).mean(axis=0)
    return np.log(np.clip(p, 1e-12, None))


def mean_bias(unlabelled_scores: np.ndarray) -> np.ndarray:
    return log_normalise(unlabelled_scores).mean(axis=0)


def apply(scores: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """Label probabilities after subtracting ``bias`` (None: plain softmax over label scores)."""
    z = log_normalise(scores) - (0.0 if bias is None else bias)
    return np.exp(log_normalise(z))
