"""What a route is: something that, given a task's training and dev examples (and a backbone, when it
needs one), produces a :class:`~tasktune.evaluation.scorer.Scorer`.

Routes register themselves in :mod:`tasktune.routes.registry`; a route is a folder (config + method),
never a branch in a shared class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tasktune.backbones.loading import Backbone
from tasktune.evaluation.scorer import Scorer
from tasktune.task.data import Example
from tasktune.task.protocols import Protocol as ProtocolName
from tasktune.task.spec import TaskSpec


@dataclass
class FitContext:
    task: TaskSpec
    train: tuple[Example, ...]
    dev: tuple[Example, ...]
    protocol: ProtocolName
    seed: int
    backbone: Backbone | None = None
    # Unlabelled training inputs (text and pair; the label is a placeholder never read): usable by
    # zero-shot routes, e.g. for calibration. Plain strings are taken as single texts.
    unlabelled: tuple[Example, ...] = ()
    # The cell's own folder for training checkpoints: a route that trains writes them here and, when a
    # killed run is started again, resumes from the latest one (R3). None: no checkpoints.
    work_dir: Path | None = None
    # The user's settings for this route over its defaults (:mod:`tasktune.routes.overrides`).
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.unlabelled = unlabelled_inputs(self.unlabelled)


def unlabelled_inputs(items) -> tuple[Example, ...]:
    """Unlabelled inputs as examples: a pair task's calibration must see both texts, as every real
    input does (a prompt without its second text has another structure than all it calibrates)."""
    return tuple(Example(x, 0) if isinstance(x, str) else Example(x.text, 0, x.text_pair) for x in items)


@dataclass
class Fitted:
    """A route's outcome: the scorer plus what it cost."""

    scorer: Scorer
    config: dict[str, Any] = field(default_factory=dict)
    trainable_parameters: int = 0
    artifact_bytes: int = 0
    # What the registry stores: {"kind": ..., "tensors": {...}, "json_files": {...}} (see registry docs).
    artifact: dict[str, Any] | None = None


class Route(Protocol):
    name: str
    needs_backbone: bool

    def fit(self, ctx: FitContext) -> Fitted: ...


class ConfigurableRoute(Route, Protocol):
    """A route whose settings a user may change: its defaults for a regime, with overrides applied."""

    def options(
        self, protocol: str, seed: int, n_train: int, kind: str, overrides: Mapping[str, Any]
    ) -> Any: ...


def route_options(route: Route, ctx: FitContext) -> Any:
    kind = ctx.backbone.kind if ctx.backbone is not None else "causal"
    return route.options(ctx.protocol, ctx.seed, len(ctx.train), kind, ctx.options)  # type: ignore[attr-defined]
