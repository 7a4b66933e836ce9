import numpy as np
import pytest

from tasktune.routes import get_route
from tasktune.routes.base import FitContext
from tasktune.routes.prompt_tuning import route as pt_route
from tasktune.routes.prompt_tuning.config import default_options
from tasktune.task.data import Example
from tasktune.training.config import TrainConfig
from tests.routes.helpers import save_and_load
from tests.routes.prompting.conftest import TASK

TRAIN = tuple(
    Example(t, i % 2, row=i + 1)
    for i, t in enumerate(["awful soup", "great food", "rude staff", "lovely"] * 2)
)
DEV = TRAIN[:4]


@pytest.fixture(autouse=True)
def quick_options(monkeypatch):
    """Tiny runs: the route's defaults are for real models."""

    def options(protocol, depth="shallow", seed=13, n_train=None, backbone_kind="causal", from_prompt=None):
        base = default_options(protocol, depth, seed, backbone_kind=backbone_kind)
        train = TrainConfig(max_steps=6, batch_size=4, lr=0.1, eval_every=3, seed=seed)
        # Label-word init so the prompt has the length asked for (a prompt-initialised one has the
        # zero-shot prompt's; tests/routes/prompt_tuning/test_trainables.py covers that).
        return base.model_copy(update={"num_virtual_tokens": 3, "init": "labels", "train": train})

    monkeypatch.setattr(pt_route, "default_options", options)


@pytest.fixture(scope="module")
def llama(tiny_llama_dir):
    from tasktune.backbones.loading import load_backbone

    return load_backbone(str(tiny_llama_dir), device="cpu")


@pytest.mark.parametrize(
    ("route", "kind", "shape"),
    [("prompt_tuning", "soft-prompt", (3, 32)), ("deep_prompt_tuning", "deep-prompt", None)],
)
def test_route_trains_and_describes_its_artifact(llama, route, kind, shape):
    fitted = get_route(route).fit(FitContext(TASK, TRAIN, DEV, "few", 13, llama))
    assert fitted.artifact["kind"] == kind
    tensor = fitted.artifact["tensors"]["prompt_embeddings"]
    if shape:
        assert tuple(tensor.shape) == shape
    assert fitted.trainable_parameters == tensor.numel() and fitted.artifact_bytes == tensor.numel() * 4
    assert fitted.config["learning_curve"] and fitted.config["best_step"] is not None
    probs = fitted.scorer.predict_proba(list(DEV))
    assert probs.shape == (4, 2) and np.allclose(probs.sum(1), 1)


def test_zero_shot_protocol_is_refused(llama):
    from tasktune.errors import TaskTuneError

    with pytest.raises(TaskTuneError, match="few or full"):
        get_route("prompt_tuning").fit(FitContext(TASK, (), (), "zero", 13, llama))


def test_ensemble_equals_mean_of_members_in_one_pass(llama):
    fitted = get_route("prompt_ensemble").fit(FitContext(TASK, TRAIN, DEV, "few", 13, llama))
    members = fitted.scorer.members
    assert len(members) == 3 and "dev_accuracy_ensemble" in fitted.config
    batch = list(DEV)
    expected = np.mean([m.predict_proba(batch) for m in members], axis=0)
    np.testing.assert_allclose(fitted.scorer.predict_proba(batch), expected, atol=1e-5)
    # Each member's own answer comes out of the same pass (what the evaluator reports the gain from).
    per_member = fitted.scorer.predict_member_proba(batch)
    for m, member in enumerate(members):
        np.testing.assert_allclose(per_member[:, m], member.predict_proba(batch), atol=1e-5)


def test_prompt_started_members_keep_their_calibration_through_the_registry(llama, tmp_path):
    from tasktune.routes.restore import restore_scorer

    texts = tuple(e.text for e in TRAIN)
    ctx = FitContext(TASK, TRAIN, DEV, "few", 13, llama, texts, options={"init": "prompt"})
    fitted = get_route("prompt_ensemble").fit(ctx)
    members = fitted.scorer.members
    assert all(m.options.init == "prompt" for m in members)
    assert all(m.label_bias.abs().sum() > 0 for m in members)  # calibrated starts, as prompt_tuning's
    stored = fitted.artifact
    assert stored["json_files"]["ensemble.json"]["label_bias"] == [m.label_bias.tolist() for m in members]
    batch = list(DEV)
    restored = restore_scorer(save_and_load(stored, "prompt_ensemble", llama, tmp_path), llama)
    np.testing.assert_allclose(restored.predict_proba(batch), fitted.scorer.predict_proba(batch), atol=1e-6)


def test_deep_members_are_refused(llama):
    from tasktune.errors import TaskTuneError

    ctx = FitContext(TASK, TRAIN, DEV, "few", 13, llama, options={"depth": "deep"})
    with pytest.raises(TaskTuneError, match="members are shallow prompts"):
        get_route("prompt_ensemble").fit(ctx)


@pytest.fixture(scope="module")
def bert(tiny_bert_dir):
    from tasktune.backbones.loading import load_backbone

    return load_backbone(str(tiny_bert_dir), device="cpu")


def test_an_encoder_prompt_read_by_a_head_round_trips_the_registry_and_is_not_exported(bert, tmp_path):
    from tasktune.registry import RegistryError
    from tasktune.registry.peft_export import export_peft
    from tasktune.routes.restore import restore_scorer

    ctx = FitContext(TASK, TRAIN, DEV, "few", 13, bert, options={"readout": "head"})
    fitted = get_route("prompt_tuning").fit(ctx)
    stored = fitted.artifact
    assert set(stored["tensors"]) == {"prompt_embeddings", "head.weight", "head.bias"}
    assert stored["tensors"]["head.weight"].abs().sum() > 0  # trained (it starts at zero)
    assert fitted.trainable_parameters == sum(t.numel() for t in stored["tensors"].values())
    artifact = save_and_load(stored, "prompt_tuning", bert, tmp_path)
    restored = restore_scorer(artifact, bert)
    assert restored.head is not None and not restored.head.weight.requires_grad
    batch = list(DEV)
    np.testing.assert_allclose(restored.predict_proba(batch), fitted.scorer.predict_proba(batch), atol=1e-6)
    with pytest.raises(RegistryError, match="trained head on its mean-pooled text"):
        export_peft(artifact, tmp_path / "peft", "all-minilm")


def test_a_head_readout_is_refused_on_a_causal_lm(llama):
    from tasktune.errors import TaskTuneError

    for route in ("prompt_tuning", "prompt_ensemble"):
        ctx = FitContext(TASK, TRAIN, DEV, "few", 13, llama, options={"readout": "head"})
        with pytest.raises(TaskTuneError, match="label word"):
            get_route(route).fit(ctx)


def test_ensemble_members_select_on_the_dev_sample_the_ensemble_is_scored_on(llama, monkeypatch):
    """With more dev examples than dev_limit, members drew a sample each: their best_dev, the members'
    and the ensemble's dev accuracy came from three different dev sets."""
    from tasktune.routes.trained import dev_sample

    seen = []
    real_train = pt_route.train

    def recording(trainable, train_examples, dev_examples, *args, **kwargs):
        seen.append(tuple(e.row for e in dev_examples))
        return real_train(trainable, train_examples, dev_examples, *args, **kwargs)

    monkeypatch.setattr(pt_route, "train", recording)
    dev = tuple(Example(f"dev text {i}", i % 2, row=200 + i) for i in range(12))
    ctx = FitContext(TASK, TRAIN, dev, "full", 13, llama, options={"train.dev_limit": 3})
    get_route("prompt_ensemble").fit(ctx)
    assert len(seen) == 3 and len(set(seen)) == 1
    assert seen[0] == tuple(e.row for e in dev_sample(dev, 3, 13))
