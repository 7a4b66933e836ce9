"""The seam between the loop and "how many processes train": everything the loop does that would differ
under ``accelerate launch`` / torchrun goes through a :class:`Backend`.

Two exist. :class:`LocalBackend` (one process, one device) is the identity. ``AccelerateBackend``
(:mod:`tasktune.training.distributed`) is data parallel over the processes of a launcher: every rank
walks the same seeded permutation, ``shard`` takes this rank's contiguous slice of each micro-batch,
``reduce_gradients`` all-reduces the trainable gradients and ``reduce_sum`` the logged step loss,
``is_main_process`` gates checkpoints, ``best/`` and the progress bar. Checkpoints stay in the loop's own
pickle-free format either way (``save_state`` of accelerate pickles RNG states).

The reductions are *sums*, not means: the loop weights each rank's micro-batch mean loss by its share of
the whole (global) step, ``len(shard) / len(step)``, so each rank's gradient is its part of the step's
mean and the sum over ranks is exactly the single-process gradient — also when shards differ in size or
one is empty (that rank contributes zeros). A mean of per-rank means (DDP's convention) would weight a
rank of 1 example like a rank of 2.

:func:`select_backend` picks one from the environment, so that the same command trains data parallel
when it is started by a launcher: ``accelerate launch --num_processes 2 -m tasktune.cli.main run ...``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Protocol, TypeVar

import torch

from tasktune.backbones.device import DeviceChoice

log = logging.getLogger(__name__)

T = TypeVar("T")
# What launchers set: torchrun / accelerate launch (WORLD_SIZE), MPI flavours (accelerate's multi-CPU).
_WORLD_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


class Backend(Protocol):
    @property
    def is_main_process(self) -> bool: ...

    def shard(self, batch: Sequence[T]) -> Sequence[T]:
        """This rank's slice of a micro-batch (possibly empty)."""
        ...

    def backward(self, loss: torch.Tensor) -> None: ...

    def reduce_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Sum gradients over ranks; a parameter without a gradient on every rank keeps ``None``."""
        ...

    def reduce_sum(self, value: torch.Tensor) -> torch.Tensor: ...

    def begin_step(self, seed: int, step: int) -> None:
        """Called before each optimizer step (the global RNG that dropout draws from)."""
        ...

    def broadcast_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """The main process's dev metrics, so that every rank takes the same best/early-stop decision."""
        ...

    def check_same(self, what: str, value: str) -> None:
        """Raise :class:`TrainingError` unless ``value`` is the same on every rank."""
        ...

    def broadcast_parameters(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Set every rank's tensors to the main process's (the start of a run)."""
        ...

    def barrier(self) -> None: ...


class LocalBackend:
    """One process: every method is the identity or a plain call."""

    @property
    def is_main_process(self) -> bool:
        return True

    def shard(self, batch: Sequence[T]) -> Sequence[T]:
        return batch

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def reduce_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        return None

    def reduce_sum(self, value: torch.Tensor) -> torch.Tensor:
        return value

    def begin_step(self, seed: int, step: int) -> None:
        return None  # one process: the RNG state in the checkpoint is the whole story

    def broadcast_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        return metrics

    def check_same(self, what: str, value: str) -> None:
        return None

    def broadcast_parameters(self, params: Sequence[torch.nn.Parameter]) -> None:
        return None

    def barrier(self) -> None:
        return None


def launcher_world_size() -> int:
    """Number of processes the launcher started (1 when not started by one)."""
    for name in _WORLD_SIZE_VARS:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, stop) of rank's contiguous slice of n items: sizes differ by at most one, and with fewer
    items than ranks the first ranks get none."""
    return rank * n // world_size, (rank + 1) * n // world_size


def select_backend(device: DeviceChoice) -> Backend:
    """:class:`LocalBackend`, or the accelerate one when a launcher started several processes."""
    world = launcher_world_size()
    if world <= 1:
        log.info("training backend: local, one process (no launcher with WORLD_SIZE > 1)")
        return LocalBackend()
    from tasktune.training.distributed import AccelerateBackend  # imports accelerate only when needed

    backend = AccelerateBackend(device)
    log.info(
        "training backend: accelerate data parallel, rank %d of %d on %s (the launcher set WORLD_SIZE=%d)",
        backend.rank,
        backend.world_size,
        backend.device,
        world,
    )
    return backend
