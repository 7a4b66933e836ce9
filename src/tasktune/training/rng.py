"""Every random number generator a run touches, captured and restored without pickle (R3).

Generator states are byte tensors (safetensors); Python's ``random`` state is a tuple of ints (JSON).
The data-order generator is the loop's own; the global ones (torch CPU/CUDA, numpy, random) are what
dropout and any sampling inside a route draw from.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def capture_rng(data_order: torch.Generator) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, JSON) holding the data-order generator and the global RNG states."""
    tensors = {"data_order": data_order.get_state(), "torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = state
    name, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, internal, gauss = random.getstate()
    meta = {
        "numpy": {"name": name, "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": cached},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss},
    }
    return tensors, meta


def restore_rng(data_order: torch.Generator, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    data_order.set_state(tensors["data_order"])
    torch.set_rng_state(tensors["torch_cpu"])
    cuda_states = [tensors[f"cuda.{i}"] for i in range(sum(k.startswith("cuda.") for k in tensors))]
    if cuda_states:
        if torch.cuda.is_available() and torch.cuda.device_count() == len(cuda_states):
            torch.cuda.set_rng_state_all(cuda_states)
        else:  # a different machine: training goes on, but bit-exactness cannot be promised
            log.warning("checkpoint holds %d CUDA RNG states; not restored on this machine", len(cuda_states))
    np_meta = meta["numpy"]
    keys = tensors["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(
        (np_meta["name"], keys, np_meta["pos"], np_meta["has_gauss"], np_meta["cached_gaussian"])
    )
    py = meta["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
