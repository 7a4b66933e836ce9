"""The GGUF → safetensors cache, on a fake backbone: it is reused only for the very source file it was
made from, and two processes (here threads, which flock also separates) starting at once convert once."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tasktune.backbones import prepare as prep


@dataclass
class FakeBackbone:
    path: Path
    name: str = "fake"
    gguf_file: str = "model.gguf"

    def source_path(self) -> Path:
        return self.path


@pytest.fixture
def fake(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKTUNE_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "pkg" / "model.gguf"
    source.parent.mkdir()
    source.write_bytes(b"A" * 100)
    calls = []

    def convert(src: Path, out: Path) -> None:
        calls.append(src.read_bytes())
        time.sleep(0.3)  # long enough for a second caller to arrive while this one converts
        (out / "model.safetensors").write_bytes(src.read_bytes())

    monkeypatch.setattr(prep, "_convert", convert)
    return FakeBackbone(source), calls


def test_a_cache_is_reused_for_its_own_source_only(fake):
    backbone, calls = fake
    assert prep.cached_folder(backbone) is None
    folder = prep.prepare(backbone)
    assert prep.cached_folder(backbone) == folder and len(calls) == 1
    # Touched but unchanged (e.g. reinstalled): the hash says it is the same file; no new conversion.
    os.utime(backbone.path, ns=(1, 1))
    assert prep.cached_folder(backbone) == folder
    assert json.loads((folder / prep.SOURCE_FILE).read_text())["source_mtime_ns"] == 1  # remembered
    # Re-quantised to the same size: the old weights must not be loaded.
    backbone.path.write_bytes(b"B" * 100)
    assert prep.cached_folder(backbone) is None
    again = prep.prepare(backbone)
    assert again == folder and len(calls) == 2 and (again / "model.safetensors").read_bytes() == b"B" * 100
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".fake-100.old")] == []


def test_two_callers_at_once_convert_once(fake):
    backbone, calls = fake
    results, errors = [], []

    def run():
        try:
            results.append(prep.prepare(backbone))
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(calls) == 1 and len(set(results)) == 1
    assert (results[0] / "model.safetensors").is_file()
