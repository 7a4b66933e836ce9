"""R3 for fine-tuning: SIGKILL a full fine-tune and a LoRA run mid-way, resume, and get tensors equal
to an uninterrupted run (tiny llama, CPU, fixed seed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.routes.finetuning.run_finetune import CONFIG
from tests.training.helpers import kill_after_checkpoint

REPO = Path(__file__).resolve().parents[3]


def _run(model_dir: Path, out: Path, adapter: str, sleep_s: float = 0.0, resume: bool = False):
    args = [sys.executable, "-m", "tests.routes.finetuning.run_finetune", str(model_dir), str(out), adapter]
    args += [str(sleep_s)] + (["resume"] if resume else [])
    return subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]


@pytest.mark.parametrize("adapter", ["full", "lora"])
def test_kill_minus_nine_then_resume_equals_uninterrupted(adapter, tiny_llama_dir, tmp_path):
    # Every run in a subprocess of its own, so that all use the same thread settings.
    _finish(_run(tiny_llama_dir, tmp_path / "a", adapter))

    out_b = tmp_path / "b"
    proc = _run(tiny_llama_dir, out_b, adapter, sleep_s=0.15)
    killed_at = kill_after_checkpoint(proc, out_b, 4, deadline_s=60)
    assert 4 <= killed_at < CONFIG.max_steps
    assert not (out_b / "final.safetensors").exists()

    _finish(_run(tiny_llama_dir, out_b, adapter, resume=True))
    a = load_file(str(tmp_path / "a" / "final.safetensors"))
    b = load_file(str(out_b / "final.safetensors"))
    assert a.keys() == b.keys() and len(a) > 0
    if adapter == "lora":
        assert all("lora_" in k or k.startswith("head.") or k.startswith("label_bias") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
