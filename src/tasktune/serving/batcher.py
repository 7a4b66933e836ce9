"""The micro-batcher: requests of every task queue up (bounded, R12); one worker thread takes what has
arrived within a few milliseconds, up to ``max_batch`` texts, and answers it in as few forward passes
as the adaptations allow (see :mod:`tasktune.serving.mixed`), each cut into length buckets where that
is cheaper than padding (:mod:`tasktune.serving.passes`).

One worker owns the models: PyTorch forward passes are not made faster by running several at once on
the same device, and one thread keeps batches large and results deterministic. A request whose
deadline passes is answered 504 by its handler and its rows leave the queue at once (R13); its
batch-mates never see it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from tasktune.errors import DataError, TaskTuneError
from tasktune.serving.errors import ServingError
from tasktune.serving.mixed import mix_key, mixed_soft_prompt_proba
from tasktune.serving.passes import device_type_of, in_passes
from tasktune.serving.pool import Served
from tasktune.serving.shared_lora import AdapterUnloadedError, mixed_lora_proba
from tasktune.task.data import Example

log = logging.getLogger(__name__)


def _estimated_tokens(e: Example) -> int:
    """About four characters per token in English BPE vocabularies: enough to sort and bucket by."""
    return 1 + (len(e.text) + len(e.text_pair or "")) // 4


# Mix-key kinds answered by one function over rows of several adaptations (see serving/mixed.py).
MIXED = {"causal-soft-prompt": mixed_soft_prompt_proba, "shared-lora": mixed_lora_proba}


class QueueFull(Exception):
    pass


@dataclass(eq=False)
class Job:
    served: Served
    examples: list[Example]
    deadline: float  # time.monotonic() by which the answer is useless
    future: Future = field(default_factory=Future)


@dataclass
class BatchStats:
    batches: int = 0
    rows: int = 0
    last_rows: int = 0
    expired: int = 0


class MicroBatcher:
    def __init__(
        self,
        *,
        max_batch: int,
        wait_s: float,
        capacity_rows: int,
        on_batch: Callable[[int], None] | None = None,
    ):
        self.max_batch, self.wait_s, self.capacity = max_batch, wait_s, capacity_rows
        self.on_batch = on_batch
        self._queue: deque[Job] = deque()
        self._rows = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.stats = BatchStats()

    # --- producer side ------------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return self._rows

    def submit(self, served: Served, examples: list[Example], deadline: float) -> Future:
        job = Job(served, examples, deadline)
        with self._cond:
            if self._stopping:
                raise ServingError(503, "shutting_down", "the server is shutting down; retry elsewhere")
            if self._rows + len(examples) > self.capacity:
                raise QueueFull
            self._queue.append(job)
            self._rows += len(examples)
            self._cond.notify()
        job.future.add_done_callback(lambda f: self._forget(job) if f.cancelled() else None)
        return job.future

    def _forget(self, job: Job) -> None:
        """A cancelled job (deadline passed, client gone) frees its queue slot at once."""
        with self._cond:
            try:
                self._queue.remove(job)
            except ValueError:
                return  # already taken by the worker, which skips cancelled jobs
            self._rows -= len(job.examples)

    # --- worker side --------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tasktune-batcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Refuse new work, finish what is queued, then stop the worker."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _take(self) -> list[Job] | None:
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            jobs, rows = [], 0
            window_ends = time.monotonic() + self.wait_s
            while True:
                while self._queue and (not jobs or rows + len(self._queue[0].examples) <= self.max_batch):
                    job = self._queue.popleft()
                    self._rows -= len(job.examples)
                    jobs.append(job)
                    rows += len(job.examples)
                left = window_ends - time.monotonic()
                if rows >= self.max_batch or left <= 0 or self._stopping or self._queue:
                    return jobs
                self._cond.wait(left)

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if jobs is None:
                return
            try:
                self.run_jobs(jobs)
            except Exception:  # never let the worker die: fail these jobs, keep serving
                log.exception("batch failed")
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(ServingError(500, "internal", "prediction failed"))

    def run_jobs(self, jobs: list[Job]) -> None:
        now = time.monotonic()
        live = []
        for job in jobs:
            if not job.future.set_running_or_notify_cancel():
                continue  # cancelled while queued
            if job.deadline <= now:
                self.stats.expired += 1
                job.future.set_exception(
                    ServingError(504, "deadline_exceeded", "the request's deadline passed")
                )
                continue
            live.append(job)
        rows = sum(len(j.examples) for j in live)
        self.stats.batches += 1
        self.stats.rows += rows
        self.stats.last_rows = rows
        if self.on_batch and rows:
            self.on_batch(rows)
        groups: dict[object, list[Job]] = defaultdict(list)
        for job in live:
            groups[mix_key(job.served.scorer) or ("alone", id(job.served))].append(job)
        for key, members in groups.items():
            try:
                results = self._predict(key, members)
            except Exception as err:
                if len(members) == 1:
                    self._fail(members[0], err)
                    continue
                # One bad request must not sink its batch-mates: answer each alone.
                for job in members:
                    try:
                        job.future.set_result(self._predict(key, [job])[0])
                    except Exception as alone_err:
                        self._fail(job, alone_err)
                continue
            for job, probs in zip(members, results, strict=True):
                job.future.set_result(probs)

    def _predict(self, key: object, jobs: list[Job]) -> list[np.ndarray]:
        """Each job's (rows, labels) probabilities; the group's rows go in length buckets of at most
        ``max_batch`` (:mod:`tasktune.serving.passes`)."""
        mixed = MIXED.get(key[0]) if isinstance(key, tuple) else None
        if mixed is not None:
            probs = mixed([(job.served.scorer, e) for job in jobs for e in job.examples], self.max_batch)
        else:
            scorer = jobs[0].served.scorer
            flat = [e for job in jobs for e in job.examples]
            # The scorer tokenizes inside predict_proba, so passes are planned on a length estimate.
            probs = in_passes(
                [_estimated_tokens(e) for e in flat],
                device_type_of(scorer),
                lambda idx: scorer.predict_proba([flat[i] for i in idx]),
                self.max_batch,
            )
        out, at = [], 0
        for job in jobs:
            out.append(np.stack(probs[at : at + len(job.examples)]).astype(np.float64))
            at += len(job.examples)
        return out

    @staticmethod
    def _fail(job: Job, err: Exception) -> None:
        if isinstance(err, AdapterUnloadedError):  # an admin action raced the request: not its fault
            job.future.set_exception(ServingError(409, "version_unloaded", str(err)))
        elif isinstance(err, DataError):
            job.future.set_exception(ServingError(422, "invalid_input", str(err)))
        elif isinstance(err, TaskTuneError):
            job.future.set_exception(ServingError(422, "cannot_predict", str(err)))
        else:
            log.error("prediction failed for %s v%d", job.served.task, job.served.version, exc_info=err)
            job.future.set_exception(ServingError(500, "internal", "prediction failed"))
