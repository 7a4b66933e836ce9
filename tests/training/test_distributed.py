"""Data parallel training: the loop under ``accelerate launch`` with 2 CPU processes (gloo on loopback)
equals one process on the same global batch, ranks agree, only rank 0 writes, and resume is exact."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import safetensors.torch
import torch

from tasktune.backbones.device import resolve_device
from tasktune.training import LocalBackend, checkpoints_of, read_folder, select_backend, train
from tasktune.training.backend import shard_bounds
from tests.training.helpers import tensors_of
from tests.training.run_distributed import SCENARIOS, data

REPO = Path(__file__).resolve().parents[2]
RESUME_FROM_STEP = 4  # of 9: mid-run, after an epoch boundary (steps 1-3 are epoch 0)
_LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(root: Path, tmp: Path, *extra: str) -> str:
    """``accelerate launch`` the worker on 2 CPU processes; returns its output. ``--multi_gpu`` is the
    launcher that starts N local processes through torch.distributed.run (``--cpu`` with N > 1 needs
    mpirun); on a machine without CUDA the ranks run gloo on CPU."""
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCHER_VARS}
    env.update(
        HF_HOME=str(tmp / "hf"),  # no user accelerate config
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        DO_NOT_TRACK="1",
        CUDA_VISIBLE_DEVICES="",  # CPU even on a GPU machine
        GLOO_SOCKET_IFNAME="lo",  # gloo on loopback, not the host's address
        MASTER_ADDR="127.0.0.1",
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
    )
    launcher = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes=2",
        "--num_machines=1",
        "--mixed_precision=no",
        "--dynamo_backend=no",
        "--main_process_ip=127.0.0.1",
    ]
    worker = ["-m", "tests.training.run_distributed", str(root), *extra]
    for _attempt in range(3):
        cmd = [*launcher, f"--main_process_port={_free_port()}", *worker]
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        output = proc.stdout + proc.stderr
        # The port was free when asked for, but another process may take it before rank 0 binds it.
        if proc.returncode == 0 or "address already in use" not in output.lower():
            break
    assert proc.returncode == 0, output[-6000:]
    return output


def _rank_files(folder: Path) -> tuple[list[dict[str, torch.Tensor]], list[dict]]:
    tensors = [safetensors.torch.load_file(str(folder / f"rank-{r}.safetensors")) for r in range(2)]
    summaries = [json.loads((folder / f"rank-{r}.json").read_text()) for r in range(2)]
    return tensors, summaries


def _last_checkpoint(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    return read_folder(checkpoints_of(folder)[-1])[0]


def _assert_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _prepare_resume(source: Path, target: Path) -> None:
    """A copy of a finished run as it stood at RESUME_FROM_STEP: later checkpoints, best/ and outputs gone."""
    shutil.copytree(source, target)
    for path in checkpoints_of(target):
        if int(path.name.split("-")[1]) > RESUME_FROM_STEP:
            shutil.rmtree(path)
    shutil.rmtree(target / "best")
    for path in target.glob("rank-*"):
        path.unlink()
    assert int(checkpoints_of(target)[-1].name.split("-")[1]) == RESUME_FROM_STEP


def test_two_processes_equal_one_and_resume_exactly(tmp_path: Path) -> None:
    started = time.monotonic()
    root = tmp_path / "run"
    for name in SCENARIOS:
        (root / name).mkdir(parents=True)
    output = _launch(root, tmp_path)
    assert output.count("training backend: accelerate data parallel") == 2 * len(
        SCENARIOS
    )  # chosen by itself

    max_diff = 0.0
    for name, scenario in SCENARIOS.items():
        folder = root / name
        tensors, summaries = _rank_files(folder)
        _assert_equal(tensors[0], tensors[1])  # both ranks end with the same tensors...
        assert summaries[0] == summaries[1]  # ...after the same steps, losses and dev metrics
        assert summaries[0]["final_step"] == 3 * -(-scenario.n_train // (scenario.config.batch_size * 2))
        if scenario.dropout:
            continue  # ranks draw their own dropout masks: no single-process twin
        # The same run in this process (one process, the local backend) on the same global batches.
        train_ex, dev_ex, model = data(scenario)
        train(
            model,
            train_ex,
            dev_ex,
            scenario.config,
            resolve_device("cpu"),
            output_dir=tmp_path / name,
            progress=False,
        )
        final_1, final_2 = _last_checkpoint(tmp_path / name), _last_checkpoint(folder)
        for one, two in [(tensors_of(model), tensors[0]), (final_1["trainable"], final_2["trainable"])]:
            for key in one:
                torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=1e-6)
                max_diff = max(max_diff, (two[key] - one[key]).abs().max().item())
    print(f"max |2 processes - 1 process| = {max_diff:.3g}")

    # Only rank 0 wrote checkpoints and best/.
    assert not (root / "writes-rank-1.txt").exists()
    written = (root / "writes-rank-0.txt").read_text().split()
    assert any(w.endswith("best") for w in written) and any("step-" in w for w in written)

    # Resume under 2 processes from a mid-run checkpoint: bit-identical to the uninterrupted run.
    resumed = tmp_path / "resumed"
    for name in ("uneven", "dropout"):
        _prepare_resume(root / name, resumed / name)
    _launch(resumed, tmp_path, "--resume")
    for name in ("uneven", "dropout"):
        tensors, summaries = _rank_files(resumed / name)
        uninterrupted, uninterrupted_summaries = _rank_files(root / name)
        assert summaries[0]["resumed_from_step"] == summaries[1]["resumed_from_step"] == RESUME_FROM_STEP
        for r in range(2):
            _assert_equal(tensors[r], uninterrupted[r])
            assert {**summaries[r], "resumed_from_step": None} == uninterrupted_summaries[r]
        last_resumed, last_full = _last_checkpoint(resumed / name), _last_checkpoint(root / name)
        for group in ("trainable", "optimizer", "best"):
            _assert_equal(last_resumed[group], last_full[group])
    assert not (resumed / "writes-rank-1.txt").exists()
    print(f"distributed test: {time.monotonic() - started:.1f} s")


def test_shards_cover_each_micro_batch_once():
    for world in (2, 3):
        for n in range(8):
            bounds = [shard_bounds(n, rank, world) for rank in range(world)]
            assert [i for start, stop in bounds for i in range(start, stop)] == list(range(n))
            sizes = [stop - start for start, stop in bounds]
            assert max(sizes) - min(sizes) <= 1
    assert [shard_bounds(1, rank, 2) for rank in range(2)] == [(0, 0), (0, 1)]  # rank 0 empty


def test_one_process_selects_the_local_backend(monkeypatch):
    for value in (None, "1"):
        if value is None:
            monkeypatch.delenv("WORLD_SIZE", raising=False)
        else:
            monkeypatch.setenv("WORLD_SIZE", value)
        assert isinstance(select_backend(resolve_device("cpu")), LocalBackend)
