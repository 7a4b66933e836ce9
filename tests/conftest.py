"""Shared fixtures: a network guard on every test, isolated caches, tiny models, small task files."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from tests.tiny_models import build_bert, build_llama

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
_LOOPBACK = ("127.", "::1", "localhost")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail any test that opens a connection beyond loopback (server tests may use loopback)."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else str(address)
        if self.family == socket.AF_UNIX or str(host).startswith(_LOOPBACK):
            return real_connect(self, address)
        raise AssertionError(f"test tried to open a network connection to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def one_thread_for_tiny_models(request):
    """Tiny models gain nothing from intra-op threads, and two threads spin-waiting on a loaded 2-core
    machine make them 20x slower; the slow tests (real backbones) keep torch's default."""
    import torch

    default = torch.get_num_threads()
    if request.node.get_closest_marker("slow") is None:
        torch.set_num_threads(1)
    yield
    torch.set_num_threads(default)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch, request):
    """Fast tests get their own tasktune cache; slow tests share the user's (the converted backbone)."""
    if request.node.get_closest_marker("slow") is None:
        monkeypatch.setenv("TASKTUNE_CACHE", str(tmp_path_factory.mktemp("cache")))
    # `tasktune run` keeps adaptations in ./tasktune-registry by default: never the checkout's in tests.
    monkeypatch.setenv("TASKTUNE_REGISTRY", str(tmp_path_factory.mktemp("registry")))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    return build_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    return build_bert(tmp_path_factory.mktemp("tiny-bert"))


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def make_rows(n_per_label: int, labels=("negative", "positive")) -> list[dict]:
    words = {"negative": "awful dreadful poor", "positive": "lovely superb fine"}
    return [
        {"text": f"review {i} was {words.get(label, label)} number {i}", "label": label}
        for i in range(n_per_label)
        for label in labels
    ]


@pytest.fixture
def task_dir(tmp_path) -> Path:
    """A valid small two-label task: 40 train rows per label, 10 test rows per label."""
    write_tiny_task(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def chromium() -> str:
    """Headless Chromium for page tests: skipped locally when missing, a failure on CI (``CI=true``)."""
    from tasktune.report.browser import find_chromium

    found = find_chromium()
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing on CI: install it (apt-get install -y chromium), see .ci/run")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    return found


def write_tiny_task(root: Path, n_train: int = 40, n_test: int = 10) -> Path:
    """A two-label task in ``root``: ``n_train`` train rows and ``n_test`` test rows per label."""
    write_jsonl(root / "train.jsonl", make_rows(n_train))
    write_jsonl(
        root / "test.jsonl",
        [{"text": f"test item {i} {y}", "label": y} for i in range(n_test) for y in ("negative", "positive")],
    )
    (root / "task.yaml").write_text(
        "name: tiny\nlabels:\n  - name: negative\n    words: [bad]\n  - name: positive\n    words: [good]\n"
        "data:\n  train: {path: train.jsonl}\n  test: {path: test.jsonl}\n"
    )
    return root / "task.yaml"
