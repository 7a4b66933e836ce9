"""Data-parallel training over the processes of ``accelerate launch`` / torchrun (see :mod:`.backend`).

Built on ``accelerate.PartialState`` plus plain ``torch.distributed`` collectives rather than
``accelerate.Accelerator``: ``PartialState`` is the part of accelerate that reads the launcher's
environment, initialises the process group (NCCL on GPUs, gloo on CPU) and pins this rank's device.
``Accelerator.prepare`` would wrap a ``torch.nn.Module`` in DDP, but a :class:`Trainable` is not a module
(a soft prompt on a frozen backbone, LoRA matrices...), DDP all-reduces at every micro-batch and averages
per-rank means, which is wrong for shards of unequal size; ``Accelerator.backward`` only adds loss scaling
for fp16, which the loop does not use (bf16 autocast needs none). One summed all-reduce per optimizer step,
over flat buckets of the gradients, is all that is needed.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist
from accelerate import PartialState

from tasktune.backbones.device import DeviceChoice
from tasktune.training.backend import shard_bounds
from tasktune.training.errors import TrainingError
from tasktune.training.rng import seed_everything

T = TypeVar("T")
EXIT_BARRIER_SECONDS = 60
BUCKET_NUMEL = 1 << 22  # 16 MiB of fp32 gradients per all-reduce: bounds the extra memory of flattening


class AccelerateBackend:
    """One rank of a data-parallel run; every rank holds the whole trainable and the same data."""

    def __init__(self, device: DeviceChoice):
        wanted = device.device
        if wanted.type == "cuda" and wanted.index is None:
            wanted = torch.device("cuda", torch.cuda.current_device())  # before PartialState pins one
        # cpu=True is what makes accelerate use gloo on CPU; without it a CPU-only rank is "not distributed".
        self.state = PartialState(cpu=wanted.type == "cpu")
        if self.state.num_processes <= 1 or not dist.is_initialized():
            raise TrainingError(
                f"a launcher started several processes, but accelerate found no process group "
                f"(distributed type {self.state.distributed_type}); is the device {wanted} usable here?"
            )
        self.rank, self.world_size = self.state.process_index, self.state.num_processes
        # The process group's gloo/NCCL threads must be shut down before the interpreter tears down, or a
        # rank can abort at exit ("terminate called without an active exception", seen on CPU runs of
        # tests/training/test_distributed.py) after its work is done and report the run as failed.
        atexit.unregister(_destroy_process_group)  # once per process, however many runs it trains
        atexit.register(_destroy_process_group)
        self.device = torch.device(self.state.device)
        if wanted.type != self.device.type or (wanted.type == "cuda" and wanted.index != self.device.index):
            raise TrainingError(
                f"rank {self.rank} trains on {wanted}, but its launcher slot is {self.device}: under "
                "accelerate launch each process needs its own device (use the default/'cuda' device, "
                "which resolves to cuda:LOCAL_RANK)"
            )

    @property
    def is_main_process(self) -> bool:
        return bool(self.state.is_main_process)

    def shard(self, batch: Sequence[T]) -> Sequence[T]:
        start, stop = shard_bounds(len(batch), self.rank, self.world_size)
        return batch[start:stop]

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def reduce_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        # Which parameters got a gradient anywhere: a rank whose shards were all empty has none at all,
        # and a parameter the loss never touches must stay None (AdamW skips it; a zero grad would decay it).
        has_grad = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=self.device)
        dist.all_reduce(has_grad)
        with_grad = [p for p, count in zip(params, has_grad.tolist(), strict=True) if count > 0]
        for bucket in _buckets(with_grad, BUCKET_NUMEL):
            flat = torch.cat(
                [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in bucket]
            )
            dist.all_reduce(flat)
            for p, part in zip(bucket, flat.split([p.numel() for p in bucket]), strict=True):
                if p.grad is None:
                    p.grad = part.view_as(p).clone()
                else:
                    p.grad.copy_(part.view_as(p))

    def reduce_sum(self, value: torch.Tensor) -> torch.Tensor:
        total = value.detach().to(self.device, copy=True)
        dist.all_reduce(total)
        return total.to(value.device)

    def begin_step(self, seed: int, step: int) -> None:
        # Ranks draw dropout for different examples, so their global RNG streams part ways, and a
        # checkpoint holds only the main process's. Reseeding every step from (seed, step, rank) makes each
        # rank's stream a function of the step alone: resume stays exact without per-rank RNG files.
        digest = hashlib.sha256(f"{seed}/{step}/{self.rank}".encode()).digest()
        seed_everything(int.from_bytes(digest[:8], "little") >> 1)

    def broadcast_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        # Every rank evaluated the same tensors, but GPUs need not agree to the last bit; a rank deciding
        # "early stop" alone would leave the others waiting in an all-reduce forever.
        names = sorted(metrics)
        values = torch.tensor([metrics[k] for k in names], dtype=torch.float64, device=self.device)
        dist.broadcast(values, src=0)
        return dict(zip(names, values.tolist(), strict=True))

    def check_same(self, what: str, value: str) -> None:
        digest = torch.frombuffer(bytearray(hashlib.sha256(value.encode()).digest()), dtype=torch.uint8)
        mine = digest.to(self.device)
        gathered = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(gathered, mine)
        differ = [r for r, d in enumerate(gathered) if not torch.equal(d, gathered[0])]
        if differ:  # every rank sees the same list, so every rank raises: nobody is left waiting
            raise TrainingError(
                f"the processes of the run disagree on {what} (ranks {differ} differ from rank 0); "
                "every rank must see the same data, config and output folder (a shared filesystem)"
            )

    @torch.no_grad()
    def broadcast_parameters(self, params: Sequence[torch.nn.Parameter]) -> None:
        # A route's start can be computed on each rank (an LP-FT probe of the frozen features, a
        # calibration), and devices need not agree to the last bit; averaged gradients would never
        # reconcile two starts. Every rank takes rank 0's.
        for bucket in _buckets(list(params), BUCKET_NUMEL):
            flat = torch.cat([p.reshape(-1) for p in bucket]).to(self.device)
            dist.broadcast(flat, src=0)
            for p, part in zip(bucket, flat.split([p.numel() for p in bucket]), strict=True):
                p.copy_(part.view_as(p))

    def barrier(self) -> None:
        self.state.wait_for_everyone()


def _buckets(params: Sequence[torch.nn.Parameter], numel: int) -> Iterator[list[torch.nn.Parameter]]:
    bucket: list[torch.nn.Parameter] = []
    size = 0
    for p in params:
        if bucket and size + p.numel() > numel:
            yield bucket
            bucket, size = [], 0
        bucket.append(p)
        size += p.numel()
    if bucket:
        yield bucket


def _destroy_process_group() -> None:
    if not dist.is_initialized():
        return
    if dist.get_backend() == "gloo":
        # Ranks leave together: one that tears its connections down while a peer is still using them
        # is what aborted. Bounded, because after one rank's error the others may never come.
        with contextlib.suppress(RuntimeError):
            dist.monitored_barrier(timeout=timedelta(seconds=EXIT_BARRIER_SECONDS))
    dist.destroy_process_group()
