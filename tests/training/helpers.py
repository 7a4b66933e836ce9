"""Tiny trainables for the loop's tests: a linear classifier on fixed random features (fast, with
dropout so that the global RNG matters for exact resume) and hooks to inject a non-finite loss or
gradient at a chosen step."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from tasktune.task.data import Example

DIM, CLASSES = 16, 3


def make_examples(n: int, *, seed: int = 0) -> list[Example]:
    """``row`` indexes the feature table of :class:`LinearTrainable`; labels come from a linear teacher
    so that the task is learnable."""
    feats = features(n, seed=seed)
    teacher = torch.randn(DIM, CLASSES, generator=torch.Generator().manual_seed(99))
    labels = (feats @ teacher).argmax(dim=1).tolist()
    return [Example(text=f"x{i}", label=int(y), row=i) for i, y in enumerate(labels)]


def features(n: int, *, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, DIM, generator=torch.Generator().manual_seed(1000 + seed))  # (n, D)


class LinearTrainable:
    """logits = dropout(x) @ W + b over a fixed feature table; metrics: accuracy and neg_loss."""

    def __init__(
        self,
        table: torch.Tensor,
        *,
        dropout: float = 0.2,
        init_seed: int = 0,
        sleep_s: float = 0.0,
        nan_loss_at_call: int | None = None,
        nan_grad_at_call: int | None = None,
        on_loss_call: Callable[[int], None] | None = None,
        scripted_metrics: Sequence[float] | None = None,
        names: tuple[str, str] = ("head.weight", "head.bias"),
    ):
        g = torch.Generator().manual_seed(init_seed)
        self.weight = torch.nn.Parameter(torch.randn(DIM, CLASSES, generator=g) * 0.1)  # (D, C)
        self.bias = torch.nn.Parameter(torch.zeros(CLASSES))  # (C,)
        self.frozen = torch.randn(DIM, generator=g)  # not trained: must never change
        self.table, self.dropout, self.sleep_s = table, dropout, sleep_s
        self.nan_loss_at_call, self.nan_grad_at_call = nan_loss_at_call, nan_grad_at_call
        self.on_loss_call, self.scripted = on_loss_call, list(scripted_metrics or [])
        self.training = False
        self.loss_calls = 0
        self.snapshots: list[dict[str, torch.Tensor]] = []  # tensors at each evaluate() call
        # What the loop sees the two tensors as (a backbone block's name puts them in other lr groups).
        self.names = names

    def parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        return [(self.names[0], self.weight), (self.names[1], self.bias)]

    def train_mode(self, training: bool) -> None:
        self.training = training

    def _logits(self, batch: Sequence[Example]) -> torch.Tensor:
        x = self.table[[e.row for e in batch]] + self.frozen  # (B, D)
        x = F.dropout(x, p=self.dropout, training=self.training)  # draws from torch's global RNG
        return x @ self.weight + self.bias  # (B, C)

    def loss(self, batch: Sequence[Example]) -> torch.Tensor:
        self.loss_calls += 1
        if self.on_loss_call is not None:
            self.on_loss_call(self.loss_calls)
        if self.sleep_s:
            time.sleep(self.sleep_s)  # gives a test time to kill the process mid-run
        labels = torch.tensor([e.label for e in batch])
        loss = F.cross_entropy(self._logits(batch), labels)
        if self.loss_calls == self.nan_loss_at_call:
            loss = loss * float("nan")
        if self.loss_calls == self.nan_grad_at_call:
            # sqrt at 0: the loss stays finite (0 added) but its gradient is inf * 0 = nan.
            loss = loss + torch.sqrt((self.weight * 0).sum())
        return loss

    def evaluate(self, examples: Sequence[Example]) -> dict[str, float]:
        self.snapshots.append({n: p.detach().clone() for n, p in self.parameters()})
        logits = self._logits(examples)
        labels = torch.tensor([e.label for e in examples])
        metrics = {
            "accuracy": (logits.argmax(1) == labels).float().mean().item(),
            "neg_loss": -F.cross_entropy(logits, labels).item(),
        }
        if self.scripted:
            metrics["scripted"] = self.scripted[len(self.snapshots) - 1]
        return metrics


def tensors_of(trainable: LinearTrainable) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in trainable.parameters()}


def kill_after_checkpoint(proc, output_dir, min_step: int, deadline_s: float = 40.0) -> int:
    """SIGKILL ``proc`` once a checkpoint of at least ``min_step`` exists in ``output_dir`` (R3 tests);
    returns the step of the newest checkpoint left behind."""
    import os
    import signal
    import time

    from tasktune.training import checkpoints_of

    def steps() -> list[int]:
        return [int(p.name.split("-")[1]) for p in checkpoints_of(output_dir)]

    try:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline and proc.poll() is None:
            if steps() and max(steps()) >= min_step:
                break
            time.sleep(0.01)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()!r}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    return max(steps())
