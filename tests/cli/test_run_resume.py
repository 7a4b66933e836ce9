"""R3 for `tasktune run`: kill -9 the job in the middle of a cell's training, start the same command
again, and the cell resumes from its last checkpoint and ends with the predictions an uninterrupted run
gives (tiny llama, CPU)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tasktune.evaluation.results import read_result
from tasktune.runner import cell_name
from tests.training.helpers import kill_after_checkpoint

REPO = Path(__file__).resolve().parents[2]
# Checkpoints every 5 steps (the routes' default is every ten minutes of training).
SETTING = {"train.checkpoint_every": 5}
CELL = cell_name("prompt_tuning", "tiny-llama", "few", 13, None, SETTING)


def _run(task: Path, model: Path, out: Path, sleep_s: float = 0.0) -> subprocess.Popen:
    args = ["run", str(task), "--routes", "prompt_tuning", "--backbones", str(model), "--protocol", "few"]
    args += ["--seeds", "13", "--out", str(out), "--no-registry"]
    args += ["--set", "prompt_tuning.train.checkpoint_every=5"]
    cmd = [sys.executable, "-m", "tests.cli.run_killable", str(sleep_s), *args]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]


def test_killed_run_resumes_the_cell_from_its_checkpoint(task_dir, tiny_llama_dir, tmp_path):
    model = tmp_path / "tiny-llama"
    model.symlink_to(tiny_llama_dir)  # a fixed folder name, so the cell's name is known
    task = task_dir / "task.yaml"
    _finish(_run(task, model, tmp_path / "a"))

    out = tmp_path / "b"
    proc = _run(task, model, out, sleep_s=0.1)
    killed_at = kill_after_checkpoint(proc, out / ".work" / CELL, 20, deadline_s=240)
    assert not (out / f"{CELL}.json").exists()

    _finish(_run(task, model, out))
    a, b = read_result(tmp_path / "a" / f"{CELL}.json"), read_result(out / f"{CELL}.json")
    assert b.info.route_config["resumed_from_step"] == killed_at
    assert a.info.route_config["resumed_from_step"] is None
    assert [r.probs for r in a.records] == [r.probs for r in b.records]
    assert a.info.route_config["best_step"] == b.info.route_config["best_step"]
    # The cost counts the training the checkpoint held, not only the time after the resume.
    carried = b.info.route_config["resumed"]
    assert carried["training_loops"] == 1 and carried["seconds_from_checkpoints"] > 0
    # train_seconds is the loop's own total across the resume; without the carried part the runner's
    # fit time (this process only) would be shorter than it.
    assert b.timings.fit_seconds >= b.info.route_config["train_seconds"] > carried["seconds_from_checkpoints"]
    assert "resumed" not in a.info.route_config
    assert not (out / ".work" / CELL).exists()  # checkpoints go once the result is kept
