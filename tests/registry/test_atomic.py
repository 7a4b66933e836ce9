"""R5: a writer killed at any point leaves the previous versions loadable, no half version visible,
and only leftovers that ``gc`` removes. Children are forked (no re-import) and die without cleanup:
``os._exit`` at chosen points of the commit, or SIGKILL at random moments of a save loop."""

from __future__ import annotations

import multiprocessing
import os
import random
import time
from pathlib import Path

import pytest
import torch

from tasktune.registry import Registry
from tasktune.registry.files import PENDING_LOCK_SUFFIX
from tasktune.registry.names import parse_version_dir
from tests.registry.conftest import identity

ctx = multiprocessing.get_context("fork")
BIG = torch.randn(512, 1024)  # 2 MiB per save: long enough for kills to land mid-write


def _save(reg: Registry) -> int:
    return reg.save("big", "full", backbone=identity(), route="full-ft", tensors={"w": BIG})


def _crash_at(root: Path, point: str) -> None:
    """Child: patch one step of the commit to die there, then save."""
    import tasktune.registry.files as files
    import tasktune.registry.store as store

    def die(*_a, **_k):
        os._exit(9)

    if point == "before_manifest":
        store.write_bytes_durably = die  # the manifest is the first thing _commit writes
    elif point == "after_rename":
        real = store.fsync_path
        store.fsync_path = lambda p: die() if p.name == "big" else real(p)  # the task dir, post-rename
    elif point == "before_insert":
        store.insert = die
    elif point == "before_cleanup":
        files.TempFolder.close = die
    _save(Registry(root))
    os._exit(0)


def _run_child(target, *args) -> int:
    proc = ctx.Process(target=target, args=args)
    proc.start()
    proc.join(60)
    return proc.exitcode


def _assert_consistent(root: Path, expect_versions: list[int]) -> int:
    """Every listed version loads, gc leaves a clean registry; returns how many leftovers it removed."""
    reg = Registry(root)
    assert [i.version for i in reg.list()] == expect_versions
    for version in expect_versions[:1] + expect_versions[-2:]:
        assert torch.equal(reg.load("big", version).tensors["w"], BIG)
    removed = reg.gc()
    assert reg.verify() == []
    # Only a provisional lock of a writer killed within microseconds of creating it may wait for
    # gc's grace period (it cannot be told apart from a live writer in that window).
    assert [p.name for p in reg.tmp_dir.iterdir() if not p.name.endswith(PENDING_LOCK_SUFFIX)] == []
    assert all(parse_version_dir(p.name) not in expect_versions for p in removed)
    reg.close()
    return len(removed)


@pytest.mark.parametrize("point", ["before_manifest", "after_rename", "before_insert"])
def test_crash_inside_commit_leaves_previous_state(tmp_path, point):
    root = tmp_path / "reg"
    with Registry(root) as reg:
        assert _save(reg) == 1
    assert _run_child(_crash_at, root, point) == 9
    with Registry(root) as reg:
        assert [i.version for i in reg.list()] == [1]  # no half version visible
        assert reg.verify() != []  # ... but the leftover is noticed
    _assert_consistent(root, [1])
    with Registry(root) as reg:
        assert _save(reg) == 2  # numbering continues densely after cleanup


def test_crash_after_commit_keeps_the_version(tmp_path):
    root = tmp_path / "reg"
    assert _run_child(_crash_at, root, "before_cleanup") == 9
    _assert_consistent(root, [1])


def test_new_save_after_crash_moves_an_orphan_aside(tmp_path):
    root = tmp_path / "reg"
    with Registry(root) as reg:
        _save(reg)
    _run_child(_crash_at, root, "after_rename")  # leaves artifacts/big/v2 without a row
    assert (root / "artifacts/big/v2").is_dir()
    with Registry(root) as reg:
        assert _save(reg) == 2  # no gc in between: the orphan is not mistaken for this version
        assert torch.equal(reg.load("big", 2).tensors["w"], BIG)
    _assert_consistent(root, [1, 2])


def _save_forever(root: Path, ready) -> None:
    reg = Registry(root)
    ready.set()
    while True:
        _save(reg)


def test_sigkill_at_random_moments(tmp_path):
    root = tmp_path / "reg"
    with Registry(root) as reg:
        _save(reg)
    rng = random.Random(1234)
    leftovers = 0
    for _ in range(5):
        ready = ctx.Event()
        proc = ctx.Process(target=_save_forever, args=(root, ready))
        proc.start()
        assert ready.wait(30)
        time.sleep(rng.uniform(0.01, 0.25))
        proc.kill()
        proc.join(30)
        assert proc.exitcode == -9
        with Registry(root) as reg:
            count = len(reg.list())
        leftovers += _assert_consistent(root, list(range(1, count + 1)))
    assert leftovers > 0  # at least one kill landed mid-write, so the crash path was exercised


def test_gc_spares_a_live_writer_and_committed_versions(tmp_path):
    from tasktune.registry.files import TempFolder

    root = tmp_path / "reg"
    with Registry(root) as reg:
        _save(reg)
        live = TempFolder(reg.tmp_dir, "big")  # a writer in progress (holds its lock)
        (live.path / "weights.safetensors").write_bytes(b"partial")
        assert reg.gc() == [] and reg.verify() == []
        assert (live.path / "weights.safetensors").exists()
        live.close()
        assert [i.version for i in reg.list()] == [1] and reg.load("big", 1).version == 1
