"""The shared training loop (prompt tuning and fine-tuning): a route provides a :class:`Trainable`,
the loop does the rest — optimizer, schedule, accumulation, autocast, evaluation, early stopping,
pickle-free checkpoints with exact resume (R3) and divergence stop (R4)."""

from tasktune.training.backend import Backend, LocalBackend, select_backend
from tasktune.training.checkpoint import latest_checkpoint, list_checkpoints, read_folder
from tasktune.training.clock import Carried, carried_seconds
from tasktune.training.config import TrainConfig, TrainConfigError, parse_train_config
from tasktune.training.errors import DivergenceError, ResumeMismatchError, TrainingError
from tasktune.training.loop import checkpoints_of, train
from tasktune.training.protocol import Trainable
from tasktune.training.result import HistoryEntry, StopReason, TrainResult
from tasktune.training.schedule import build_optimizer, build_scheduler, lr_factor

__all__ = [
    "Backend",
    "Carried",
    "DivergenceError",
    "HistoryEntry",
    "LocalBackend",
    "ResumeMismatchError",
    "StopReason",
    "TrainConfig",
    "TrainConfigError",
    "TrainResult",
    "Trainable",
    "TrainingError",
    "build_optimizer",
    "build_scheduler",
    "carried_seconds",
    "checkpoints_of",
    "latest_checkpoint",
    "list_checkpoints",
    "lr_factor",
    "parse_train_config",
    "read_folder",
    "select_backend",
    "train",
]
