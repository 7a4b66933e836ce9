"""Pickle-free checkpoints: a folder of ``.safetensors`` (every tensor) and ``state.json`` (the rest).

Layout of ``<output_dir>/checkpoints/step-00000040/``::

    trainable.safetensors   trained tensors by the trainable's names
    best.safetensors        best-so-far tensors (empty before the first dev evaluation)
    optimizer.safetensors   optimizer state tensors, keys ``state.{param_index}.{key}``
    rng.safetensors         data-order generator, torch CPU (and CUDA) RNG, numpy keys, epoch permutation
    state.json              step, epoch, position, best metric, early-stopping counter, history,
                            optimizer scalars + param groups, scheduler state, python/numpy RNG, config

A checkpoint is written into ``.tmp-*`` beside its final place, every file and the folder fsynced, then
renamed (atomic on one filesystem) and the parent fsynced: a crash leaves either the whole new
checkpoint or none of it, and the previous one untouched (R3, R4). Only the last ``keep`` stay.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from tasktune.fsutil import fsync_path
from tasktune.training.errors import TrainingError

FORMAT_VERSION = 2  # 2: biases and norms in their own optimizer groups, without weight decay
STATE_FILE = "state.json"
_STEP_DIR = re.compile(r"^step-(\d{8})$")
_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"
ALLOWED_SUFFIXES = (".json", ".safetensors")


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def _cpu_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors wants contiguous, unshared CPU tensors; clone so views of one storage do not clash.
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}


def write_folder_atomically(
    final: Path, tensor_files: dict[str, dict[str, torch.Tensor]], json_files: dict[str, Any]
) -> Path:
    """Write ``{stem}.safetensors`` and ``{stem}.json`` files into a new folder ``final`` atomically.

    An existing ``final`` is replaced (moved aside first, removed after the new one is in place).
    """
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f"{_TMP_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        for stem, tensors in tensor_files.items():
            path = tmp / f"{stem}.safetensors"
            safetensors.torch.save_file(_cpu_tensors(tensors), str(path))
            fsync_path(path)
        # state.json last: by then every tensor it describes is on disk.
        for stem, data in json_files.items():
            path = tmp / f"{stem}.json"
            with path.open("x", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1, allow_nan=True)
                fh.flush()
                os.fsync(fh.fileno())
        fsync_path(tmp)
        trash = None
        if final.exists():
            trash = parent / f"{_TRASH_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}"
            os.replace(final, trash)
        os.replace(tmp, final)
        fsync_path(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
    return final


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` (folders ``step-N`` holding a state file), oldest first."""
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and child.is_dir() and not child.is_symlink() and (child / STATE_FILE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def remove_leftovers(root: Path) -> None:
    """Remove temp/trash folders of an interrupted write: never a complete checkpoint."""
    if root.is_dir():
        for child in root.iterdir():
            if child.name.startswith((_TMP_PREFIX, _TRASH_PREFIX)) and child.is_dir():
                shutil.rmtree(child, ignore_errors=True)


def prune(root: Path, keep: int) -> None:
    for _, path in list_checkpoints(root)[:-keep]:
        # Rename first: a crash mid-delete leaves a trash folder, never a half checkpoint that looks whole.
        trash = root / f"{_TRASH_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}"
        os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)


def read_folder(folder: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """(tensors by file stem, JSON data by file stem). Refuses anything but regular .json/.safetensors
    files before reading a byte of them: nothing here is ever unpickled (R7)."""
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    data: dict[str, Any] = {}
    for path in sorted(folder.iterdir()):
        if path.is_symlink() or not path.is_file() or not path.name.endswith(ALLOWED_SUFFIXES):
            raise TrainingError(
                f"refusing checkpoint {folder}: {path.name!r} is not a regular .json or .safetensors file"
            )
        try:
            if path.suffix == ".safetensors":
                tensors[path.stem] = safetensors.torch.load_file(str(path), device="cpu")
            else:
                data[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except Exception as err:  # OSError, JSON errors, safetensors' own SafetensorError
            raise TrainingError(f"cannot read checkpoint file {path}: {err}") from None
    return tensors, data


# --- optimizer state without pickle ---------------------------------------------------------------
def flatten_optimizer_state(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (``state.{param_index}.{key}``) and JSON data."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, per_param in state_dict["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = _json_scalar(value, f"state.{index}.{key}")
    groups = [
        {key: _json_scalar(value, f"param_groups.{i}.{key}") for key, value in group.items()}
        for i, group in enumerate(state_dict["param_groups"])
    ]
    return tensors, {"scalars": scalars, "param_groups": groups}


def unflatten_optimizer_state(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any], template: dict[str, Any]
) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state`. ``template`` is the fresh optimizer's state_dict: JSON
    has no tuples, so values that are tuples there (betas, eps) become tuples again."""
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = tensor
    for index, per_param in meta["scalars"].items():
        state.setdefault(int(index), {}).update(per_param)
    if len(meta["param_groups"]) != len(template["param_groups"]):
        raise TrainingError("checkpoint's optimizer has a different number of parameter groups")
    groups = []
    for saved, fresh in zip(meta["param_groups"], template["param_groups"], strict=True):
        as_tuple = {k for k, v in fresh.items() if isinstance(v, tuple)}
        groups.append({k: tuple(v) if k in as_tuple and isinstance(v, list) else v for k, v in saved.items()})
    return {"state": state, "param_groups": groups}


def _json_scalar(value: Any, where: str) -> Any:
    if isinstance(value, tuple):
        return [_json_scalar(v, where) for v in value]
    if isinstance(value, list):
        return [_json_scalar(v, where) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TrainingError(f"optimizer state {where} holds a {type(value).__name__}, which cannot go into JSON")
