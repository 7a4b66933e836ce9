"""Turning a registry artifact back into a working :class:`~tasktune.evaluation.scorer.Scorer` on a
loaded backbone: what a model server does with every version it serves.

Each route folder registers a restorer for its routes (``routes/<route>/restore.py``) that rebuilds
the route's own scorer class from the stored JSON and tensors, so a restored scorer gives the
probabilities the fitted one gave at evaluation time. Importing :mod:`tasktune.routes` registers them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from tasktune.backbones.loading import Backbone
from tasktune.errors import TaskTuneError
from tasktune.evaluation.scorer import Scorer
from tasktune.registry.artifact import Artifact, check_backbone
from tasktune.registry.errors import BackboneMismatchError
from tasktune.task.spec import TaskSpec, parse_task

# (artifact, backbone it was checked against, the task it was made for) → a scorer in inference mode.
Restorer = Callable[[Artifact, Backbone, TaskSpec], Scorer]
RESTORERS: dict[str, Restorer] = {}


def register_restorer(*route_names: str) -> Callable[[Restorer], Restorer]:
    def deco(restorer: Restorer) -> Restorer:
        for name in route_names:
            if name in RESTORERS:
                raise ValueError(f"a restorer for route {name!r} is already registered")
            RESTORERS[name] = restorer
        return restorer

    return deco


def where(artifact: Artifact) -> str:
    return f"adaptation {artifact.task} v{artifact.version}"


def restore_task(artifact: Artifact) -> TaskSpec:
    """The task definition the adaptation was made for (labels, prompt wording, ...)."""
    from tasktune.adaptations import TASK_FILE  # adaptations imports the routes: not at module level

    data = artifact.json_files.get(TASK_FILE)
    if data is None:
        raise TaskTuneError(
            f"{where(artifact)} was saved without {TASK_FILE}; re-run its route with a registry "
            "(tasktune run ...) to save a version that can be served"
        )
    return parse_task(data, source=f"{where(artifact)}: {TASK_FILE}")


def check_fits(artifact: Artifact, backbone: Backbone) -> None:
    """Trained weights need the exact backbone they were trained on; a text prompt only needs the
    same kind of model (its wording is portable, and it is read out differently per kind)."""
    if artifact.kind != "prompt":
        check_backbone(artifact.manifest, backbone.identity, where(artifact))
        return
    stored = artifact.backbone
    if stored is not None and stored.kind != backbone.kind:
        raise BackboneMismatchError(
            f"{where(artifact)} (prompt) was made for the {stored.kind} backbone {stored.name!r} and cannot "
            f"run on the {backbone.kind} backbone {backbone.name!r}"
        )


def restore_scorer(artifact: Artifact, backbone: Backbone) -> Scorer:
    """The adaptation's scorer on ``backbone``, in inference mode (no dropout, no gradients)."""
    route = artifact.manifest.route
    restorer = RESTORERS.get(route)
    if restorer is None:
        raise TaskTuneError(
            f"{where(artifact)} was made by route {route!r}, which cannot be restored; "
            f"restorable routes: {', '.join(sorted(RESTORERS))}"
        )
    task = restore_task(artifact)
    check_fits(artifact, backbone)
    return restorer(artifact, backbone, task)


def json_file(artifact: Artifact, name: str) -> Any:
    """A JSON file the route always stores; its absence means the artifact is not the route's."""
    if name not in artifact.json_files:
        raise TaskTuneError(
            f"{where(artifact)} ({artifact.manifest.route}) lacks {name}, which that route stores; "
            f"files: {sorted(artifact.json_files)}"
        )
    return artifact.json_files[name]


def check_label_tokens(stored: list[int] | None, actual: list[int], name: str) -> None:
    """The backbone (so the tokenizer) is checked already: differing label tokens mean the stored task's
    label words do not tokenize as the ones the adaptation was trained to predict."""
    if stored is not None and list(stored) != list(actual):
        raise TaskTuneError(
            f"{name}: the label words tokenize to {actual}, but the adaptation was trained to predict "
            f"tokens {stored}"
        )


def freeze(*modules: torch.nn.Module | torch.nn.Parameter | None) -> None:
    """A restored scorer only predicts: nothing of it may collect gradients."""
    for m in modules:
        if m is not None:
            m.requires_grad_(False)
