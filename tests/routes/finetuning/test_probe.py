"""LP-FT's probe: a logistic regression on frozen features that starts the head."""

import pytest
import torch

from tasktune.routes.base import FitContext
from tasktune.routes.finetuning import route as ft_route
from tasktune.routes.finetuning.classifier import FinetunedClassifier
from tasktune.routes.finetuning.config import FinetuneOptions, default_options
from tasktune.routes.finetuning.probe import fit_linear_probe
from tasktune.training.config import TrainConfig
from tests.routes.finetuning.test_route import DEV, TRAIN
from tests.routes.prompting.conftest import TASK


def test_probe_separates_badly_scaled_features_and_applies_to_the_raw_ones():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    x = torch.randn(60, 8, generator=g) + torch.nn.functional.one_hot(y, 8).float() * 3
    x[:, 5] = x[:, 5] * 500 + 1000  # a "massive activation" dimension, as decoders have
    weight, bias, acc = fit_linear_probe(x, y, 3)
    assert weight.shape == (3, 8) and bias.shape == (3,)
    assert acc == 1.0 and torch.equal((x @ weight.T + bias).argmax(1), y)
    # Regularised: separable data do not send the weights to infinity.
    assert weight.abs().max() < 50
    again = fit_linear_probe(x, y, 3)
    assert torch.equal(again[0], weight)  # deterministic


def test_probe_needs_a_head():
    opts = default_options("few", "prompt", "full", "causal", 13)
    with pytest.raises(ValueError, match="prompt objective has none"):
        FinetuneOptions(**{**opts.model_dump(), "head_init": "probe"})


@pytest.mark.parametrize("which", ["llama", "bert"])
def test_probe_starts_the_head_at_the_frozen_models_best_readout(which, request):
    backbone = request.getfixturevalue(which)
    opts = default_options("few", "head", "full", backbone.kind, 13).model_copy(
        update={"head_init": "probe", "train": TrainConfig(max_steps=2, batch_size=4, lr=1e-3, seed=13)}
    )
    clf = FinetunedClassifier(backbone, TASK, opts, 13)
    random_head = clf.head[1].weight.detach().clone()
    report = clf.probe(TRAIN)
    assert report["examples"] == len(TRAIN) and report["train_accuracy"] == 1.0  # 8 examples, 2 classes
    assert not torch.equal(clf.head[1].weight, random_head)
    with torch.no_grad():
        feats = clf._pooled(TRAIN)
    expected, _, _ = fit_linear_probe(feats, torch.tensor([e.label for e in TRAIN]), 2)
    assert torch.allclose(clf.head[1].weight, expected, atol=1e-5)
    # Through the route: the probe's figures go into the training summary.
    _, result, _ = ft_route.fit_finetuned(FitContext(TASK, TRAIN, DEV, "few", 13, backbone), opts)
    assert result.extra["probe"]["train_accuracy"] == 1.0
    # A random head (the default) is left as initialised.
    plain = FinetunedClassifier(backbone, TASK, opts.model_copy(update={"head_init": "random"}), 13)
    assert plain.probe(TRAIN) is None and torch.equal(plain.head[1].weight, random_head)


def test_the_probe_is_the_default_only_where_it_was_measured_to_help():
    assert default_options("few", "head", "full", "encoder", 13).head_init == "probe"
    assert default_options("few", "head", "lora", "encoder", 13).head_init == "probe"
    causal = default_options("few", "head", "full", "causal", 13)
    assert (causal.head_init, causal.head_input) == ("probe", "template")  # measured together
    full = default_options("full", "head", "full", "causal", 13, 8000)
    assert (full.head_init, full.head_input) == ("probe", "template")
    assert full.train.eval_at_start  # the probe is a classifier dev may prefer to the fine-tune
    assert not default_options("full", "head", "full", "encoder", 13, 8000).train.eval_at_start
    assert default_options("few", "head", "full", "encoder", 13).head_input == "text"
    assert default_options("full", "head", "full", "encoder", 13, 8000).head_init == "random"
    assert default_options("few", "prompt", "full", "encoder", 13).head_init == "random"
