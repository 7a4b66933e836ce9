"""R10: several processes saving and moving aliases at once: no "database is locked", SQLite's
integrity check is ok, and version numbers are unique and dense."""

from __future__ import annotations

import multiprocessing
import time
import traceback
from pathlib import Path

from sqlalchemy import text

from tasktune.registry import Registry

ctx = multiprocessing.get_context("fork")
PROCESSES, OPS = 8, 200  # half small saves, half alias moves per process


def _worker(root: Path, worker: int, start, errors) -> None:
    try:
        reg = Registry(root)
        start.wait(30)
        for op in range(OPS):
            if op % 2 == 0:
                reg.save(
                    "shared", "prompt", backbone=None, route="prompting", run_id=f"{worker}-{op}",
                    json_files={"prompt.json": {"worker": worker, "op": op}},
                )  # fmt: skip
            else:
                reg.set_alias("shared", f"w{worker}", "latest")
                reg.set_alias("shared", "production", "latest")
        reg.close()
    except BaseException:
        errors.put(f"worker {worker}: {traceback.format_exc()}")
        raise


def test_parallel_writers(tmp_path):
    root = tmp_path / "reg"
    Registry(root).close()  # create the schema once; workers open their own engines
    start, errors = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(root, w, start, errors)) for w in range(PROCESSES)]
    for p in procs:
        p.start()
    began = time.monotonic()
    start.set()
    for p in procs:
        p.join(120)
    elapsed = time.monotonic() - began
    messages = [errors.get() for _ in range(errors.qsize())] if not errors.empty() else []
    assert messages == [] and [p.exitcode for p in procs] == [0] * PROCESSES, messages
    with Registry(root) as reg:
        with reg.engine.connect() as conn:
            assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        infos = reg.list("shared")
        assert [i.version for i in infos] == list(range(1, PROCESSES * OPS // 2 + 1))  # unique and dense
        assert len({i.run_id for i in infos}) == len(infos)  # every save landed exactly once
        aliases = reg.aliases("shared")
        assert set(aliases) == {"production", *(f"w{w}" for w in range(PROCESSES))}
        assert reg.verify() == []
    assert elapsed < 60
