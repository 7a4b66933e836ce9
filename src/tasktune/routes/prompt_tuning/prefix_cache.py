"""Computed key/value prefixes of shallow soft prompts, kept within a byte budget for the process.

A prefix costs layers × 2 × kv_heads × head_dim × 4 bytes per virtual token (46 KB on SmolLM2-135M,
against 2.3 KB for the token's embedding), so a server with hundreds of tasks must not keep one per
task for ever: the least recently used ones are dropped past the budget and recomputed (one N-token
pass) when their task comes back. An entry is valid while its prompt tensor is the same object at the
same version: an optimiser step or a restore (both in place) bumps ``Tensor._version``.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable

import torch

DEFAULT_BUDGET_BYTES = 64 * 2**20


class PrefixCache:
    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES):
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[int, tuple[weakref.ref, int, torch.Tensor]] = OrderedDict()
        self._bytes = 0
        # Re-entrant: a weakref callback (a prompt collected) can run inside a locked section of this thread.
        self._lock = threading.RLock()

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, prompt: torch.Tensor, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        key = id(prompt)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0]() is prompt and hit[1] == prompt._version:
                self._entries.move_to_end(key)
                return hit[2]
        value = compute()
        with self._lock:
            self._drop(key)
            size = value.numel() * value.element_size()
            if size <= self.budget_bytes:
                ref = weakref.ref(prompt, lambda _, k=key: self._forget(k))
                self._entries[key] = (ref, prompt._version, value)
                self._bytes += size
                while self._bytes > self.budget_bytes:
                    self._drop(next(iter(self._entries)))
        return value

    def resize(self, budget_bytes: int) -> None:
        with self._lock:
            self.budget_bytes = budget_bytes
            while self._bytes > budget_bytes:
                self._drop(next(iter(self._entries)))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _forget(self, key: int) -> None:  # the prompt was garbage-collected
        with self._lock:
            self._drop(key)

    def _drop(self, key: int) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old[2].numel() * old[2].element_size()


PREFIXES = PrefixCache()
