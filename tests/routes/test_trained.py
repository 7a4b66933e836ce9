"""What a trained route's checkpoint records of its options (routes/trained.checkpointed)."""

from __future__ import annotations

from pathlib import Path

from tasktune.routes.finetuning.config import default_options
from tasktune.routes.trained import checkpointed


def _setup(options, tmp_path: Path) -> dict:
    _, kwargs = checkpointed(options.train, tmp_path, options)
    return kwargs["setup"]


def test_options_applied_after_training_do_not_stop_a_resume(tmp_path):
    base = default_options("few", "prompt", "full", "causal", seed=13)  # WiSE-FT 0.5 by default
    assert base.interpolate == 0.5
    other = base.model_copy(
        update={"interpolate": 1.0, "lora": base.lora.model_copy(update={"merge_for_inference": True})}
    )
    assert _setup(base, tmp_path) == _setup(other, tmp_path)
    assert "interpolate" not in _setup(base, tmp_path)
    assert "merge_for_inference" not in _setup(base, tmp_path)["lora"]
    assert "train" not in _setup(base, tmp_path)  # the loop compares the TrainConfig itself


def test_options_that_shape_training_are_recorded(tmp_path):
    base = default_options("few", "head", "full", "encoder", seed=13)
    other = base.model_copy(update={"head_init": "random" if base.head_init == "probe" else "probe"})
    assert _setup(base, tmp_path)["head_init"] != _setup(other, tmp_path)["head_init"]
    lora = base.model_copy(update={"lora": base.lora.model_copy(update={"r": 16})})
    assert _setup(lora, tmp_path)["lora"]["r"] == 16


def test_dev_sample_is_seeded_ordered_and_all_when_unlimited():
    from tasktune.routes.trained import dev_sample
    from tasktune.task.data import Example

    dev = [Example(f"t{i}", i % 2, row=i + 1) for i in range(50)]
    a, b = dev_sample(dev, 10, seed=3), dev_sample(dev, 10, seed=3)
    assert a == b and len(a) == 10
    assert [e.row for e in a] == sorted(e.row for e in a)  # kept in dev's order
    assert dev_sample(dev, 10, seed=4) != a
    assert dev_sample(dev, None, seed=3) == dev == dev_sample(dev, 500, seed=3)
