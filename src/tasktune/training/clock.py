"""Training time a resumed run carries over from its checkpoints, for honest cost figures.

A cell killed and resumed (R3) is timed by the runner from the resume only; the steps its checkpoints
already hold cost time too. Each training loop that resumes reports the wall time its checkpoint
recorded to the innermost :func:`carried_seconds` block, however many loops a route runs (an ensemble
trains one per member) and without every route having to pass the figure up. Time between the last
checkpoint and the kill is not counted: that work was lost and is done again, and timed, after resume.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class Carried:
    seconds: float = 0.0
    loops: int = 0  # training loops that resumed from a checkpoint


_current: ContextVar[Carried | None] = ContextVar("tasktune_carried_seconds", default=None)


@contextmanager
def carried_seconds() -> Iterator[Carried]:
    """Collect the checkpointed training time of every loop resumed inside the block."""
    box = Carried()
    token = _current.set(box)
    try:
        yield box
    finally:
        _current.reset(token)


def add_carried(seconds: float) -> None:
    """Called by the training loop when it resumes; a no-op outside :func:`carried_seconds`."""
    box = _current.get()
    if box is not None:
        box.seconds += seconds
        box.loops += 1
