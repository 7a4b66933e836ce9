"""R4: a non-finite loss or gradient norm stops the run at once, naming the step; the last good
checkpoint stays on disk unchanged and loadable."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from tasktune.backbones.device import resolve_device
from tasktune.training import DivergenceError, TrainConfig, checkpoints_of, train
from tests.training.helpers import LinearTrainable, features, make_examples

CPU = resolve_device("cpu")
CONFIG = TrainConfig(max_steps=10, batch_size=4, lr=0.05, checkpoint_every=2, eval_every=2, seed=1)


def _folder_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize(
    ("inject", "what"), [("nan_loss_at_call", "loss"), ("nan_grad_at_call", "gradient norm")]
)
def test_non_finite_stops_at_the_step_and_keeps_last_checkpoint(tmp_path, inject, what):
    examples = make_examples(24)
    train_ex, dev_ex, table = examples[:16], examples[16:], features(24)
    seen: dict[str, str] = {}

    def before_step_5(call: int) -> None:  # one loss call per step (no accumulation)
        if call == 5:
            seen["hash"] = _folder_hash(checkpoints_of(tmp_path)[-1])

    model = LinearTrainable(table, on_loss_call=before_step_5, **{inject: 5})
    with pytest.raises(DivergenceError) as err:
        train(model, train_ex, dev_ex, CONFIG, CPU, output_dir=tmp_path, progress=False)
    message = str(err.value)
    assert "step 5" in message and f"the {what} is nan" in message
    assert err.value.step == 5 and err.value.checkpoint == checkpoints_of(tmp_path)[-1]

    # The last good checkpoint (step 4) is the newest one, byte for byte what it was before step 5.
    assert [p.name for p in checkpoints_of(tmp_path)] == ["step-00000002", "step-00000004"]
    assert _folder_hash(checkpoints_of(tmp_path)[-1]) == seen["hash"]
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]  # no temp left
    assert not (tmp_path / "best").exists()  # nothing is presented as a trained result

    # ... and loadable: resuming from it with a healthy trainable finishes, like a run that never broke.
    resumed = LinearTrainable(table)
    result = train(resumed, train_ex, dev_ex, CONFIG, CPU, output_dir=tmp_path, resume=True, progress=False)
    reference = LinearTrainable(table)
    expected = train(reference, train_ex, dev_ex, CONFIG, CPU, output_dir=tmp_path / "ref", progress=False)
    assert result.resumed_from_step == 4 and result.final_step == 10
    assert result.best_metric == expected.best_metric
    for (name, a), (_, b) in zip(resumed.parameters(), reference.parameters(), strict=True):
        assert torch.equal(a, b), name


def test_divergence_without_checkpoints_says_so():
    examples = make_examples(12)
    model = LinearTrainable(features(12), nan_loss_at_call=3)
    with pytest.raises(DivergenceError, match=r"at step 3: the loss is nan.*no checkpoint was written"):
        train(model, examples[:8], examples[8:], TrainConfig(max_steps=5, batch_size=4), CPU, progress=False)
