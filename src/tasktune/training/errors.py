"""Errors of the training loop."""

from __future__ import annotations

from pathlib import Path

from tasktune.errors import TaskTuneError


class TrainingError(TaskTuneError):
    """A run cannot start or continue: bad trainable, mismatching checkpoint, missing dev metric..."""


class ResumeMismatchError(TrainingError):
    """The checkpoint to resume from belongs to another run: other config, data or tensors."""


class DivergenceError(TrainingError):
    """A non-finite loss, gradient norm or dev metric (R4). Raised before the optimizer applies the
    bad step, so the trainable and the last checkpoint on disk hold the last good state."""

    def __init__(self, step: int, what: str, value: float, checkpoint: Path | None):
        self.step, self.what, self.value, self.checkpoint = step, what, value, checkpoint
        where = (
            f"the last good checkpoint is {checkpoint} (resume from it, e.g. with a lower lr)"
            if checkpoint is not None
            else "no checkpoint was written before it"
        )
        super().__init__(f"training diverged at step {step}: the {what} is {value} (not finite); {where}")
