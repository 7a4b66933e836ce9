"""Shared by the route tests: a fitted route's artifact through a registry and back."""

from __future__ import annotations

from pathlib import Path

from tasktune.registry import Registry
from tasktune.registry.artifact import Artifact
from tests.routes.prompting.conftest import TASK


def save_and_load(artifact: dict, route: str, backbone, tmp_path: Path) -> Artifact:
    """``artifact`` (a ``Fitted.artifact``) saved to a fresh registry under ``tmp_path`` with the test
    task's definition (what a restorer reads), then loaded back bound to ``backbone``."""
    with Registry(tmp_path / "reg") as reg:
        version = reg.save(
            TASK.name,
            artifact["kind"],
            backbone=backbone.identity,
            route=route,
            tensors=artifact["tensors"],
            json_files={**artifact["json_files"], "task.json": TASK.definition()},
        )
        return reg.load(TASK.name, version, expect_backbone=backbone.identity)
