"""R3: SIGKILL a training process after a checkpoint, resume it, and get bit-identical tensors."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from tasktune.backbones.device import resolve_device
from tasktune.training import carried_seconds, checkpoints_of, read_folder, train
from tests.training.helpers import kill_after_checkpoint
from tests.training.run_linear import RESUME_CONFIG, data

REPO = Path(__file__).resolve().parents[2]
KILL_AFTER_STEP = 10


def _without_seconds(history) -> list[dict]:
    return [{k: v for k, v in asdict(h).items() if k != "seconds"} for h in history]


def test_kill_minus_nine_then_resume_equals_uninterrupted(tmp_path):
    cpu = resolve_device("cpu")
    # A: uninterrupted, in this process.
    train_a, dev_a, model_a = data()
    result_a = train(model_a, train_a, dev_a, RESUME_CONFIG, cpu, output_dir=tmp_path / "a", progress=False)

    # B: the same run in a subprocess, killed with SIGKILL once a checkpoint past step 10 exists.
    out_b = tmp_path / "b"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.training.run_linear", str(out_b), "0.05"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    killed_at = kill_after_checkpoint(proc, out_b, KILL_AFTER_STEP)
    assert KILL_AFTER_STEP <= killed_at < RESUME_CONFIG.max_steps  # genuinely interrupted mid-run

    # Resume B in this process, from a fresh trainable (its tensors come from the checkpoint).
    train_b, dev_b, model_b = data()
    _, meta = read_folder(checkpoints_of(out_b)[-1])
    with carried_seconds() as carried:
        result_b = train(
            model_b, train_b, dev_b, RESUME_CONFIG, cpu, output_dir=out_b, resume=True, progress=False
        )
    assert result_b.resumed_from_step == killed_at
    # The wall time the checkpoint recorded is reported to the caller's clock (runner's fit_seconds).
    assert carried.loops == 1 and carried.seconds == meta["state"]["loop"]["seconds"] > 0
    for (name, a), (_, b) in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(a, b), name  # the best tensors, restored at the end
    last_a, _ = read_folder(checkpoints_of(tmp_path / "a")[-1])
    last_b, _ = read_folder(checkpoints_of(out_b)[-1])
    # Final (not only best) tensors, optimizer state and the weight average.
    for group in ("trainable", "optimizer", "best", "average"):
        assert last_a[group].keys() == last_b[group].keys()
        for key in last_a[group]:
            assert torch.equal(last_a[group][key], last_b[group][key]), (group, key)
    assert result_b.best_metric == result_a.best_metric and result_b.best_step == result_a.best_step
    assert result_b.final_step == result_a.final_step == RESUME_CONFIG.max_steps
    assert _without_seconds(result_b.history) == _without_seconds(result_a.history)
    assert any(h.step > killed_at and h.dev is not None for h in result_b.history)  # evaluated after resume
