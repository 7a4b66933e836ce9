"""Classification metrics computed from labels and predicted probabilities.

Written with numpy rather than pulled from scikit-learn: these few formulas are short, exact and
keep the dependency set small; each is checked against a hand-computed case in the tests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

ECE_BINS = 15
BOOTSTRAP_SAMPLES = 1000


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_labels: int) -> np.ndarray:
    """Rows are true labels, columns predictions."""
    cm = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def per_class_prf(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 per class; 0 where undefined (no predictions / no examples)."""
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    actual = cm.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return precision, recall, f1


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_labels: int) -> float:
    """Unweighted mean of the per-class F1 over the classes that occur (in the labels or the
    predictions), as scikit-learn's default: a class absent from the test set and never predicted has
    no F1 (0/0) and does not pull a perfect classifier down to (C-1)/C. A class predicted but absent
    counts, with F1 0."""
    cm = confusion_matrix(y_true, y_pred, num_labels)
    return mean_f1_over_present(per_class_prf(cm)[2], cm)


def mean_f1_over_present(f1: np.ndarray, cm: np.ndarray) -> float:
    present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
    return float(f1[present].mean()) if present.any() else 0.0


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE (Guo et al. 2017): |accuracy - confidence| per equal-width confidence bin, weighted by size."""
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds confidences in (edges[i], edges[i+1]]; confidence 0 cannot occur (max of a distribution).
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def bootstrap_ci(
    values: np.ndarray, *, samples: int = BOOTSTRAP_SAMPLES, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of per-example values (e.g. 0/1 correctness)."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(samples, len(values)))
    means = values[idx].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


@dataclass
class Metrics:
    n: int
    accuracy: float
    accuracy_ci95: tuple[float, float]
    macro_f1: float
    ece: float
    nll: float
    precision: list[float]
    recall: list[float]
    f1: list[float]
    support: list[int]
    confusion: list[list[int]]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["accuracy_ci95"] = list(self.accuracy_ci95)  # JSON has no tuples; keep round trips equal
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Metrics:
        data = dict(data)
        data["accuracy_ci95"] = tuple(data["accuracy_ci95"])
        return cls(**data)


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, *, seed: int = 0) -> Metrics:
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    num_labels = probs.shape[1]
    y_pred = probs.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, num_labels)
    precision, recall, f1 = per_class_prf(cm)
    correct = (y_pred == y_true).astype(np.float64)
    true_prob = np.clip(probs[np.arange(len(y_true)), y_true], 1e-12, 1.0)
    return Metrics(
        n=len(y_true),
        accuracy=float(correct.mean()),
        accuracy_ci95=bootstrap_ci(correct, seed=seed),
        macro_f1=mean_f1_over_present(f1, cm),
        ece=expected_calibration_error(y_true, probs),
        nll=float(-np.log(true_prob).mean()),
        precision=precision.round(6).tolist(),
        recall=recall.round(6).tolist(),
        f1=f1.round(6).tolist(),
        support=cm.sum(axis=1).tolist(),
        confusion=cm.tolist(),
    )
