import pytest

import tasktune.routes.prompt_tuning.sweep as sweep
from tasktune.backbones.loading import load_backbone
from tasktune.task.data import load_splits
from tasktune.task.spec import load_task


@pytest.mark.parametrize("depth,lr", [("shallow", 3e-2), ("deep", 5e-3)])
def test_sweep_trains_a_label_start_with_the_label_start_settings(
    task_dir, tiny_llama_dir, monkeypatch, depth, lr
):
    """On a causal LM the route's defaults are tuned for the prompt start; a swept label-word start must
    get the settings the route would give it (lr 3e-2 shallow, no start evaluation), not those."""
    seen = []

    def capture(ctx, options, seed):
        seen.append(options)
        raise RuntimeError("captured")

    monkeypatch.setattr(sweep, "fit_soft_prompt", capture)
    spec = load_task(task_dir / "task.yaml")
    backbone = load_backbone(str(tiny_llama_dir), device="cpu")
    with pytest.raises(RuntimeError, match="captured"):
        sweep.sweep_lengths(
            spec,
            load_splits(spec),
            backbone,
            lengths=[3],
            seeds=[13],
            protocol="few",
            depth=depth,
            init="labels",
        )
    (options,) = seen
    assert options.init == "labels" and options.num_virtual_tokens == 3 and options.depth == depth
    assert options.train.lr == lr and options.train.eval_at_start is False
