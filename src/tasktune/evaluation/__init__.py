"""Evaluation: the shared scorer interface, metrics, the evaluator and results files."""

from tasktune.evaluation.evaluator import build_result, evaluate, predict
from tasktune.evaluation.metrics import Metrics, compute_metrics
from tasktune.evaluation.results import RunResult, read_result, write_result
from tasktune.evaluation.scorer import Scorer

__all__ = [
    "Metrics",
    "RunResult",
    "Scorer",
    "build_result",
    "compute_metrics",
    "evaluate",
    "predict",
    "read_result",
    "write_result",
]
