"""A user's settings for a route, on top of the route's measured defaults.

``tasktune run --set lora.lora.r=16 --set prompt_tuning.train.lr=0.01`` or ``--options FILE.yaml``
(``{route: {option: value, ...}}``, nested or dotted). The defaults stay per protocol and backbone (they
were chosen by measurement); what the user names replaces only those fields, and the result is
validated by the route's own options model, so a typo or a bad value is one message naming the route,
the option, the value and what was expected — raised before any model is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from tasktune.errors import TaskTuneError

M = TypeVar("M", bound=BaseModel)
# Fields of which a config takes one: naming one replaces the default's choice of the other.
PARTNERS = {
    "max_steps": "epochs",
    "epochs": "max_steps",
    "warmup_steps": "warmup_ratio",
    "warmup_ratio": "warmup_steps",
}
# Set by the run itself, never by a route setting.
NOT_SETTINGS = {
    "train.seed": "the training seed is the run's (--seeds)",
    "train.metric": "checkpoints are selected on the task's metric (task.yaml)",
}


def flatten(options: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.01}}`` and ``{"train.lr": 0.01}`` alike → ``{"train.lr": 0.01}``."""
    flat: dict[str, Any] = {}
    for key, value in options.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


# The run's length in steps: a user who changes it without naming eval_every keeps the defaults' number
# of dev evaluations per run, not their interval (max_steps=100 would otherwise never reach an
# evaluation every 234 steps, and grad_accum_steps=4 would leave early stopping too few to count).
RUN_LENGTH = ("train.batch_size", "train.grad_accum_steps", "train.epochs", "train.max_steps")


def apply_overrides(defaults: M, overrides: Mapping[str, Any], where: str, n_train: int | None = None) -> M:
    """``defaults`` with the named fields replaced, validated; ``where`` names the route in errors.
    ``n_train`` (the training examples) lets a changed run length keep the defaults' evaluation count."""
    if not overrides:
        return defaults
    chosen = _apply(defaults, overrides, where)
    flat = flatten(overrides)
    if n_train and any(k in flat for k in RUN_LENGTH) and "train.eval_every" not in flat:
        chosen = _keep_evaluation_count(defaults, chosen, n_train)
    return chosen


def _keep_evaluation_count(defaults: M, chosen: M, n_train: int) -> M:
    before, after = getattr(defaults, "train", None), getattr(chosen, "train", None)
    if before is None or after is None or before.eval_every is None or after.eval_every is None:
        return chosen
    evaluations = before.total_steps(n_train) / before.eval_every
    every = max(1, round(after.total_steps(n_train) / evaluations))
    return chosen.model_copy(update={"train": after.model_copy(update={"eval_every": every})})


def _apply(defaults: M, overrides: Mapping[str, Any], where: str) -> M:
    data = defaults.model_dump(mode="json")
    flat = flatten(overrides)
    for key, why in NOT_SETTINGS.items():
        if key in flat:
            raise TaskTuneError(f"{where}: {key} is not a route setting: {why}")
    for key, value in flat.items():
        node, parts = data, key.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                known = ", ".join(sorted(node)) if isinstance(node, dict) else "none (not a group)"
                inside = ".".join(parts[:depth]) or "the route"
                raise TaskTuneError(
                    f"{where}: unknown option {key!r} ({part!r} is not an option of {inside}; "
                    f"options there: {known})"
                )
            if depth < len(parts) - 1:
                node = node[part]
        node[parts[-1]] = value
        partner = PARTNERS.get(parts[-1])
        if partner in node and ".".join([*parts[:-1], partner]) not in flat:
            node[partner] = None
    try:
        return type(defaults).model_validate(data)
    except ValidationError as err:
        problems = "; ".join(
            # A whole group's dump (a model validator's input) says nothing the message does not.
            f"{'.'.join(map(str, e['loc'])) or 'options'}"
            + ("" if isinstance(e.get("input"), dict | list) else f" = {e.get('input')!r}")
            + f": {e['msg']}"
            for e in err.errors()
        )
        raise TaskTuneError(f"{where}: invalid option value ({problems})") from None


def parse_set(items: list[str]) -> dict[str, dict[str, Any]]:
    """``ROUTE.OPTION=VALUE`` strings (values read as YAML scalars: 0.01, true, [q_proj, v_proj])."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        route, dot, option = key.strip().partition(".")
        if not sep or not dot or not route or not option:
            raise TaskTuneError(f"--set {item!r}: expected ROUTE.OPTION=VALUE, e.g. lora.lora.r=16")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        out.setdefault(route, {})[option] = value
    return out


def load_options_file(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as err:
        raise TaskTuneError(f"cannot read the route options file {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise TaskTuneError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise TaskTuneError(
            f"{path}: expected a mapping of route name to its options, e.g. 'lora: {{train: {{lr: 1e-4}}}}'"
        )
    return {str(route): dict(options) for route, options in data.items()}


def merge(*layers: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Later layers win, option by option (a file, then --set)."""
    out: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for route, options in layer.items():
            out.setdefault(route, {}).update(flatten(options))
    return out


def effective(chosen: BaseModel, defaults: BaseModel, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The user's settings as the options model holds them (``"1e-4"`` read as 0.0001), less those equal
    to the defaults: what names a run's cell, so one setting written two ways is one cell."""
    got, base = flatten(chosen.model_dump(mode="json")), flatten(defaults.model_dump(mode="json"))
    named = flatten(overrides)
    # An eval_every named with a run length is kept even at its default value: without it the route
    # would rescale the interval to the new length (apply_overrides), which is not what was asked.
    pinned = (
        {"train.eval_every"} if "train.eval_every" in named and any(k in named for k in RUN_LENGTH) else set()
    )
    return {k: got[k] for k in sorted(named) if k in got and (got[k] != base.get(k) or k in pinned)}
