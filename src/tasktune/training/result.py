"""What a training run returns: the best point, why it stopped, the learning curve and its cost."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

StopReason = Literal["max_steps", "epochs", "early_stopping"]


@dataclass(frozen=True)
class HistoryEntry:
    """One point of the learning curve. ``train_loss`` is the mean step loss since the previous entry;
    ``lr`` the rate of this entry's step; ``dev`` is set where the dev split was evaluated."""

    step: int
    epoch: int
    train_loss: float | None
    lr: float
    seconds: float
    dev: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HistoryEntry:
        return cls(**data)


@dataclass(frozen=True)
class TrainResult:
    metric: str
    best_step: int  # the step whose tensors the trainable holds after train()
    best_metric: float | None  # None when there was no dev split to evaluate
    best_metrics: dict[str, float]
    final_step: int
    stopped: StopReason
    history: tuple[HistoryEntry, ...]
    seconds: float  # wall time of the whole run, across resumes
    examples_per_second: float  # training examples per second of training (evaluation excluded)
    trainable_parameter_count: int
    output_dir: Path | None = None
    resumed_from_step: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["history"] = [h.to_dict() for h in self.history]
        data["output_dir"] = str(self.output_dir) if self.output_dir is not None else None
        return data
